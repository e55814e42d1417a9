"""A factor in words, for readers who never saw the spec: ``regularization_small`` reads
"Regularization, 1,000 training images x 150 epochs" and ``batch_size_scaled`` "Batch size,
LR scaled linearly + warm-up".

Derived from what the factor changes (its kind, regime and levels), never from its name, so a
spec's own names get the same words; the report and the terminal's verdict table share them.
"""

from __future__ import annotations

import math

from cnnlab.fmnist.config import TrainConfig
from cnnlab.study.spec.factors import Factor

KIND_WORDS = {
    "kernel_size": "Kernel (filter) size", "regularization": "Regularization",
    "batch_size": "Batch size", "optimizer": "Optimizer", "lr": "Learning rate",
    "learning_rate": "Learning rate", "dropout": "Dropout rate", "epochs": "Epochs",
    "train_limit": "Training images", "weight_decay": "Weight decay", "schedule": "LR schedule",
}  # fmt: skip


def factor_title(factor: Factor, study_baseline: TrainConfig) -> str:
    """The factor's heading: its kind in words, then what sets it apart from another factor
    of the same kind (its own data budget, how a batch size's learning rate is set)."""
    kind = KIND_WORDS.get(factor.kind, factor.kind.replace("_", " ").capitalize())
    base = factor.baseline(study_baseline)
    changes = factor.regime.changes if factor.regime else {}
    budget = []
    if "train_limit" in changes:
        budget.append(f"{base.train_limit:,} training images")
    if "epochs" in changes:
        budget.append(f"{base.epochs} epochs")
    parts = [kind, " x ".join(budget)] if budget else [kind]
    if factor.kind == "batch_size":
        parts.append(describe_batch_factor(factor, base))
    return ", ".join(parts)


def describe_batch_factor(f: Factor, base: TrainConfig) -> str:
    """``fixed epochs, LR scaled linearly + warm-up``, ``equal steps, fixed LR``,
    ``fixed epochs, LR tuned per batch size``..."""
    parts = ["equal steps" if any("epochs" in lv.overrides for lv in f.levels) else "fixed epochs"]
    scaled = [
        lv
        for lv in f.levels
        if "lr" in lv.overrides and lv.overrides["batch_size"] != base.batch_size
    ]
    if f.lr_sweep is not None:
        parts.append("LR tuned per batch size")
    elif not scaled:
        parts.append("fixed LR")
    else:
        lv = scaled[0]
        ratio = lv.overrides["batch_size"] / base.batch_size
        linear = math.isclose(lv.overrides["lr"], base.learning_rate * ratio)
        parts.append(f"LR scaled {'linearly' if linear else 'with the square root'} + warm-up")
    return ", ".join(parts)


def factor_titles(spec) -> dict[str, str]:
    """Each factor's title by name; two factors that would read the same keep their spec
    names beside it, so no two sections share a heading."""
    titles = {f.name: factor_title(f, spec.baseline) for f in spec.factors}
    seen = list(titles.values())
    return {n: t if seen.count(t) == 1 else f"{t} ({n})" for n, t in titles.items()}
