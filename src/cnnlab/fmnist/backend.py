"""Keras backend in use, seeds and deterministic kernels.

Which backend, CPU threads and quiet logs are set up before Keras starts, in
:mod:`cnnlab.runtime` (it imports no pipeline).
"""

from __future__ import annotations


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
