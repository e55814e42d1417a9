"""Seeded, stratified splits shared by both pipelines."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from cnnlab.errors import CnnlabError


def stratified_split(
    labels: np.ndarray, holdout: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, holdout)`` with class proportions preserved in both parts.

    ``holdout`` is a count (int) or a fraction in (0, 1). The same labels and seed always give
    the same split.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if isinstance(holdout, float) and not 0 < holdout < 1:
        raise CnnlabError(f"holdout fraction must be in (0, 1), got {holdout}")
    if isinstance(holdout, int) and not 0 < holdout < n:
        raise CnnlabError(f"holdout size must be between 1 and {n - 1}, got {holdout}")
    index = np.arange(n)
    try:
        keep, held = train_test_split(
            index, test_size=holdout, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError as e:  # e.g. a class with a single member cannot be stratified
        raise CnnlabError(f"cannot make a stratified split: {e}") from None
    return np.sort(keep), np.sort(held)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subset of ``size`` items (all items if size >= n)."""
    n = len(labels)
    if size >= n:
        return np.arange(n)
    if size <= 0:
        raise CnnlabError(f"subset size must be positive, got {size}")
    _, subset = stratified_split(labels, int(size), seed)
    return subset
