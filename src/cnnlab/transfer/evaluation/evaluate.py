"""``cnnlab transfer evaluate``: a run, or an ensemble of runs, on a held-out folder.

What computes the probabilities (one run or the mean of several, each reading the images
at its own preprocessing: ``member_images``; ``--tta``, ``--adapt-bn``) is
``scoring.Scorer``; at which threshold they are decided, ``operating.operating_point`` (the
run's own, or one re-chosen on stored validation scores by ``--threshold-policy``).
Both are recorded in metrics.json (``inference``, ``threshold``, ``threshold_policy``), and
every threshold-dependent metric is stated at its named operating point (``metrics_of``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab import plots
from cnnlab.errors import CnnlabError
from cnnlab.files import output_errors, write_csv, write_json
from cnnlab.predictions import csv_rows
from cnnlab.runs import check_run_target, run_directory
from cnnlab.transfer.data.folders import class_folders, list_class_files
from cnnlab.transfer.data.images import check_max_pixels
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.inference.engines import Say, require_engine, stderr_note
from cnnlab.transfer.inference.member_images import load_labelled, unlabelled_images
from cnnlab.transfer.inference.operating import operating_point
from cnnlab.transfer.inference.predict import metrics_of, prediction_rows
from cnnlab.transfer.inference.scoring import deployed, load_members, prepare_scorer
from cnnlab.transfer.results import EvaluationMetrics

Source = str | os.PathLike


def evaluate(
    run_dir: Source | Sequence[Source],
    data_dir: Source,
    out: Source | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    max_pixels: int | None = None,
    engine: str = "auto",
    say: Say = stderr_note,
    *,
    tta: bool = False,
    adapt_bn: Source | None = None,
    threshold_policy: str | None = None,
) -> tuple[EvaluationMetrics, Path]:
    """Metrics of a run's best checkpoint (or of several runs' mean) on a held-out folder of
    class folders.

    Results go to ``out`` (default ``RUN_DIR/evaluations/<folder name>``; an ensemble needs
    ``out``): metrics.json, predictions.csv, confusion_matrix.png, roc.png,
    precision_recall.png, reliability.png. Unreadable images, and images above
    ``max_pixels``, are skipped and listed in metrics.json; intervals are bootstrap 95%
    intervals (seed 0). ``adapt_bn``: a folder of unlabelled images of the new site whose
    BatchNorm statistics replace the training site's (``adapt.py``)."""
    sources = [run_dir] if isinstance(run_dir, str | os.PathLike) else list(run_dir)
    if len(sources) > 1 and out is None:
        raise CnnlabError("an ensemble's evaluation belongs to none of its runs: give --out")
    max_pixels = check_max_pixels(max_pixels)
    ckpts = load_members(sources)
    op = operating_point(
        sources, ckpts[0].class_names, deployed(ckpts), threshold_policy
    )  # a bad policy fails here, first
    ckpt = ckpts[0]
    dev, _ = resolve_device(device)
    require_engine(engine, dev)
    data_dir = Path(data_dir)
    out = Path(out or Path(sources[0]) / "evaluations" / data_dir.name)
    # a run directory: its evaluations/ may be written, the run itself never replaced
    models = [Path(s) / "best.pt" if Path(s).is_dir() else Path(s) for s in sources]
    read = {"the data folder": data_dir, **{f"the model {m}": m for m in models}}
    if adapt_bn is not None:
        read["the --adapt-bn folder"] = Path(adapt_bn)
    runs = [m.parent for m in models]
    check_run_target(out, overwrite, inputs=read, runs=runs)  # before images and ONNX export
    classes = class_folders(data_dir)
    unknown = [c for c in classes if c not in ckpt.class_names]
    if not classes or unknown:
        raise CnnlabError(
            f"{data_dir} must hold class folders named like the model's classes "
            f"({', '.join(ckpt.class_names)}); found {', '.join(classes) or 'none'}"
        )
    adapt = unlabelled_images(adapt_bn, ckpts, max_pixels)
    files = list_class_files(data_dir, classes)
    files.labels = np.asarray([ckpt.class_names.index(classes[i]) for i in files.labels])
    images, split = load_labelled(files, ckpts, max_pixels)  # each member's own pixels
    if not len(split):
        raise CnnlabError(f"no readable images in {data_dir}")
    scorer = prepare_scorer(sources, ckpts, dev, engine, images, tta, adapt, say)
    scorer.notes += [op.note] if op.note else []
    if op.threshold is not None and (tta or adapt):
        scorer.notes.append(
            "the threshold was chosen on validation scores without --tta/--adapt-bn"
        )
    claim = run_directory(out, overwrite, inputs=read, runs=runs)
    with output_errors(out), claim as tmp:
        proba = scorer.proba(images)
        held = metrics_of(split.labels, proba, ckpt.class_names, op.threshold, 0, op.policy)
        metrics: EvaluationMetrics = {
            **held,
            "data_dir": str(data_dir),
            "n_images": len(split),
            "skipped": [{"path": p, "reason": r} for p, r in split.skipped],
            "threshold": op.threshold,
            "threshold_policy": op.policy,
            "inference": scorer.record(),
        }
        write_json(tmp / "metrics.json", metrics)
        rows = prediction_rows(split.paths, proba, ckpt.class_names, 3, op.threshold)
        for row, label in zip(rows, split.labels, strict=True):
            row["true"] = ckpt.class_names[int(label)]
        write_csv(tmp / "predictions.csv", csv_rows(rows))
        names = ckpt.class_names
        plots.confusion_matrix(metrics["confusion_matrix"], names, tmp / "confusion_matrix.png")
        plots.roc_curves(split.labels, proba, names, tmp / "roc.png")
        plots.precision_recall_curves(split.labels, proba, names, tmp / "precision_recall.png")
        plots.reliability_diagram(split.labels, {"model": proba}, tmp / "reliability.png")
    return metrics, out


def evaluation_dir(run_dir: Source, data_dir: Source) -> Path:
    """Where ``evaluate`` writes without ``out``: ``RUN_DIR/evaluations/<folder name>``."""
    return Path(run_dir) / "evaluations" / Path(data_dir).name
