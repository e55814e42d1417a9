"""Fault injection (issue 16): every bad input or failing disk ends ``cnnlab transfer`` in one
line, and leaves the disk as it found it.

Each case runs the real CLI (in this process, as a child would see it: ``run_main``) and
checks the contract: exit code 2, exactly one
``cnnlab: error:`` line on stderr, no traceback, and every file and folder under the watched
directories byte-identical afterwards (nothing changed, nothing half-written left behind).
"""

from __future__ import annotations

import errno
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch

from cnnlab.transfer.data.images import MAX_PIXELS
from cnnlab.transfer.models import build_model
from cnnlab_testing import CliResult, run_main

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
TINY = ["--weights", "none", "--image-size", "32", "--epochs", "2", "--batch-size", "8"]
SLOW = pytest.mark.slow  # a torch process per case: one case of each kind stays in test-fast


def full_disk(after: int):
    """An ``os.fsync`` for a disk that fills up: the first ``after`` calls succeed, every later
    one fails with ENOSPC. Every cnnlab file write (``files.atomic_write_bytes``) fsyncs before
    its rename, so the disk fills after exactly ``after`` complete files, wherever the command
    is at that moment."""
    real, left = os.fsync, [after]

    def fsync(fd: int) -> None:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        left[0] -= 1
        real(fd)

    return fsync


