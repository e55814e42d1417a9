"""Thread configuration before TensorFlow starts, and the Rich progress callback."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.runtime import configure_threads, require_supported_backend

SCRIPT = """
from cnnlab.runtime import configure_threads
configure_threads(1)          # before TensorFlow is imported, as a study worker does
import tensorflow as tf
print(tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads())
"""


def test_configure_threads_fixes_tensorflow_pools_before_it_starts():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert proc.stdout.split() == ["1", "1"]


def test_configure_threads_rejects_nonsense_and_none_changes_nothing(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    configure_threads(None)
    assert "OMP_NUM_THREADS" not in os.environ
    with pytest.raises(CnnlabError, match="threads must be >= 1"):
        configure_threads(0)


@pytest.mark.parametrize("name", ["jax", "bogus", "TensorFlow"])
def test_an_unsupported_backend_is_one_line_naming_the_supported_ones(monkeypatch, name):
    monkeypatch.setenv("KERAS_BACKEND", name)
    with pytest.raises(CnnlabError) as info:
        require_supported_backend()
    assert str(info.value).startswith(f"Keras backend {name!r} (KERAS_BACKEND) is not supported")
    assert "tensorflow or torch" in str(info.value)


def test_the_backend_is_read_as_keras_reads_it(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert require_supported_backend() == "tensorflow"  # the default
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    with pytest.raises(CnnlabError, match="'jax'"):
        require_supported_backend()
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # the variable wins over keras.json
    assert require_supported_backend() == "torch"


def test_rich_progress_shows_epochs_loss_and_validation_accuracy():
    keras = pytest.importorskip("keras")
    from rich.console import Console

    from cnnlab.fmnist.callbacks import EpochClock, RichProgress
    from cnnlab.fmnist.config import preset
    from cnnlab.fmnist.training import compile_model

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=160)
    keras.utils.set_random_seed(0)
    model = compile_model(preset("tutorial"), steps_per_epoch=4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, 256)]
    clock = EpochClock()
    model.fit(
        x, y, batch_size=64, epochs=2, validation_data=(x[:64], y[:64]), verbose=0,
        callbacks=[clock, RichProgress("train 256 images", console=console)],
    )  # fmt: skip
    text = buffer.getvalue()
    assert "train 256 images" in text and "2/2" in text
    assert "val acc" in text and "loss" in text
    assert [row["epoch"] for row in clock.history] == [1, 2]
    assert all(row["seconds"] > 0 for row in clock.history)
