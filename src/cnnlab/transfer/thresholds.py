"""Threshold policies: how a two-class run picks its operating threshold on validation.

A policy is chosen before the test set is seen, and applied to the validation split's scores
(the probability of class 1, the positive class) only:

- ``youden`` (default): the ROC point maximising sensitivity + specificity - 1;
- ``argmax``: no threshold; the run decides at the argmax (class 1 when P >= 0.5);
- ``sensitivity=0.95``: the largest threshold whose validation sensitivity is >= 0.95, which
  keeps as much specificity as that target allows (a screening test);
- ``specificity=0.90``: the smallest threshold whose validation specificity is >= 0.90, which
  keeps as much sensitivity as that target allows (a confirmation test).

A target threshold is a validation score, as on the ROC curve. A target is met on validation
by construction, never promised on a new site: the test split says what it holds there.
Kept free of torch (and scikit-learn is imported by ``choose`` alone), so ``TransferConfig``
checks a policy without loading either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cnnlab.errors import CnnlabError

YOUDEN, ARGMAX_POLICY = "youden", "argmax"
TARGETS = ("sensitivity", "specificity")
POLICY_HELP = (
    "Two classes: how the operating threshold is chosen on validation: youden, argmax, "
    "sensitivity=0.95 (largest threshold meeting it) or specificity=0.90 (smallest)."
)


@dataclass(frozen=True)
class Policy:
    kind: str  # youden, argmax, sensitivity, specificity
    target: float | None = None  # in (0, 1] for sensitivity and specificity

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}={self.target:g}"

    def describe(self) -> str:
        """How it chose, after "chosen on the validation split": ``as the largest threshold
        with sensitivity >= 0.95``."""
        if self.kind == YOUDEN:
            return "by maximising Youden's J (sensitivity + specificity - 1)"
        if self.kind == ARGMAX_POLICY:
            return "as the argmax (no threshold)"
        extreme = "largest" if self.kind == "sensitivity" else "smallest"
        return f"as the {extreme} threshold with {self.kind} >= {self.target:g}"


def parse_policy(text: str, flag: str = "--threshold-policy") -> Policy:
    """``youden``, ``argmax``, ``sensitivity=T`` or ``specificity=T`` with T in (0, 1];
    anything else one line naming ``flag``."""
    usage = "youden, argmax, sensitivity=T or specificity=T with T in (0, 1]"
    kind, sep, value = str(text).strip().partition("=")
    kind = kind.strip().lower()
    if not sep and kind in (YOUDEN, ARGMAX_POLICY):
        return Policy(kind)
    if kind not in TARGETS or not sep:
        raise CnnlabError(f"invalid {flag}: {text!r} is not one of {usage}")
    try:
        target = float(value)
    except ValueError:
        raise CnnlabError(f"invalid {flag}: target {value!r} is not a number ({usage})") from None
    if not (math.isfinite(target) and 0 < target <= 1):
        raise CnnlabError(f"invalid {flag}: target {value} must be in (0, 1], e.g. {kind}=0.95")
    return Policy(kind, target)


def choose(policy: Policy | str, labels: np.ndarray, score: np.ndarray) -> float | None:
    """The threshold ``policy`` picks on validation ``labels`` (0/1) and ``score`` (P of
    class 1); None for ``argmax``. A target no threshold can meet is one line."""
    policy = parse_policy(policy) if isinstance(policy, str) else policy
    labels, score = np.asarray(labels).astype(bool), np.asarray(score, dtype=float)
    if policy.kind == ARGMAX_POLICY:
        return None
    if policy.kind == YOUDEN:
        from cnnlab.metrics import choose_threshold

        return choose_threshold(labels, score)
    assert policy.target is not None
    if policy.kind == "sensitivity":
        positives = np.sort(score[labels])[::-1]
        if not len(positives):
            raise CnnlabError(f"threshold policy {policy}: validation holds no positive image")
        # the k-th highest positive score keeps k of P positives at or above it
        k = math.ceil(policy.target * len(positives) - 1e-9)
        return float(positives[k - 1])
    negatives = np.sort(score[~labels])
    if not len(negatives):
        raise CnnlabError(f"threshold policy {policy}: validation holds no negative image")
    m = math.ceil(policy.target * len(negatives) - 1e-9)  # negatives that must fall below it
    above = score[score > negatives[m - 1]]
    if len(above):
        return float(above.min())
    if negatives[m - 1] < 1:
        return float(np.nextafter(negatives[m - 1], 2.0))
    raise CnnlabError(
        f"threshold policy {policy}: no threshold in [0, 1] meets it on validation "
        f"({m} negative images score 1.0)"
    )
