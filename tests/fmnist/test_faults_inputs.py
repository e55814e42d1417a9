"""Fault injection, input side of issue 27: image files that took ``cnnlab predict`` to
gigabytes or a traceback end in one line and exit 2, with bounded memory.

Each case runs the real CLI in a fresh process under a wrapper that reports the peak RSS of
its one child (``RUSAGE_CHILDREN`` of the wrapper, so no earlier test's child counts), and
checks every file in the folder byte-identical afterwards. The images are read before the
model is loaded, so the run directory needs no model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
# TensorFlow alone takes about 0.75 GB; the 20000 x 1 PNG took 4.2 GB before issue 27.
RSS_BOUND_MB = 1536
MEASURE = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(json.dumps({"rc": r.returncode, "stderr": r.stderr, "peak_mb": peak}))
"""


def predict_measured(folder: Path, *images: str) -> dict:
    """``cnnlab predict`` in ``folder``: exit code, stderr and peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": SRC, "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3", "CNNLAB_OFFLINE": "1"}  # fmt: skip
    cmd = [sys.executable, "-c", MEASURE, sys.executable, "-m", "cnnlab", "predict", "run", *images]
    out = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout)


def snapshot(root: Path) -> dict[str, object]:
    """Every file's bytes; for the sparse terabyte, its size and modification time."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.stat().st_size < 2**30 else p.stat()[6:9]
        for p in root.rglob("*")
        if p.is_file()
    }


def one_line_error(result: dict, *fragments: str) -> str:
    lines = result["stderr"].splitlines()
    assert result["rc"] == 2, result["stderr"][-2000:]
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path, malformed) -> Path:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.md").write_text("the user's own notes\n")
    # a run as far as the command line's first check goes: the images are read before the model
    (tmp_path / "run" / "model.keras").write_bytes(b"not a Keras file")
    (tmp_path / "wide.png").write_bytes(malformed.png(20000, 1))  # 101 bytes
    (tmp_path / "line.png").write_bytes(malformed.png(1_000_000, 1))
    (tmp_path / "bad.qoi").write_bytes(malformed.QOI)
    (tmp_path / "bad.dds").write_bytes(malformed.dds())
    (tmp_path / "cut.tif").write_bytes(b"II*\x00\x08\x00\x00\x00")  # Pillow warned "Corrupt EXIF"
    with open(tmp_path / "huge.png", "wb") as f:
        f.truncate(2**40)  # sparse: 1 TB claimed, nothing on disk
    return tmp_path


SLOW = pytest.mark.slow  # a process each: one kind stays in `make test-fast`


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("wide.png", ["wide.png", "20000x1 px", "aspect ratio"]),  # repro 5: 4.2 GB
        pytest.param("line.png", ["line.png", "1000000x1 px"], marks=SLOW),  # repro 5: a traceback
        pytest.param("huge.png", ["huge.png", "larger than 320 MiB"], marks=SLOW),  # repro 6
        pytest.param("bad.qoi", ["bad.qoi", "IndexError"], marks=SLOW),  # repro 8
        pytest.param("bad.dds", ["bad.dds", "NotImplementedError"], marks=SLOW),  # repro 8
        # and no raw warning line
        pytest.param("cut.tif", ["cut.tif", "not an image Pillow can read"], marks=SLOW),
    ],
)
def test_an_image_beyond_the_limits_is_one_line_with_bounded_memory(folder, name, fragments):
    before = snapshot(folder)
    result = predict_measured(folder, name)
    one_line_error(result, *fragments)
    assert result["peak_mb"] < RSS_BOUND_MB, result
    assert snapshot(folder) == before


@pytest.mark.slow
def test_a_large_elongated_image_within_the_limits_is_read_with_bounded_memory(folder, malformed):
    """32000 x 1700 passes every limit (54 Mpx, 18.8:1); padded to 32000^2 float32 at full
    size it took 4 GB. Shrunk before padding, it reaches the (missing) model."""
    (folder / "strip.png").write_bytes(malformed.png(32000, 1700))
    result = predict_measured(folder, "strip.png")
    one_line_error(result, "model.keras")
    assert result["peak_mb"] < RSS_BOUND_MB, result


def test_a_serve_batch_gives_bad_files_a_row_and_reads_the_rest(tmp_path, malformed):
    """The page's batch, as ``FmnistClassifier.classify`` reads it: a DDS file raised
    NotImplementedError out of the page's header check and failed every file of the batch."""
    from PIL import Image

    from cnnlab.errors import CnnlabError
    from cnnlab.fmnist.inference import load_image
    from cnnlab.serve.page import read_uploads

    Image.new("L", (40, 30), 200).save(tmp_path / "shirt.png")
    (tmp_path / "bad.dds").write_bytes(malformed.dds())
    (tmp_path / "bad.qoi").write_bytes(malformed.QOI)
    (tmp_path / "wide.png").write_bytes(malformed.png(20000, 1))
    files = [tmp_path / n for n in ("bad.dds", "shirt.png", "bad.qoi", "wide.png")]
    results, images, where = read_uploads(files, load_image, (CnnlabError,))
    assert where == [1] and images[0].shape == (28, 28)
    assert "NotImplementedError" in results[0].error and "IndexError" in results[2].error
    assert "aspect ratio" in results[3].error
