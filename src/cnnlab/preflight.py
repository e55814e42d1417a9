"""Checks a command makes on its arguments and paths before any framework loads.

TensorFlow or torch takes 5-12 s to import on a small machine; a typo in a path should cost
the user one line at once, not that wait (issue 26). Each function here runs the cheap,
file-system part of what the library checks again later (the library stays the authority:
its own calls from Python get the same refusals), with the library's own words. Imports no
framework and no pipeline module that loads one.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    from cnnlab.tracking import Mlflow


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file ``path`` names (a run directory means its ``best.pt``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CnnlabError(f"checkpoint not found: {path}")
    return path


def images_exist(images: Sequence[str | os.PathLike]) -> None:
    for image in images:
        if not Path(image).exists():
            raise CnnlabError(f"image not found: {image}")


def tensorboard_installed(tensorboard: str | os.PathLike | None, extra: str) -> None:
    """``--tensorboard DIR`` needs the tensorboard package: said first, as an install problem."""
    from cnnlab.runtime import TENSORBOARD, missing_extra_error

    if tensorboard is not None and importlib.util.find_spec(TENSORBOARD) is None:
        raise missing_extra_error(extra, TENSORBOARD)


def mlflow_installed(mlflow: Mlflow | None) -> None:
    """``--mlflow`` needs MLflow: said first, as an install problem."""
    from cnnlab.runtime import require

    if mlflow is not None:
        require("tracking")


def fmnist_data(data_dir: str | os.PathLike | None) -> None:
    """A data folder the user named (``--data-dir``, ``$CNNLAB_DATA_DIR``) exists."""
    from cnnlab.data.fashion_mnist import check_named_folder

    check_named_folder(data_dir)


def fmnist_train(
    out: str | os.PathLike,
    overwrite: bool,
    data_dir: str | os.PathLike | None,
    tensorboard: str | os.PathLike | None = None,
    mlflow: Mlflow | None = None,
) -> None:
    """``cnnlab train``: the run directory ``out`` may be written, a named data folder exists."""
    from cnnlab.runs import check_run_target
    from cnnlab.tracking import check

    tensorboard_installed(tensorboard, "keras")
    mlflow_installed(mlflow)
    check_run_target(out, overwrite)
    if tensorboard is not None:  # a folder that cannot be made is news before the data is
        from cnnlab.tensorboard import prepare_log_dir

        prepare_log_dir(tensorboard, out)
    check(mlflow, out)
    fmnist_data(data_dir)


def fmnist_run(
    run_dir: str | os.PathLike,
    *,
    images: Sequence[str | os.PathLike] = (),
    data_dir: str | os.PathLike | None = None,
) -> None:
    """``cnnlab predict/evaluate``: the run first (its kind named), then the inputs."""
    from cnnlab.runs import require_run_dir

    require_run_dir(run_dir, "model.keras")
    images_exist(images)
    fmnist_data(data_dir)


def transfer_train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    overwrite: bool,
    tensorboard: str | os.PathLike | None = None,
    mlflow: Mlflow | None = None,
) -> None:
    """``cnnlab transfer train``: the data folder first, then ``--out`` as the run will claim
    it, then the MLflow store."""
    from cnnlab.runs import check_run_target
    from cnnlab.tracking import check

    tensorboard_installed(tensorboard, "transfer")
    mlflow_installed(mlflow)
    if not Path(data_dir).is_dir():
        raise CnnlabError(f"data folder not found: {data_dir}")
    check_run_target(out, overwrite, inputs={"the data folder": data_dir})
    check(mlflow, out, {"the data folder": data_dir})


def transfer_run(
    run_dir: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike] = (),
    data_dir: str | os.PathLike | None = None,
) -> None:
    """``cnnlab transfer predict/evaluate/export``: the checkpoint, then the inputs."""
    run = Path(run_dir)
    if run.is_dir() and not (run / "best.pt").is_file() and (run / "model.keras").is_file():
        from cnnlab.runs import require_run_dir

        require_run_dir(run, "best.pt")  # names the run's kind and the command to use
    checkpoint_path(run_dir)
    for item in inputs:
        if not Path(item).exists():
            raise CnnlabError(f"not found: {item}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise CnnlabError(f"data folder not found: {data_dir}")


def transfer_shift(
    data_dir: str | os.PathLike,
    test: str | os.PathLike | None,
    outputs: Sequence[tuple[str, str | os.PathLike | None]],
    overwrite: bool,
) -> None:
    """``cnnlab transfer shift``: both folders, then each output file."""
    from cnnlab.files import check_output

    for name, folder in (("data folder", data_dir), ("--test folder", test)):
        if folder is not None and not Path(folder).is_dir():
            raise CnnlabError(f"{name} not found: {folder}")
    inputs = [("the data folder", data_dir)] + ([("--test", test)] if test else [])
    for name, path in outputs:
        if path is not None:
            check_output(name, path, overwrite=overwrite, inputs=inputs)
