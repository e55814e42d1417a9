"""The same tiny run learns on the TensorFlow and the torch Keras backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import json
from cnnlab.data.fashion_mnist import load_fashion_mnist
from cnnlab.fmnist.config import preset
from cnnlab.fmnist.training import train
config = preset("tutorial").replace(
    train_limit=2000, val_size=500, epochs=2, batch_size=32, augment=True
)
r = train(config, load_fashion_mnist(download=False, progress=False), progress=False)
print(json.dumps({"backend": r.metrics["backend"], "accuracy": r.metrics["test_accuracy"]}))
"""


def run_on(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_tiny_run_learns_on_backend(backend, fashion):
    result = run_on(backend)
    assert result["backend"] == backend
    # 2 epochs of 63 steps on 2,000 images, augmentation on: chance is 10%
    assert result["accuracy"] > 0.55, result
