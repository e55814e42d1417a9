"""`cnnlab serve RUN --ensemble RUN2 --adapt-bn DIR`: the page gives what `transfer predict
--ensemble RUN2 --adapt-bn DIR` gives, and says on the page and in every /classify record
which opt-ins are in force; bad members or folders are one line, exit 2, before any server.
Here, not in tests/serve: torch loads."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.inference.predict import predict
from cnnlab_testing import cli_error_line


@pytest.fixture
def uploads(make_folders, tmp_path):
    root = make_folders(tmp_path / "up", {"a": 2, "b": 2}, seed=5)
    return sorted(root.rglob("*.png"))


@pytest.fixture
def site(make_folders, tmp_path):
    """A new site's unlabelled images: loose files, no class folders."""
    labelled = make_folders(tmp_path / "labelled", {"a": 3, "b": 3}, seed=6)
    (tmp_path / "site").mkdir()
    for i, path in enumerate(sorted(labelled.rglob("*.png"))):
        shutil.copy(path, tmp_path / "site" / f"scan{i}.png")
    return tmp_path / "site"


def assert_same(results, rows):
    assert [r.name for r in results] == [Path(row["path"]).name for row in rows]
    for got, want in zip(results, rows, strict=True):
        assert got.error == "" and got.predicted == want["predicted"]
        assert [name for name, _ in got.top] == [name for name, _ in want["top_k"]]
        np.testing.assert_allclose(
            [p for _, p in got.top], [p for _, p in want["top_k"]], atol=1e-6
        )


def test_an_ensemble_on_the_page_gives_what_predict_ensemble_gives(run_dir, wide_run, uploads):
    from cnnlab.serve.transfer import TransferClassifier

    page = TransferClassifier(run_dir, device="cpu", ensemble=[wide_run])
    results, gallery = page.classify(uploads)
    rows, _ = predict([run_dir, wide_run], uploads, device="cpu", engine="torch")
    alone, _ = predict(run_dir, uploads, device="cpu", engine="torch")
    assert_same(results, rows)
    assert not np.allclose([r["p_a"] for r in rows], [r["p_a"] for r in alone], atol=1e-4)
    for result in results:
        said = result.record()["inference"]
        assert said == rows[0]["inference"]  # the CSV's inference column, word for word
        assert "ensemble: mean of the softmax of 2 runs" in said
        assert f"member {wide_run}: resnet18, 48 px, contrast equalize" in said
    described = page.describe()
    assert described.startswith("An ensemble of 2 runs") and "48 px, contrast equalize" in described
    assert f"metrics shown are those of {run_dir.name} alone" in described
    assert page.score_kind == "uncalibrated model score"
    # Grad-CAM: the first run's map, on its own 32 px pixels, of the ensemble's class
    assert gallery[0][0].shape[:2] == (32, 32) and "(the first run)" in gallery[0][1]
    assert gallery[1][1].startswith(f"{uploads[0].name}: Grad-CAM of {results[0].predicted} in ")


def test_adapted_batchnorm_on_the_page_gives_what_predict_adapt_bn_gives(run_dir, uploads, site):
    from cnnlab.serve.transfer import TransferClassifier

    page = TransferClassifier(run_dir, device="cpu", adapt_bn=site)
    results, _ = page.classify(uploads)
    rows, _ = predict(run_dir, uploads, device="cpu", engine="torch", adapt_bn=site)
    plain, _ = predict(run_dir, uploads, device="cpu", engine="torch")
    assert_same(results, rows)
    assert not np.allclose([r["p_a"] for r in rows], [r["p_a"] for r in plain], atol=1e-4)
    said = f"adapted: BN re-estimated on 6 unlabelled images from {site}"
    assert all(r.record()["inference"] == said for r in results)
    assert said in page.describe() and "measured without the adaptation" in page.describe()


def test_a_plain_run_says_nothing_is_in_use(run_dir, uploads):
    from cnnlab.serve.transfer import TransferClassifier

    page = TransferClassifier(run_dir, device="cpu")
    results, _ = page.classify(uploads[:1])
    assert results[0].record()["inference"] is None and "In use" not in page.describe()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mismatched(run_dir, tmp_path):
    ckpt = ckpt_io.load(run_dir)
    ckpt.class_names = ["a", "c"]
    ckpt_io.save(ckpt, tmp_path / "other" / "best.pt")
    return tmp_path / "other"


def _fashion(run_dir, tmp_path):
    (tmp_path / "fm").mkdir()
    (tmp_path / "fm" / "model.keras").write_bytes(b"")  # never read: refused by its name
    return tmp_path / "fm"


def _folder(tmp_path, *files):
    (tmp_path / "site").mkdir()
    for name in files:
        (tmp_path / "site" / name).write_text("not an image")
    return tmp_path / "site"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (lambda run, tmp: ["--ensemble", _fashion(run, tmp)], "is a Fashion-MNIST run"),
        (lambda run, tmp: ["--ensemble", tmp / "gone"], "--ensemble: run directory not found"),
        (lambda run, tmp: ["--ensemble", _mismatched(run, tmp)], "different classes"),
        (lambda run, tmp: ["--adapt-bn", tmp / "gone"], "--adapt-bn: not a folder"),
        (lambda run, tmp: ["--adapt-bn", _folder(tmp)], "--adapt-bn: no image files under"),
        (lambda run, tmp: ["--adapt-bn", _folder(tmp, "a.txt")], "2 or more readable images"),
    ],
)
def test_bad_serve_opt_ins_are_one_line_before_the_server_starts(
    run_dir, tmp_path, capsys, args, says
):
    line = cli_error_line(capsys, "serve", run_dir, "--port", free_port(), *args(run_dir, tmp_path))
    assert says in line


def test_transfer_opt_ins_on_a_fashion_mnist_run_are_one_line(run_dir, tmp_path, capsys):
    fashion = _fashion(run_dir, tmp_path)
    line = cli_error_line(capsys, "serve", fashion, "--ensemble", run_dir)
    assert "--ensemble is for transfer runs" in line
