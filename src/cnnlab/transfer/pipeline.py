"""``cnnlab transfer train``: data -> model -> epochs -> checkpoints -> metrics -> report.

Reads top to bottom: ``train`` prepares the data (``splits.prepare_data``), fits
(``fit.fit``), then assesses the best checkpoint on the held-out split (``assess.assess``) and
writes the run directory; with ``--folds`` it does so per fold (``crossval``). Everything
happens inside ``run_directory``, so a failed or interrupted run leaves nothing half-written;
a diverged loss (``fit``) or a full disk (``files.output_errors``) ends it in one line.

Under ``torchrun --nproc-per-node N -m cnnlab transfer train ...`` (``distributed.py``) rank 0
runs all of this; the other processes prepare the same data and take part in ``fit``, silent,
writing nothing, and return no metrics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.allocator import keep_freed_memory
from cnnlab.console import make_console
from cnnlab.errors import CnnlabError
from cnnlab.files import check_output, output_errors, write_csv, write_json
from cnnlab.machine import environment_info
from cnnlab.runs import run_directory
from cnnlab.tracking import Mlflow, Tracker, tracked
from cnnlab.transfer.data.prepare import Prepared, prepare_data
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.evaluation.assess import assess, write_outcome
from cnnlab.transfer.evaluation.crossval import cross_validate
from cnnlab.transfer.evaluation.report import print_summary
from cnnlab.transfer.inference.engines import require_engine
from cnnlab.transfer.models import known_arch, require_weights
from cnnlab.transfer.training import distributed
from cnnlab.transfer.training.fit import fit

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.results import CrossValMetrics, HistoryRow, RunMetrics
    from cnnlab.transfer.training.distributed import World
    from cnnlab.transfer.training.tensorboard import TransferBoard


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TransferConfig,
    overwrite: bool = False,
    console: Console | None = None,
    tensorboard: str | os.PathLike | None = None,
    mlflow: Mlflow | None = None,
) -> tuple[Path, RunMetrics | CrossValMetrics | None]:
    """Train and write a complete run directory; returns (run_dir, metrics).

    With ``cfg.folds`` the run is a cross-validation (``crossval.py``): one directory, a
    ``fold_k/`` per fold, the summary's metrics. Under torchrun only rank 0 writes and gets
    the metrics; the other processes get None. ``tensorboard`` is a folder for TensorBoard
    logs (transfer/training/tensorboard.py); ``mlflow`` tracks the run in MLflow (rank 0;
    cnnlab/tracking.py)."""
    console = console or make_console()
    if not Path(data_dir).is_dir():  # first: a missing folder, not a weights download, is news
        raise CnnlabError(f"data folder not found: {data_dir}")
    check_output("--out", out, directory=True, inputs={"the data folder": data_dir})
    known_arch(cfg.arch)
    require_weights(cfg.arch, cfg.weights)
    device, described = resolve_device(cfg.device)
    require_engine(cfg.engine, device)
    if device.type == "cpu":
        keep_freed_memory()  # see cnnlab/allocator.py: the same results, faster steps
    with distributed.session(device) as world:
        if cfg.folds and world.size > 1:
            raise CnnlabError("--folds runs in one process; start it without torchrun")
        device = world.place(device)
        if not world.is_main:
            _follow(data_dir, cfg, device, world)
            return Path(out), None
        board = None
        if tensorboard is not None:  # checked (and created) before training
            from cnnlab.transfer.training.tensorboard import TransferBoard

            board = TransferBoard(tensorboard, out=out)
        tags = {"cnnlab.run_dir": os.path.abspath(out), "cnnlab.data_dir": data_dir}
        params = cfg.to_dict()
        with tracked(mlflow, "transfer", run_name=Path(out).name, params=params, tags=tags) as t:
            run = _lead(
                data_dir, out, cfg, overwrite, console, device, world.describe(described), world,
                board, t,
            )  # fmt: skip
            t.finish(run[1], out, say=console.print)
        return run


def _follow(data_dir: str | os.PathLike, cfg: TransferConfig, device: torch.device, world: World):
    """A process other than rank 0: the same splits (seeded) and every training step."""
    if not world.main_says():
        raise CnnlabError("rank 0 could not start the run; its own error line says why")
    quiet = make_console(quiet=True)
    fit(cfg, prepare_data(data_dir, cfg, quiet), device, quiet, world)


def _lead(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TransferConfig,
    overwrite: bool,
    console: Console,
    device: torch.device,
    described: str,
    world: World,
    board: TransferBoard | None = None,
    tracker: Tracker = Tracker(),
) -> tuple[Path, RunMetrics | CrossValMetrics]:
    """The one process that writes: data -> fit -> assessment -> the run directory."""
    claim = run_directory(out, overwrite=overwrite, inputs={"the data folder": data_dir})
    with output_errors(out), world.claim(claim) as tmp:
        console.print(f"device: {described}")
        prepared = prepare_data(data_dir, cfg, console)
        counts = ", ".join(f"{n} {len(s)}" for n, s in prepared.splits.items())
        console.print(f"classes: {', '.join(prepared.classes)}; images: {counts}")
        write_json(tmp / "config.json", cfg.to_dict())
        environment = {**environment_info(), "device": described, "processes": world.size}
        write_json(tmp / "environment.json", environment)
        write_json(tmp / "data_report.json", prepared.report)
        write_csv(tmp / "splits.csv", prepared.manifest())

        if cfg.folds:
            metrics: RunMetrics | CrossValMetrics = cross_validate(
                tmp, cfg, prepared, device, described, console
            )
        else:
            metrics = _single(tmp, cfg, prepared, device, described, console, world, board, tracker)
    console.print(f"run written to {out}")
    return Path(out), metrics


def _single(
    tmp: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    device: torch.device,
    described: str,
    console: Console,
    world: World,
    board: TransferBoard | None = None,
    tracker: Tracker = Tracker(),
) -> RunMetrics:
    """One training, assessed on the held-out split (``assess``)."""

    def on_epoch(row: HistoryRow) -> None:
        if board is not None:
            board.log_epoch(row)
        tracker.log_epoch(row)

    result = fit(cfg, prepared, device, console, world, on_epoch=on_epoch)
    write_csv(tmp / "history.csv", result.history)
    outcome = assess(cfg, prepared, result, device, described, say=console.print)
    if board is not None:
        last_epoch = len(result.history) - 1
        board.finish(outcome.split, outcome.held, outcome.proba, prepared.classes, last_epoch)
    write_outcome(tmp, cfg, prepared, result, outcome)
    print_summary(console, outcome.metrics)
    return outcome.metrics
