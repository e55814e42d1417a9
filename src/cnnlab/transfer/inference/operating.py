"""The operating threshold of a run or an ensemble at predict, evaluate and serve.

A single run deploys the threshold stored in its checkpoint, chosen at training by its
``--threshold-policy``. Another policy, or an ensemble's threshold, is chosen again on the
validation split only: on the run's stored validation scores (``predictions_val.csv``, the
probabilities the training threshold was chosen on), never on the images being evaluated.
An ensemble gets a threshold only when all its runs were validated on the same images (the
same split: the same data, seed and sizes); otherwise, or where a run stored no validation
scores, it decides at the argmax and says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.transfer.stored import VALIDATION_SCORES, read_scores
from cnnlab.transfer.thresholds import YOUDEN, choose, parse_policy


@dataclass(frozen=True)
class Operating:
    threshold: float | None  # None: the argmax decides
    policy: str | None  # how it was chosen (youden, sensitivity=0.95, ...); None: multi-class
    note: str | None = None  # why an ensemble decides at the argmax


def operating_point(
    sources: Sequence[str | os.PathLike],
    classes: list[str],
    deployed: Sequence[tuple[float | None, str | None]],
    policy: str | None = None,
) -> Operating:
    """The threshold ``sources`` (runs with these ``classes``) decide at, as the module
    docstring says; ``deployed``: each run's own (threshold, policy). Torch-free, so
    ``transfer compare`` uses it too."""
    if len(classes) != 2:
        return Operating(None, None)
    chosen = parse_policy(policy) if policy is not None else None
    if chosen is None and len(sources) == 1:
        threshold, stored = deployed[0]
        return Operating(threshold, (stored or YOUDEN) if threshold is not None else "argmax")
    scored = [_validation(source, classes) for source in sources]
    if len(sources) == 1 and scored[0] is None:
        raise CnnlabError(
            f"--threshold-policy: {sources[0]} holds no stored validation scores "
            f"({VALIDATION_SCORES}; runs trained before threshold policies have none): "
            "retrain it with --threshold-policy to choose its threshold another way"
        )
    if chosen is None:
        policies = {stored or YOUDEN for _, stored in deployed}
        chosen = parse_policy(policies.pop() if len(policies) == 1 else YOUDEN)
    missing = [str(s) for s, v in zip(sources, scored, strict=True) if v is None]
    if missing:
        return _argmax(f"{missing[0]} holds no stored validation scores ({VALIDATION_SCORES})")
    paths, labels, proba = scored[0]  # type: ignore[misc]
    total = proba.copy()
    for source, found in zip(sources[1:], scored[1:], strict=True):
        other, other_labels, other_proba = found  # type: ignore[misc]
        where = {p: i for i, p in enumerate(other)}
        if set(where) != set(paths) or len(other) != len(paths):
            return _argmax(
                f"{source} and {sources[0]} were not validated on the same images (another "
                "split, seed or data folder)"
            )
        order = np.asarray([where[p] for p in paths])
        if not np.array_equal(other_labels[order], labels):
            return _argmax(f"{source} and {sources[0]} label their validation images differently")
        total += other_proba[order]
    if len(np.unique(labels)) < 2:
        return _argmax("the shared validation split holds one class only")
    return Operating(choose(chosen, labels, total[:, 1] / len(sources)), str(chosen))


def _argmax(why: str) -> Operating:
    return Operating(None, "argmax", f"ensemble decides at the argmax: {why}")


def _validation(source: str | os.PathLike, classes: list[str]):
    """(paths, labels, probabilities) of ``source``'s stored validation scores, or None."""
    path = Path(source) / VALIDATION_SCORES  # runs before threshold policies: none
    if not path.is_file():
        return None
    try:
        found = read_scores(path, classes)
    except (OSError, KeyError, ValueError) as e:
        raise CnnlabError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not np.isfinite(found[2]).all():
        raise CnnlabError(f"{path}: probabilities must be finite numbers (edited by hand?)")
    return found if len(found[0]) else None
