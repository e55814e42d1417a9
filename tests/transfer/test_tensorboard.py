"""`cnnlab transfer train --tensorboard DIR`: loss, accuracy and learning rate once per epoch
and the held-out mistakes as an image, in the layout of Keras' TensorBoard callback, read back
with TensorBoard's own reader (which needs no TensorFlow)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main

EPOCHS = 2


def events(folder: Path):
    """TensorBoard's reader of one run's event files (all of them: size_guidance 0)."""
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator

    assert folder.is_dir(), f"no TensorBoard run {folder.name}"
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def values(acc, tag: str) -> dict[int, float]:
    from tensorboard.util import tensor_util

    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def write_folders(root: Path, per_class: int) -> Path:
    """Classes "left" and "right": noise with a bright square on that side (a learnable task)."""
    rng = np.random.default_rng(3)
    for label, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (32, 32, 3)).astype(np.uint8)
            x0 = 2 if label == 0 else 18
            img[8:20, x0 : x0 + 12] = 230
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run (resnet18 from random init, 32 px) with --tensorboard: (run, TensorBoard DIR)."""
    base = tmp_path_factory.mktemp("tensorboard")
    data = write_folders(base / "data", per_class=24)
    run, board = base / "run", base / "logs" / "resnet"  # DIR's parent is created too
    main(
        ["transfer", "train", str(data), "--out", str(run), "--tensorboard", str(board),
         "--weights", "none", "--image-size", "32", "--strategy", "full", "--epochs", str(EPOCHS),
         "--batch-size", "16", "--val-size", "0.25", "--test-size", "0.25", "--quiet"]
    )  # fmt: skip
    return run, board


@pytest.mark.slow
def test_loss_accuracy_and_learning_rate_are_logged_once_per_epoch(logged):
    run, board = logged
    with (run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert len(history) == EPOCHS
    train, validation = events(board / "train"), events(board / "validation")
    expected = {
        (train, "epoch_loss"): "train_loss",
        (train, "epoch_accuracy"): "train_accuracy",
        (train, "epoch_learning_rate"): "lr",
        (validation, "epoch_loss"): "val_loss",
        (validation, "epoch_accuracy"): "val_accuracy",
        (validation, "epoch_balanced_accuracy"): "val_balanced_accuracy",
    }
    for (acc, tag), column in expected.items():
        logged_values = values(acc, tag)
        assert sorted(logged_values) == list(range(EPOCHS)), tag  # Keras' steps: from 0
        np.testing.assert_allclose(
            [logged_values[s] for s in range(EPOCHS)],
            [float(row[column]) for row in history],
            rtol=1e-5, err_msg=tag,
        )  # fmt: skip


@pytest.mark.slow
def test_the_held_out_mistakes_are_an_image_at_the_last_epoch(logged):
    from tensorboard.util import tensor_util

    run, board = logged
    with (run / "predictions_test.csv").open() as f:
        wrong = [r for r in csv.DictReader(f) if r["predicted"] != r["true"]]
    assert wrong, "the tiny run made no mistake: nothing to show (make the task harder)"
    acc = events(board / "test")
    assert acc.SummaryMetadata("mistakes").plugin_data.plugin_name == "images"
    (event,) = acc.Tensors("mistakes")
    width, height, _png = tensor_util.make_ndarray(event.tensor_proto)
    assert event.step == EPOCHS - 1
    assert int(width) > 100 and int(height) > 100


@pytest.mark.slow
def test_logging_keeps_tensorflow_out_of_the_torch_process(logged):
    assert "tensorflow" not in sys.modules  # with torchvision loaded, it would segfault


@pytest.mark.slow
def test_the_event_files_stay_out_of_the_run_directory(logged):
    run, _ = logged
    assert not list(run.rglob("events.out.tfevents.*"))


def test_an_unwritable_tensorboard_folder_is_one_line_before_training(tmp_path, capsys):
    data = write_folders(tmp_path / "data", per_class=4)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "logs"):
        with pytest.raises(SystemExit) as exit_:
            main(["transfer", "train", str(data), "--out", str(tmp_path / "run"),
                  "--weights", "none", "--tensorboard", str(target)])  # fmt: skip
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(lines) == 1, lines
        assert lines[0].startswith(f"cnnlab: error: --tensorboard {target}:"), lines[0]
    assert not (tmp_path / "run").exists()
