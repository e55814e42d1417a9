"""What each level's network costs: parameters, forward multiply-adds per image and the feature
map its classifier reads, computed from the architecture (``fmnist.model.architecture_cost``)
rather than measured, beside the measured seconds per epoch. Shown for a factor whose levels
change the work per image (kernel size, padding), where time alone would hide why one level
is slower."""

from __future__ import annotations

import math
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.report import Report
from cnnlab.runtime import quiet_logs_by_default
from cnnlab.study.analysis import StudyAnalysis
from cnnlab.study.report.scenarios import factor_cells
from cnnlab.study.report.statistics import ci
from cnnlab.study.spec import Factor, StudySpec

DIFFERENT = 0.01  # levels whose multiply-adds differ by more than this share get the table
# config fields that change how a network trains, not what it computes per image: levels that
# differ only in these share one build (a field not listed here is taken to shape the network)
TRAINING_ONLY = frozenset({
    "lr", "seed", "optimizer", "weight_decay", "schedule", "warmup_epochs", "batch_size",
    "epochs", "early_stopping", "train_limit", "val_size", "l2", "dropout", "augment", "shift",
    "flip", "erasing", "label_smoothing", "tta", "tta_shift",
})  # fmt: skip


def architecture_costs(spec: StudySpec) -> dict[str, dict[str, Any]]:
    """Each planned cell's architecture cost, by cell name; empty where Keras is not installed
    (a report read on a machine without the ``keras`` extra leaves the table out)."""
    quiet_logs_by_default()  # before Keras loads TensorFlow: no absl or oneDNN lines
    try:
        import cnnlab.fmnist.framework  # noqa: F401  the backend checked, TensorFlow loaded quietly
        from cnnlab.fmnist.config import TrainConfig
        from cnnlab.fmnist.model import architecture_cost
    except (ImportError, CnnlabError):  # no Keras, or no usable backend, here
        return {}
    trials, cells = spec.plan()
    configs = {t.key: t.config for t in trials}
    costs, seen = {}, {}
    for cell in cells:
        config = next((configs[k] for k in cell.keys if k in configs), None)
        if config is None:
            continue
        shape = {k: v for k, v in config.items() if k not in TRAINING_ONLY}
        key = repr(sorted(shape.items()))  # one build per architecture, however it trains
        if key not in seen:
            seen[key] = architecture_cost(TrainConfig.from_dict({**config, "lr": None}))
        costs[cell.name] = seen[key]
    return costs


def costs_part(rep: Report, a: StudyAnalysis, factor: Factor, costs: dict) -> None:
    """The table, for a factor whose levels differ in multiply-adds per image."""
    cells = [(lv, s, costs.get(f"{factor.name}={lv}")) for lv, s in factor_cells(a, factor)]
    cells = [(lv, s, c) for lv, s, c in cells if c is not None]
    macs = [c["multiply_adds"] for _, _, c in cells]
    if len(cells) < 2 or max(macs) <= (1 + DIFFERENT) * min(macs):
        return
    rep.paragraph(
        "What each level's network costs: parameters and forward multiply-adds per image "
        "(convolutions and dense layers) follow from the architecture; the feature map is what "
        "the classifier reads (height x width x channels); seconds per epoch are measured "
        "(geometric mean over seeds, 95% CI), so they also carry the machine."
    )
    rows = [{
        "level": lv + (" (reference)" if lv == factor.reference else ""),
        "params": f"{c['params']:,}",
        "multiply-adds per image (M)": f"{c['multiply_adds'] / 1e6:.2f}",
        "feature map": " x ".join(str(d) for d in c["features"]),
        "features": f"{math.prod(c['features']):,}",
        "s/epoch [95% CI]": ci(s.epoch_seconds, 2),
    } for lv, s, c in cells]  # fmt: skip
    rep.table(rows)
