"""`cnnlab serve` without a model: the run and port checks, upload limits, the result table,
the headline metrics, and one line (exit 2) for every bad start, before anything heavy loads."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.serve import page
from cnnlab.serve.page import (
    ImageResult,
    check_port,
    pipeline_of,
    results_html,
    upload_problem,
)

# -- which pipeline wrote the run -----------------------------------------------------------


def test_the_pipeline_is_read_from_the_run_files(tmp_path):
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "model.keras").write_bytes(b"zip")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "best.pt").write_bytes(b"pt")
    assert pipeline_of(tmp_path / "keras") == "fmnist"
    assert pipeline_of(tmp_path / "torch") == "transfer"


def test_a_missing_or_foreign_directory_is_not_a_run(tmp_path):
    with pytest.raises(CnnlabError, match="run directory not found"):
        pipeline_of(tmp_path / "absent")
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(CnnlabError, match="not a cnnlab run"):
        pipeline_of(tmp_path)


# -- the port ---------------------------------------------------------------------------------


def test_a_port_with_a_listener_is_refused_and_a_free_one_accepted():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with pytest.raises(CnnlabError, match=f"cannot listen on 127.0.0.1:{busy}"):
            check_port("127.0.0.1", busy)
    check_port("127.0.0.1", busy)  # closed: free again


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_outside_the_tcp_range_are_refused(port):
    with pytest.raises(CnnlabError, match="--port must be between 1 and 65535"):
        check_port("127.0.0.1", port)


# -- uploads ----------------------------------------------------------------------------------


def test_uploads_over_the_byte_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.new("L", (28, 28)).save(small)
    large.write_bytes(b"\x89PNG" + bytes(4000))
    monkeypatch.setattr(page, "MAX_UPLOAD_BYTES", 2000)
    assert upload_problem(small) is None
    assert "larger than" in upload_problem(large)


def test_images_declaring_too_many_pixels_are_refused(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "wide.png")
    Image.new("L", (28, 28)).save(tmp_path / "small.png")
    monkeypatch.setattr(page, "MAX_PIXELS", 5000)
    assert "100x100 = 10,000 pixels" in upload_problem(tmp_path / "wide.png")
    assert upload_problem(tmp_path / "small.png") is None


def test_a_real_decompression_bomb_is_refused_without_decoding(tmp_path):
    # 20000 x 10000 of one colour: a few hundred KB on disk, 200 megapixels declared
    Image.new("1", (20000, 10000)).save(tmp_path / "bomb.png")
    assert upload_problem(tmp_path / "bomb.png") is not None


def test_non_images_are_left_for_the_pipelines_loader_to_name(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    assert upload_problem(tmp_path / "notes.txt") is None
    assert "cannot read" in upload_problem(tmp_path / "vanished.png")


# -- what the page shows ----------------------------------------------------------------------


def test_the_result_table_escapes_file_names_and_shows_errors_in_place():
    rows = [
        ImageResult(
            "<script>x</script>.png", "Trouser", 0.91, [("Trouser", 0.91), ("Dress", 0.05)]
        ),
        ImageResult("notes.txt", error="cannot read image notes.txt: not an image"),
    ]
    table = results_html(rows)
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert '<td class="predicted">Trouser</td>' in table
    assert '<td class="probability">91.0%</td>' in table
    assert "Trouser 91.0%, Dress 5.0%" in table
    assert '<td class="error" colspan="4">cannot read image notes.txt' in table
    assert '<td class="flags"></td>' in table  # nothing to be careful about
    assert "Decision" not in table  # only binary transfer models decide at a threshold


def test_the_decision_column_appears_for_thresholded_results():
    rows = [ImageResult("a.png", "pneumonia", 0.7, [("pneumonia", 0.7)], "normal (…)")]
    table = results_html(rows)
    assert "<th>Decision</th>" in table and '<td class="decision">normal (…)</td>' in table


def test_an_empty_upload_asks_for_images():
    assert "Upload one or more images" in results_html([])


# -- the page handler -------------------------------------------------------------------------


class RefusingClassifier:
    pipeline = "fmnist"
    score_kind = "uncalibrated model score"
    run_dir = Path("runs/k5")

    def classify(self, paths, *options):
        raise CnnlabError("invert must be auto, yes or no, got 'maybe'")


def test_the_handler_turns_user_errors_into_a_message_on_the_page(tmp_path):
    from cnnlab.serve.app import classify_uploads

    refusing = RefusingClassifier()
    answer, table, overlays = classify_uploads(refusing, None, [str(tmp_path / "a.png")], "maybe")
    assert '<td class="error"' in table and "invert must be auto" in table
    assert overlays == []
    assert answer["images"][0]["error"] == "invert must be auto, yes or no, got 'maybe'"
    assert answer["headline"] is None  # no metrics.json: said, not invented
    too_many = [str(tmp_path / f"{i}.png") for i in range(page.MAX_FILES + 1)]
    _, table, _ = classify_uploads(refusing, None, too_many)
    assert f"classify at most {page.MAX_FILES}" in table
    answer, table, _ = classify_uploads(refusing, None, None)  # Classify before any upload
    assert "Upload one or more images" in table and answer["images"] == []


# -- the command: one line and exit 2, before any framework or server loads --------------------

PROBE = """
import sys
if sys.argv[1] == "--without-gradio":  # as if the `serve` extra were not installed
    sys.modules["gradio"] = None
    del sys.argv[1]
from cnnlab.cli import main
try:
    main(sys.argv[1:])
finally:
    loaded = [m for m in ("gradio", "tensorflow", "torch") if sys.modules.get(m)]
    print("loaded:", ",".join(loaded) or "nothing")
"""


def run_serve(*args, gradio: bool = True) -> subprocess.CompletedProcess:
    hide = [] if gradio else ["--without-gradio"]
    return subprocess.run(
        [sys.executable, "-c", PROBE, *hide, "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p / "absent", "run directory not found"),
        (lambda p: p, "is not a cnnlab run"),
    ],
)
def test_a_bad_run_directory_is_one_line_exit_2(tmp_path, make, fragment):
    proc = run_serve(make(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: ") and fragment in lines[0]
    assert "loaded: nothing" in proc.stdout


def test_a_busy_port_is_one_line_exit_2_before_the_model_loads(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")  # never read: the port is checked first
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = run_serve(tmp_path, "--port", port)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"cnnlab: error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert "loaded: nothing" in proc.stdout


def test_without_gradio_the_command_names_the_extra_to_install(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"")
    proc = run_serve(tmp_path, "--port", free_port(), gradio=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cnnlab: error: cnnlab serve needs Gradio: pip install 'cnnlab[serve]'"
    )
    assert "loaded: nothing" in proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