def cnnlab(*args: str | Path, full_disk_after: int | None = None) -> CliResult:
    """``cnnlab transfer ARGS`` in this process, seen as a child would see it (``run_main``);
    with ``full_disk_after`` N, the disk is full after N written files."""
    patches = {} if full_disk_after is None else {"os.fsync": full_disk(full_disk_after)}
    return run_main("transfer", *args, patches=patches)


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under ``roots``, hidden ones included."""
    seen: dict[str, bytes | None] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            seen[folder] = None
            for name in dirs + files:
                path = Path(folder) / name
                seen[str(path)] = None if path.is_dir() else path.read_bytes()
    return seen


def assert_one_line_error(result: CliResult) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cnnlab: error: ") and "Traceback" not in result.stderr
    return lines[0]


def refused_without_a_trace(*args, watch: tuple[Path, ...], full_disk_after=None) -> str:
    """Run a command that must fail; the error line, once the disk is shown untouched."""
    before = snapshot(*watch)
    line = assert_one_line_error(cnnlab(*args, full_disk_after=full_disk_after))
    assert snapshot(*watch) == before
    return line


def blank_png(path: Path, width: int, height: int) -> Path:
    """A black greyscale PNG of any size, a few hundred KB: the shape of a decompression bomb.

    Written chunk by chunk, so the test itself never holds width x height pixels.
    """
    row, packer = b"\x00" * (width + 1), zlib.compressobj(9)  # filter byte, then the pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


@pytest.fixture
def images(tmp_path, make_folders) -> Path:
    """Classes a and b, three images each: inputs for predict and evaluate."""
    return make_folders(tmp_path / "images", {"a": 3, "b": 3})


# -- decompression bombs ----------------------------------------------------------------------


@pytest.mark.parametrize("side", [20000, pytest.param(12000, marks=SLOW)])
def test_predict_refuses_an_image_above_the_pixel_limit_before_decoding(tmp_path, run_dir, side):
    assert side * side > MAX_PIXELS  # 12000 squared: only Pillow's warning range, until now
    bomb = blank_png(tmp_path / "bomb.png", side, side)
    out = tmp_path / "predictions.csv"
    line = refused_without_a_trace(
        "predict", run_dir, bomb, "--out", out, watch=(tmp_path, run_dir)
    )
    assert "bomb.png" in line and f"{side}x{side}" in line and "limit" in line


def test_evaluate_skips_and_lists_an_oversized_image_without_a_pillow_warning(
    tmp_path, run_dir, images
):
    blank_png(images / "a" / "bomb.png", 12000, 12000)
    out = tmp_path / "evaluation"
    result = cnnlab("evaluate", run_dir, images, "--out", out)
    assert result.returncode == 0 and result.stderr == ""  # no DecompressionBombWarning
    metrics = (out / "metrics.json").read_text()
    assert "bomb.png" in metrics and "too large" in metrics
    assert '"n_images": 6' in metrics


# -- training that diverges -------------------------------------------------------------------


def test_diverging_training_stops_in_one_line_naming_the_epoch(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"a": 10, "b": 10})
    out = tmp_path / "run"
    line = refused_without_a_trace(
        "train", data, "--out", out, *TINY, "--strategy", "full", "--optimizer", "sgd",
        "--lr", "10", watch=(tmp_path,),
    )  # fmt: skip
    assert re.search(r"diverged in epoch [12] of 2", line) and "--lr" in line


def test_an_absurd_learning_rate_is_one_line(tmp_path, make_folders):
    # --lr has no upper bound: the run trains until the loss explodes, then stops in one line
    data = make_folders(tmp_path / "data", {"a": 10, "b": 10})
    line = refused_without_a_trace(
        "train", data, "--out", tmp_path / "run", *TINY, "--lr", "1e30", watch=(tmp_path,)
    )
    assert "diverged" in line and "--lr" in line


def test_a_negative_seed_is_one_line(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"a": 10, "b": 10})
    line = refused_without_a_trace(
        "train", data, "--out", tmp_path / "run", *TINY, "--seed", "-1", watch=(tmp_path,)
    )
    assert "--seed" in line


# -- a full disk ------------------------------------------------------------------------------


def test_train_on_a_full_disk_leaves_no_partial_run(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"a": 10, "b": 10})
    (tmp_path / "notes.txt").write_text("the user's own file beside the run\n")
    out = tmp_path / "run"
    # config.json, environment.json and data_report.json fit; splits.csv does not
    line = refused_without_a_trace(
        "train", data, "--out", out, *TINY, watch=(tmp_path,), full_disk_after=3
    )
    assert str(out) in line and "No space left on device" in line


def test_predict_on_a_full_disk_keeps_the_previous_csv(tmp_path, run_dir, images):
    out = tmp_path / "predictions.csv"
    out.write_text("path,predicted\nyesterday.png,a\n")
    line = refused_without_a_trace(
        "predict", run_dir, images, "--out", out, "--overwrite",
        watch=(tmp_path, run_dir), full_disk_after=0,
    )  # fmt: skip
    assert "No space left on device" in line


def test_predict_on_a_full_disk_writes_neither_csv_nor_overlays(tmp_path, run_dir, images):
    out, cams = tmp_path / "predictions.csv", tmp_path / "new" / "cams"
    # the CSV fits, the first Grad-CAM overlay does not: the CSV must not appear alone
    line = refused_without_a_trace(
        "predict", run_dir, images, "--out", out, "--cam", cams,
        watch=(tmp_path, run_dir), full_disk_after=1,
    )  # fmt: skip
    assert "No space left on device" in line and not (tmp_path / "new").exists()


def test_evaluate_on_a_full_disk_leaves_no_partial_evaluation(tmp_path, run_dir, images):
    line = refused_without_a_trace(
        "evaluate", run_dir, images, "--out", tmp_path / "evaluation",
        watch=(tmp_path, run_dir), full_disk_after=1,
    )  # fmt: skip
    assert "No space left on device" in line


# -- predict options --------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", ["0", pytest.param("-2", marks=SLOW)])
def test_predict_refuses_a_top_k_below_one(tmp_path, run_dir, images, top_k):
    line = refused_without_a_trace(
        "predict", run_dir, images, "--top-k", top_k, "--out", tmp_path / "p.csv",
        watch=(tmp_path, run_dir),
    )  # fmt: skip
    assert f"invalid --top-k: must be >= 1, got {top_k}" in line


def test_predict_refuses_a_cam_folder_that_is_a_file(tmp_path, run_dir, images):
    cams = tmp_path / "cams"
    cams.write_text("a file where the overlays would go\n")
    line = refused_without_a_trace(
        "predict", run_dir, images, "--cam", cams, watch=(tmp_path, run_dir)
    )
    assert "--cam" in line and "is a file" in line


def test_predict_refuses_a_csv_path_that_is_a_folder(tmp_path, run_dir, images):
    out = tmp_path / "results"
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "thesis.txt").write_text("precious\n")
    line = refused_without_a_trace(
        "predict", run_dir, images, "--out", out, watch=(tmp_path, run_dir)
    )
    assert "--out" in line and "is a directory" in line


def test_predict_refuses_to_write_its_csv_over_an_input_image(tmp_path, run_dir, images):
    image = images / "a" / "000.png"
    line = refused_without_a_trace(
        "predict", run_dir, image, "--out", image, watch=(tmp_path, run_dir)
    )
    assert "is an image input" in line


# -- checkpoints ------------------------------------------------------------------------------


def _edited_checkpoint(run_dir: Path, path: Path, **meta) -> Path:
    """The run's checkpoint with metadata fields replaced, as a hand-edited file would be."""
    raw = torch.load(run_dir / "best.pt", weights_only=True)
    torch.save({**raw, **meta}, path)
    return path


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_size", 10**9),
        ("std", [0.25, 0.0, 0.25]),  # divides by zero: NaN probabilities, exit 0, until now
        pytest.param("mean", [0.5, 0.5], marks=SLOW),
        pytest.param("mean", [0.5, float("nan"), 0.5], marks=SLOW),
        pytest.param("std", [0.25, float("inf"), 0.25], marks=SLOW),
    ],
)
def test_checkpoint_preprocessing_is_validated_on_load(tmp_path, run_dir, images, field, value):
    ckpt = _edited_checkpoint(run_dir, tmp_path / "edited.pt", **{field: value})
    line = refused_without_a_trace(
        "predict", ckpt, images, "--out", tmp_path / "p.csv", watch=(tmp_path, run_dir)
    )
    assert f"invalid {field}" in line


def test_a_torchscript_archive_is_refused_without_a_torch_warning(tmp_path, run_dir, images):
    model = build_model("resnet18", 2, weights="none", image_size=32).eval()
    with warnings.catch_warnings():  # torch.jit is deprecated: exactly what a user may still hold
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), tmp_path / "scripted.pt")
    line = refused_without_a_trace(
        "predict", tmp_path / "scripted.pt", images, watch=(tmp_path, run_dir)
    )
    assert "refusing to load" in line and "TorchScript" in line
