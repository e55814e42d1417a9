"""``from cnnlab import transfer``: train, predict and evaluate from Python, and the example."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab as cnnlab_package
from cnnlab import transfer
from cnnlab.errors import CnnlabError
from cnnlab.files import read_json

ROOT = Path(__file__).resolve().parents[2]
SRC = str(Path(cnnlab_package.__file__).parents[1])


def test_the_api_functions_are_not_shadowed_by_the_modules_behind_them():
    import cnnlab.transfer.inference.predict  # noqa: F401
    import cnnlab.transfer.pipeline  # noqa: F401

    assert callable(transfer.train) and callable(transfer.predict)
    assert "data_dir" in inspect.signature(transfer.train).parameters
    assert "source" in inspect.signature(transfer.predict).parameters


def test_train_with_folds_returns_every_fold_and_no_single_model(make_folders, tmp_path):
    """Cross-validation writes no best.pt (there is no one model to deploy): the result says so
    instead of failing to load it."""
    data = make_folders(tmp_path / "data", {"a": 12, "b": 12}, seed=3)
    result = transfer.train(
        out=tmp_path / "run", data_dir=data, progress=False, folds=2, weights="none",
        arch="resnet18", image_size=32, epochs=1, batch_size=8, val_size=0.25,
    )  # fmt: skip
    assert result.checkpoint is None and result.model is None
    assert [f["fold"] for f in result.folds] == [1, 2]
    assert result.metrics["folds"] == 2 and not (result.out / "best.pt").exists()
    assert result.folds == read_json(result.out / "metrics.json", "metrics")["per_fold"]


def test_train_returns_one_history_row_per_epoch_run(make_folders, tmp_path):
    data = make_folders(tmp_path / "data", {"a": 12, "b": 12}, seed=3)
    result = transfer.train(
        out=tmp_path / "run", data_dir=data, progress=False, weights="none", image_size=32,
        epochs=2, batch_size=8, val_size=0.25, test_size=0.25,
    )  # fmt: skip
    assert (
        [row["epoch"] for row in result.history]
        == [1, 2]
        == list(range(1, result.metrics["epochs_run"] + 1))
    )
    first = result.history[0]
    assert isinstance(first["train_loss"], float) and isinstance(first["stages_trained"], int)


def test_the_images_as_the_first_argument_are_one_error_naming_data_dir(tmp_path):
    with pytest.raises(CnnlabError, match="data_dir="):
        transfer.train(tmp_path, out=tmp_path / "run", data_dir=tmp_path)  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_a_field_that_does_not_exist_is_one_error_before_anything_runs(tmp_path):
    with pytest.raises(CnnlabError, match="unknown config field"):
        transfer.train(out=tmp_path / "run", data_dir=tmp_path, epoch=3)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_predict_evaluate_and_load_take_a_run_directory(trained_run, make_folders, tmp_path):
    held_out = make_folders(tmp_path / "held_out", {"a": 6, "b": 6}, seed=7)
    images = sorted(held_out.rglob("*.png"))
    rows = transfer.predict(trained_run, images, device="cpu")
    assert [row["path"] for row in rows] == [str(p) for p in images]
    assert all(row["predicted"] in ("a", "b") and not row["error"] for row in rows)

    checkpoint = transfer.load(trained_run)
    model = checkpoint.build_model()
    assert isinstance(model, torch.nn.Module) and checkpoint.class_names == ["a", "b"]
    p_b = np.array([row["p_b"] for row in rows])
    assert p_b.shape == (12,) and np.all((p_b >= 0) & (p_b <= 1))

    metrics = transfer.evaluate(trained_run, held_out, out=tmp_path / "eval", device="cpu")
    assert metrics["n_images"] == 12
    written = read_json(tmp_path / "eval" / "metrics.json", "metrics")
    assert written["confusion_matrix"] == metrics["confusion_matrix"]
    assert np.asarray(metrics["confusion_matrix"]).sum() == 12


@pytest.mark.slow
def test_the_transfer_example_trains_and_predicts(make_folders, tmp_path):
    data = make_folders(tmp_path / "data", {"a": 20, "b": 20}, seed=3)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "transfer_notebook.py"), str(data),
         "--weights", "none", "--image-size", "32", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": SRC},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "balanced accuracy" in result.stdout and "outputs ['a', 'b'] (1, 2)" in result.stdout
    assert (tmp_path / "run" / "best.pt").is_file()
