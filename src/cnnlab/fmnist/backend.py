"""Keras backend set-up: which backend, CPU threads, seeds and deterministic kernels.

Nothing here imports Keras, TensorFlow or torch at module import time: ``configure_threads``
must work before either framework starts its thread pools (the study engine calls it first
thing in each worker process to split the machine's cores between workers), and
:func:`require_supported_backend` must run before Keras reads ``KERAS_BACKEND``
(:mod:`cnnlab.fmnist.framework` calls it).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError

# The backends the Fashion-MNIST pipeline is tested on (tests/fmnist/test_backend_parity.py),
# with the package each one needs.
SUPPORTED_BACKENDS = {"tensorflow": "tensorflow", "torch": "torch"}

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
        raise CnnlabError(f"threads must be >= 1, got {n}")
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    # Inter-op pools run independent ops side by side; with few cores one or two is plenty.
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(n, 2))
    if "tensorflow" in sys.modules or _keras_uses_tensorflow():
        # Importing TensorFlow does not start its runtime, so its pool sizes can still be set.
        # Through framework.py, which keeps its start-up lines off the terminal when asked.
        from cnnlab.fmnist import framework  # noqa: F401

        # isort: split
        import tensorflow as tf

        with contextlib.suppress(RuntimeError):  # already initialised: keep its pools
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
        with contextlib.suppress(RuntimeError):  # only allowed before the first parallel op
            torch.set_num_interop_threads(min(n, 2))


def quiet_framework_logs(verbose: bool = False) -> None:
    """Keep TensorFlow's C++ log lines off the terminal unless ``verbose``.

    Without it, a plain ``cnnlab train`` prints TensorFlow's oneDNN and absl start-up notes and,
    while training, an "E0000 ... NodeDef mentions attribute use_unbounded_threadpool" line:
    noise about TensorFlow's own build, not about the run. That last one is logged at ERROR
    level, so even ``TF_CPP_MIN_LOG_LEVEL=2`` shows it: quiet means 3 (FATAL only), set here
    before TensorFlow is imported (it reads the variable once). Real failures still reach the
    user as Python exceptions. ``verbose`` leaves the variable as the user set it.
    """
    if not verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def _keras_uses_tensorflow() -> bool:
    return keras_backend_setting() == "tensorflow" and _installed("tensorflow")


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def keras_backend_setting() -> str:
    """The backend Keras will load, read as Keras reads it: ``$KERAS_BACKEND``, else the
    ``backend`` of ``keras.json`` in ``$KERAS_HOME`` (default ``~/.keras``), else tensorflow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads((home / "keras.json").read_text())["backend"])
    return "tensorflow"


def require_supported_backend() -> str:
    """The Keras backend to use, or one CnnlabError naming the supported ones."""
    name = keras_backend_setting()
    supported = " or ".join(SUPPORTED_BACKENDS)
    if name not in SUPPORTED_BACKENDS:
        raise CnnlabError(
            f"Keras backend {name!r} (KERAS_BACKEND) is not supported; cnnlab trains on "
            f"{supported}: set KERAS_BACKEND={next(iter(SUPPORTED_BACKENDS))} (the default)"
        )
    if not _installed(SUPPORTED_BACKENDS[name]):
        if name == "tensorflow":  # the default: what the `keras` extra installs
            from cnnlab.frameworks import missing_extra_error

            raise missing_extra_error("keras", "tensorflow")
        raise CnnlabError(
            f"Keras backend {name!r} (KERAS_BACKEND) needs the package "
            f"{SUPPORTED_BACKENDS[name]}, which is not installed; use {supported}"
        )
    return name


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
