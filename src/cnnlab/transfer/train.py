"""``cnnlab transfer train``: data -> model -> epochs -> checkpoints -> metrics -> report.

Reads top to bottom: ``train`` prepares the data (``splits.prepare_data``), fits
(``fit.fit``), then assesses the best checkpoint on the held-out split (``assess.assess``) and
writes the run directory; with ``--folds`` it does so per fold (``crossval``). Everything
happens inside ``run_directory``, so a failed or interrupted run leaves nothing half-written;
a diverged loss (``fit``) or a full disk (``outputs.disk_errors``) ends it in one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.console import make_console
from cnnlab.runs import environment_info, run_directory, write_csv, write_json
from cnnlab.transfer.assess import assess, write_outcome
from cnnlab.transfer.crossval import cross_validate
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.fit import fit
from cnnlab.transfer.models import known_arch, require_weights
from cnnlab.transfer.outputs import disk_errors, require_dir_target
from cnnlab.transfer.report import print_summary
from cnnlab.transfer.splits import Prepared, prepare_data

if TYPE_CHECKING:
    import torch
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.results import CrossValMetrics, RunMetrics


def train(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    cfg: TransferConfig,
    overwrite: bool = False,
    console: Console | None = None,
) -> tuple[Path, RunMetrics | CrossValMetrics]:
    """Train and write a complete run directory; returns (run_dir, metrics).

    With ``cfg.folds`` the run is a cross-validation (``crossval.py``): one directory, a
    ``fold_k/`` per fold, the summary's metrics."""
    console = console or make_console()
    require_dir_target("--out", out)
    known_arch(cfg.arch)
    require_weights(cfg.arch, cfg.weights)
    device, described = resolve_device(cfg.device)
    with disk_errors(out), run_directory(out, overwrite=overwrite) as tmp:
        console.print(f"device: {described}")
        prepared = prepare_data(data_dir, cfg, console)
        counts = ", ".join(f"{n} {len(s)}" for n, s in prepared.splits.items())
        console.print(f"classes: {', '.join(prepared.classes)}; images: {counts}")
        write_json(tmp / "config.json", cfg.to_dict())
        write_json(tmp / "environment.json", {**environment_info(), "device": described})
        write_json(tmp / "data_report.json", prepared.report)
        write_csv(tmp / "splits.csv", prepared.manifest())

        if cfg.folds:
            metrics: RunMetrics | CrossValMetrics = cross_validate(
                tmp, cfg, prepared, device, described, console
            )
        else:
            metrics = _single(tmp, cfg, prepared, device, described, console)
    console.print(f"run written to {out}")
    return Path(out), metrics


def _single(
    tmp: Path,
    cfg: TransferConfig,
    prepared: Prepared,
    device: torch.device,
    described: str,
    console: Console,
) -> RunMetrics:
    """One training, assessed on the held-out split (``assess``)."""
    result = fit(cfg, prepared, device, console)
    write_csv(tmp / "history.csv", result.history)
    outcome = assess(cfg, prepared, result, device, described)
    write_outcome(tmp, cfg, prepared, result, outcome)
    print_summary(console, outcome.metrics)
    return outcome.metrics
