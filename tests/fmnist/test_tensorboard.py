"""`cnnlab train --tensorboard DIR`: loss, accuracy and learning rate once per epoch, and the
test set's mistakes as an image, read back from the event files TensorBoard reads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from cnnlab.cli import main
from cnnlab_testing import call_main

EPOCHS = 2


def events(folder: Path) -> EventAccumulator:
    """TensorBoard's own reader of one run's event files (all of them: size_guidance 0)."""
    assert folder.is_dir(), f"no TensorBoard run {folder.name}"
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def values(acc: EventAccumulator, tag: str) -> dict[int, float]:
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


def images(acc: EventAccumulator, tag: str) -> dict[int, tuple[int, int]]:
    """step -> (width, height) of the image ``tag``."""
    assert acc.SummaryMetadata(tag).plugin_data.plugin_name == "images"
    sizes = {}
    for e in acc.Tensors(tag):
        width, height, *_png = tensor_util.make_ndarray(e.tensor_proto)
        sizes[e.step] = (int(width), int(height))
    return sizes


@pytest.fixture(scope="module")
def logged(tmp_path_factory, fashion) -> tuple[Path, Path]:
    """A tiny tutorial run with --tensorboard: (run directory, TensorBoard folder)."""
    base = tmp_path_factory.mktemp("tensorboard")
    run, board = base / "run", base / "logs" / "tutorial"  # DIR's parent is created too
    main(
        ["train", "--preset", "tutorial", "--train-limit", "2000", "--val-size", "1000",
         "--epochs", str(EPOCHS), "--no-progress", "--out", str(run), "--tensorboard", str(board)]
    )  # fmt: skip
    return run, board


@pytest.mark.slow
def test_loss_accuracy_and_learning_rate_are_logged_once_per_epoch(logged):
    run, board = logged
    with (run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    train, validation = events(board / "train"), events(board / "validation")
    columns = {"epoch_loss": "loss", "epoch_accuracy": "accuracy"}
    for tag, column in columns.items():
        for acc, split in ((train, "train"), (validation, "val")):
            logged_values = values(acc, tag)
            assert sorted(logged_values) == list(range(EPOCHS))  # Keras' steps: epochs from 0
            expected = [float(row[f"{split}_{column}"]) for row in history]
            np.testing.assert_allclose([logged_values[s] for s in range(EPOCHS)], expected,
                                       rtol=1e-5)  # fmt: skip
    lr = values(train, "epoch_learning_rate")
    assert sorted(lr) == list(range(EPOCHS))
    np.testing.assert_allclose([lr[s] for s in range(EPOCHS)],
                               [float(row["lr"]) for row in history], rtol=1e-5)  # fmt: skip


@pytest.mark.slow
def test_the_test_mistakes_are_an_image_at_the_last_epoch(logged):
    run, board = logged
    logged_images = images(events(board / "test"), "mistakes")
    assert list(logged_images) == [EPOCHS - 1]
    width, height = logged_images[EPOCHS - 1]
    assert width > 200 and height > 100  # a grid with titles, not one 28 px image


@pytest.mark.slow
def test_the_event_files_stay_out_of_the_run_directory(logged):
    run, _ = logged
    assert not list(run.rglob("events.out.tfevents.*"))


def test_an_unwritable_tensorboard_folder_is_one_line_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for target in (blocker, blocker / "logs"):
        code, _, err = call_main(
            capsys, "train", "--preset", "tutorial", "--epochs", "1", "--out", tmp_path / "run",
            "--tensorboard", target, "--data-dir", tmp_path / "no-data",
        )  # fmt: skip
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"cnnlab: error: --tensorboard {target}:"), lines[0]
    assert not (tmp_path / "run").exists()  # refused before the run directory was claimed
