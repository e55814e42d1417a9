from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def fashion():
    """The real Fashion-MNIST (verified), or an explicit skip naming what is missing."""
    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.errors import CnnlabError

    try:
        return load_fashion_mnist(download=False, progress=False)
    except CnnlabError as e:
        pytest.skip(f"Fashion-MNIST unavailable ({e}); .ci/run installs dataset-fashion-mnist")


# Small but real: 1,000 stratified training images, 500 for validation, 1 epoch.
TINY = {"train_limit": 1000, "val_size": 500, "epochs": 1}
