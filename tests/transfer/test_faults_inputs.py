"""Fault injection, input side of issue 27: image files that ended ``cnnlab transfer`` in a
traceback (a sparse 1 TB file: MemoryError; QOI: IndexError; DDS: NotImplementedError) or
that no limit saw (20000 x 1 pixels). Predict refuses a file beyond the limits in one line
(exit 2, peak memory bounded, nothing written); folders skip it and say why; a serve batch
gives it an error row and classifies the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab_testing import run_main

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]
RSS_BOUND_MB = 1536  # torch alone takes about 0.5 GB
MEASURE = """
import json, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(json.dumps({"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "peak_mb": peak}))
"""


def transfer(*args) -> dict:
    """``cnnlab transfer ARGS`` in a fresh process: exit code, output and peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-c", MEASURE, sys.executable, "-m", "cnnlab", "transfer", *args]
    out = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout)


def snapshot(*roots: Path) -> dict[str, object]:
    """Every file's bytes; for a sparse terabyte, its size and modification time."""
    return {
        str(p): p.read_bytes() if p.stat().st_size < 2**30 else p.stat()[6:9]
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_line_error(result: dict, *fragments: str) -> str:
    lines = result["stderr"].splitlines()
    assert result["rc"] == 2, result["stderr"][-2000:]
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), result["stderr"][-2000:]
    assert "Traceback" not in result["stderr"] + result["stdout"]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def sparse_terabyte(path: Path) -> Path:
    with open(path, "wb") as f:
        f.truncate(2**40)
    return path


def in_process(*args) -> dict:
    """``cnnlab transfer ARGS`` in this process, as a child would see it (``run_main``), in the
    shape ``transfer`` returns, less the peak RSS (a process's peak includes every earlier
    test's)."""
    code, out, err = run_main("transfer", *args)
    return {"rc": code, "stdout": out, "stderr": err}


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda m, p: p.write_bytes(m.png(20000, 1)), ["20000x1 px", "aspect ratio"]),
        (lambda m, p: p.write_bytes(m.png(1_000_000, 1)), ["1000000x1 px"]),
        (lambda m, p: sparse_terabyte(p), ["larger than 320 MiB"]),  # repro 6: MemoryError
    ],
    ids=["20000x1", "1000000x1", "sparse-1TB"],
)
def test_predict_refuses_a_file_beyond_the_limits_in_one_line(
    tmp_path, run_dir, malformed, make, fragments
):
    image = tmp_path / "in" / "image.png"
    image.parent.mkdir()
    make(malformed, image)
    before = snapshot(tmp_path, run_dir)
    result = in_process("predict", run_dir, image, "--out", tmp_path / "predictions.csv")
    one_line_error(result, "image.png", *fragments)
    assert snapshot(tmp_path, run_dir) == before


def test_a_sparse_terabyte_is_refused_within_the_memory_bound(tmp_path, run_dir):
    """Repro 6 read the whole file first (MemoryError): measured in a process of its own."""
    image = sparse_terabyte(tmp_path / "image.png")
    result = transfer("predict", run_dir, image, "--out", tmp_path / "predictions.csv")
    one_line_error(result, "image.png", "larger than 320 MiB")
    assert result["peak_mb"] < RSS_BOUND_MB, result


@pytest.mark.parametrize(("name", "why"), [("bad.qoi", "IndexError"), ("bad.dds", "NotImplem")])
def test_predict_lists_a_file_the_decoder_fails_on_with_its_reason(
    tmp_path, run_dir, malformed, make_image, name, why
):
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(make_image(0, np.random.default_rng(0))).save(tmp_path / "in" / "ok.png")
    (tmp_path / "in" / name).write_bytes(malformed.QOI if name.endswith("qoi") else malformed.dds())
    result = in_process("predict", run_dir, tmp_path / "in", "--out", tmp_path / "p.csv")
    assert result["rc"] == 0 and "Traceback" not in result["stderr"], result["stderr"][-2000:]
    assert f"{name}: cannot decode ({why}" in result["stdout"] + result["stderr"]
    assert "1 predicted, 1 unreadable" in result["stdout"]


@pytest.mark.slow
def test_train_skips_files_the_decoder_fails_on_and_a_sparse_terabyte(
    tmp_path, make_folders, malformed
):
    data = make_folders(tmp_path / "data", {"a": 12, "b": 12})
    (data / "a" / "bad.qoi").write_bytes(malformed.QOI)
    (data / "a" / "bad.dds").write_bytes(malformed.dds())
    (data / "b" / "wide.png").write_bytes(malformed.png(20000, 8))
    sparse_terabyte(data / "b" / "huge.png")
    result = transfer("train", data, "--out", tmp_path / "run", *TINY)
    assert result["rc"] == 0 and "Traceback" not in result["stderr"], result["stderr"][-3000:]
    said = result["stdout"] + result["stderr"]
    reasons = [("bad.qoi", "IndexError"), ("bad.dds", "NotImplementedError"),
               ("wide.png", "aspect ratio"), ("huge.png", "larger than 320 MiB")]  # fmt: skip
    for name, why in reasons:
        assert f"skipped {data / ('a' if name.startswith('bad') else 'b') / name}: " in said
        assert why in said.split(name, 1)[1].splitlines()[0]
    assert result["peak_mb"] < 2 * RSS_BOUND_MB, result


def test_a_serve_batch_gives_bad_files_a_row_and_classifies_the_rest(
    run_dir, tmp_path, malformed, make_image
):
    from PIL import Image

    from cnnlab.serve.transfer import TransferClassifier

    good = tmp_path / "good.png"
    Image.fromarray(make_image(0, np.random.default_rng(0))).save(good)
    (tmp_path / "bad.qoi").write_bytes(malformed.QOI)
    (tmp_path / "bad.dds").write_bytes(malformed.dds())
    (tmp_path / "wide.png").write_bytes(malformed.png(20000, 1))
    files = [tmp_path / n for n in ("bad.qoi", "good.png", "bad.dds", "wide.png")]
    results, overlays = TransferClassifier(run_dir, device="cpu").classify(files)
    assert [bool(r.error) for r in results] == [True, False, True, True]
    assert "IndexError" in results[0].error and "NotImplementedError" in results[2].error
    assert "aspect ratio" in results[3].error
    assert results[1].predicted in ("a", "b")
    assert len(overlays) == 2  # the good image, beside its Grad-CAM
