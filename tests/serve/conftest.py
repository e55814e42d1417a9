"""Fixtures for `cnnlab serve` with Fashion-MNIST runs (this process imports TensorFlow)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load_e2e():
    """tests/serve/e2e.py by path (tests are imported without their folder on sys.path)."""
    path = Path(__file__).with_name("e2e.py")
    spec = importlib.util.spec_from_file_location("cnnlab_serve_e2e", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def e2e():
    return load_e2e()


@pytest.fixture(scope="session")
def fashion_test():
    """The Fashion-MNIST test images and labels, or an explicit skip naming what is missing."""
    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.errors import CnnlabError

    try:
        data = load_fashion_mnist(download=False, progress=False)
    except CnnlabError as e:
        pytest.skip(f"Fashion-MNIST unavailable ({e}); .ci/run installs dataset-fashion-mnist")
    return data.x_test, data.y_test


@pytest.fixture(scope="session")
def fmnist_run(tmp_path_factory, fashion_test) -> Path:
    """A real but tiny run: the `tutorial` preset, 2,000 training images, one epoch."""
    from cnnlab.fmnist.config import preset
    from cnnlab.fmnist.training import train

    out = tmp_path_factory.mktemp("serve") / "tutorial"
    config = preset("tutorial").replace(epochs=1, train_limit=2000, val_size=1000)
    train(config, out=out, progress=False)
    return out
