"""The learning rate a study's sweep chooses for a tuned trial.

An optimizer level with a learning-rate sweep first trains the baseline at each candidate rate
(a few epochs, the sweep's seeds); the tuned trials of that level then train with the rate
chosen here, on validation accuracy only, so the test set plays no part in the choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

import numpy as np


class Candidate(TypedDict):
    lr: float
    val_accuracy: float  # mean final validation accuracy over the seeds
    n: int  # sweep trials (seeds) behind that mean


class LrChoice(TypedDict):
    chosen: float
    candidates: list[Candidate]


def choose_lr(sweep: Iterable[tuple[float, float]]) -> LrChoice:
    """The rate with the best mean final validation accuracy, from ``(lr, val_accuracy)`` per
    completed sweep trial. A tie goes to the smaller rate, the safer one for longer training."""
    by_lr: dict[float, list[float]] = {}
    for lr, val_accuracy in sweep:
        by_lr.setdefault(float(lr), []).append(float(val_accuracy))
    if not by_lr:
        raise ValueError("choose_lr needs at least one completed sweep trial")
    candidates = [
        Candidate(lr=lr, val_accuracy=float(np.mean(v)), n=len(v))
        for lr, v in sorted(by_lr.items())
    ]
    best = max(candidates, key=lambda c: (c["val_accuracy"], -c["lr"]))
    return LrChoice(chosen=best["lr"], candidates=candidates)
