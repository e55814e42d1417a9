"""Keras backend set-up: CPU threads, seeds and deterministic kernels.

Nothing here imports TensorFlow or torch at module import time: ``configure_threads`` must
work before either framework starts its thread pools (the study engine calls it first thing in
each worker process to split the machine's cores between workers).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def configure_threads(n: int | None) -> None:
    """Use ``n`` CPU threads for math (None: leave the framework defaults, i.e. all cores).

    Before TensorFlow/torch start, environment variables fix their pool sizes; if a framework is
    already running, its runtime setters are tried too (TensorFlow refuses once it has
    initialised, in which case its existing pools are kept).
    """
    if n is None:
        return
    if n < 1:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"threads must be >= 1, got {n}")
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    # Inter-op pools run independent ops side by side; with few cores one or two is plenty.
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(n, 2))
    if "tensorflow" in sys.modules or _keras_uses_tensorflow():
        # Importing TensorFlow does not start its runtime, so its pool sizes can still be set.
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: keep its pools
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only allowed before the first parallel op
            torch.set_num_interop_threads(min(n, 2))


def _keras_uses_tensorflow() -> bool:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return backend == "tensorflow" and importlib.util.find_spec("tensorflow") is not None


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and the backend; with ``deterministic`` also ask TensorFlow for
    deterministic kernels (on CPU this costs little: see docs/benchmarks.md, Determinism)."""
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic and backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif deterministic and backend_name() == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
