"""Training prints one line per epoch as it ends, as Keras users expect, also into a log file
or pipe (flushed, not at the end), and keeps them in the run's train.log (issue 26)."""

import os
import subprocess
import sys

import pytest

from cnnlab.fmnist.callbacks import epoch_line


def test_an_epoch_line_reads_like_keras():
    logs = {"loss": 0.31214, "accuracy": 0.88761, "val_loss": 0.30111, "val_accuracy": 0.89}
    assert epoch_line(3, 12, logs, 12.34) == (
        "epoch 3/12  loss 0.3121  acc 0.8876  val_loss 0.3011  val_acc 0.8900  (12.3 s)"
    )
    assert epoch_line(1, 2, {"loss": 1.0}, None) == "epoch 1/2  loss 1.0000"


@pytest.mark.slow
def test_cnnlab_train_into_a_pipe_prints_each_epoch_while_it_trains(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "cnnlab",
        "train",
        "--preset",
        "tutorial",
        "--epochs",
        "3",
        "--train-limit",
        "1000",
        "--val-size",
        "500",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)  # fmt: skip
    try:
        first = next(line for line in proc.stdout if line.startswith("epoch "))
        # the first epoch's line arrives while two epochs, the test set and the run files remain
        still_running = proc.poll() is None
        rest = proc.stdout.read()
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == 0
    assert first.startswith("epoch 1/3  loss ") and "val_acc" in first
    assert still_running
    assert "epoch 2/3" in rest and "epoch 3/3" in rest
    log = (out / "train.log").read_text().splitlines()
    assert [line.split("  ")[0] for line in log] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
