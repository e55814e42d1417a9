"""The learning rate a study's sweep chooses for a tuned trial, and how the sweep brackets it.

An optimizer level with a learning-rate sweep first trains the factor's baseline at each rate
of a grid (a few epochs, the sweep's seeds, which are not the study's seeds), then a few
bracketing rounds (``probe_lr``); the tuned trials of that level then train with the rate
chosen here, on validation accuracy only, so the test set plays no part in the choice.

Bracketing, because a grid whose best rate sits at its edge says only that the optimum lies
beyond it: on the old quick profile all four optimizers chose the top of x0.3/1/3 (issue 13).
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


INTERIOR, LOWER_EDGE, UPPER_EDGE, SINGLE = "interior", "lower edge", "upper edge", "single rate"


def bracket_position(choice: LrChoice) -> str:
    """Where the chosen rate lies among the rates tried: ``interior`` when a smaller and a
    larger rate were both tried (and did no better), else at an edge of the range."""
    rates = [c["lr"] for c in choice["candidates"]]
    if len(rates) < 2:
        return SINGLE
    if choice["chosen"] == rates[-1]:
        return UPPER_EDGE
    if choice["chosen"] == rates[0]:
        return LOWER_EDGE
    return INTERIOR


def probe_lr(choice: LrChoice) -> float:
    """The rate a bracketing round tries next, from the rounds before it.

    While the best rate is at an edge of those tried, one step beyond it, by the ratio between
    it and its neighbour (so a x3 grid goes on in x3 steps). Once the best rate is interior,
    the round refines instead: the geometric mean of the best rate and its better neighbour,
    where the optimum most likely lies. Every round therefore trains something informative,
    and the number of rounds (the spec's ``extend``) caps the search.
    """
    cands = choice["candidates"]
    rates = [c["lr"] for c in cands]
    position = bracket_position(choice)
    if position == SINGLE:
        raise ValueError("bracketing needs at least two tried rates")
    if position == UPPER_EDGE:
        return rates[-1] * rates[-1] / rates[-2]
    if position == LOWER_EDGE:
        return rates[0] * rates[0] / rates[1]
    i = rates.index(choice["chosen"])
    below, above = cands[i - 1], cands[i + 1]
    # the better neighbour (a tie goes to the smaller rate, as in choose_lr)
    j = i + 1 if above["val_accuracy"] > below["val_accuracy"] else i - 1
    return float(np.sqrt(rates[i] * rates[j]))
