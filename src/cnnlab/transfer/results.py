"""What the transfer pipeline hands back: typed records of ``metrics.json`` and ``fit``.

TypedDicts, not classes, for everything saved as JSON: they are plain dicts at run time, so
``metrics.json`` keeps its keys and order, while readers and type checkers see every key.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict, cast

from cnnlab.metrics import ContractMetrics

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from cnnlab.transfer.checkpoint import Checkpoint
    from cnnlab.transfer.data.folders import LoadedSplit


# The named operating points: every threshold-dependent number cnnlab reports is stated at one
# of them, and no table mixes them (issue 24). Threshold-free metrics need no name.
ARGMAX = "argmax"
VALIDATION_THRESHOLD = "validation-chosen threshold"
THRESHOLD_DEPENDENT = ("accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity")
THRESHOLD_FREE = ("roc_auc", "pr_auc", "test_loss", "ece")
MULTICLASS_NOTE = "multi-class: the argmax is the only operating point"


def point_label(name: str, threshold: float | None = None) -> str:
    """How a table heads an operating point: ``validation-chosen threshold 0.530`` or
    ``argmax``."""
    return name if threshold is None or name == ARGMAX else f"{name} {threshold:.3f}"


class BinaryMetrics(TypedDict):
    """``metrics.binary_metrics`` at one named operating point: the decision ``probability of
    class 1 >= threshold`` (the argmax is threshold 0.5), with bootstrap intervals."""

    name: NotRequired[str]  # ARGMAX or VALIDATION_THRESHOLD
    policy: NotRequired[str]  # how VALIDATION_THRESHOLD was chosen: youden, sensitivity=0.95
    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    balanced_accuracy: float
    accuracy: NotRequired[float]
    macro_f1: NotRequired[float]
    # 95% intervals of THRESHOLD_DEPENDENT at this operating point
    ci: NotRequired[dict[str, list[float] | None]]


class HeldOutMetrics(ContractMetrics):
    """``metrics.metrics_contract`` of one split, and for two classes the operating points."""

    pr_auc: float | None  # average precision: of class 1, or macro one-vs-rest
    # the operating point of the top-level test_accuracy, balanced_accuracy, macro_f1,
    # per_class and confusion_matrix: always ARGMAX
    threshold_dependent_at: NotRequired[str]
    positive_class: NotRequired[str]
    at_argmax: NotRequired[BinaryMetrics]
    operating_point: NotRequired[BinaryMetrics]  # at the threshold chosen on validation
    # bootstrap 95% intervals, metric -> [low, high] (None: undefined): test_accuracy,
    # balanced_accuracy, macro_f1 (at the argmax), roc_auc, pr_auc; those at each operating
    # point are in its own block's ci
    ci: NotRequired[dict[str, list[float] | None]]
    ci_method: NotRequired[str]


class ValSummary(TypedDict):
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    roc_auc: float | None
    pr_auc: float | None
    ece: float


class CalibrationChange(TypedDict):
    ece_before: float
    ece_after: float
    nll_before: float  # negative log likelihood, nats per image
    nll_after: float


class Calibration(TypedDict):
    """``--calibrate``: temperature scaling fitted on validation, folded into ``best.pt``."""

    temperature: float  # as fitted; > 1 softens an over-confident model
    # False when T stopped at 1/20 or 20 (validation could not pin it down): best.pt is then
    # left uncalibrated, and the "after" figures equal the "before" ones
    applied: bool
    fitted_on: str  # "val"
    val: CalibrationChange  # where T was fitted: improves by construction
    held_out: CalibrationChange  # the honest measure


class RunMetrics(HeldOutMetrics):
    """``metrics.json`` of ``transfer train``: the held-out split's metrics and the run."""

    # "test" (a test/ folder), "test split carved from train", "val" (--test-size 0: optimistic),
    # or "fold k of K" in a --folds run's fold directories
    evaluated_on: str
    class_names: list[str]
    threshold: float | None
    threshold_policy: NotRequired[str]  # youden, argmax, sensitivity=T, specificity=T
    calibration: Calibration | None
    best_epoch: int
    monitor: str
    epochs_run: int
    train_seconds: float
    images_per_second: float
    feature_cache: bool
    head_dropout: float  # acts in training on images and on cached features alike
    peak_rss_mb: float | None  # the training process's peak resident memory, end of training
    device: str
    n_train: int
    n_val: int
    n_test: int
    val: ValSummary  # the best checkpoint on the validation split


class FoldMetrics(TypedDict):
    """One fold of a ``--folds`` run: its held-out fold's metrics (``fold_k/metrics.json``)."""

    fold: int  # 1-based
    n_test: int
    test_accuracy: float
    balanced_accuracy: float
    macro_f1: float
    roc_auc: float | None
    pr_auc: float | None
    ece: float
    sensitivity: NotRequired[float]  # two classes, at that fold's operating point
    specificity: NotRequired[float]


class CrossValMetrics(TypedDict):
    """``metrics.json`` of a ``--folds K`` run: means over folds, Student-t intervals."""

    evaluated_on: str  # "K-fold cross-validation"
    folds: int
    class_names: list[str]
    positive_class: NotRequired[str]
    test_accuracy: float  # each metric: the mean over folds
    balanced_accuracy: float
    macro_f1: float
    roc_auc: float | None
    pr_auc: float | None
    ece: float
    sensitivity: NotRequired[float]
    specificity: NotRequired[float]
    std: dict[str, float | None]  # over folds (ddof 1)
    ci: dict[str, list[float] | None]  # mean +- t(0.975, K-1) std / sqrt(K)
    ci_method: str
    per_fold: list[FoldMetrics]
    n_images: int
    epochs_run: list[int]
    train_seconds: float  # all folds
    peak_rss_mb: float | None  # of the one process that trained all folds
    device: str


class SkippedImage(TypedDict):
    path: str
    reason: str


class Member(TypedDict):
    """One run of ``Inference``: what it does to an image before its network sees it."""

    run: str
    arch: str
    image_size: int
    mean: list[float]
    std: list[float]
    contrast: str  # data/contrast.py: none, clahe or equalize


def member_line(member: Member) -> str:
    """``member RUN: efficientnet_lite0, 224 px, contrast none, mean [..], std [..]``."""
    numbers = ", ".join(f"{k} [{', '.join(f'{v:g}' for v in member[k])}]" for k in ("mean", "std"))
    return (
        f"member {member['run']}: {member['arch']}, {member['image_size']} px, "
        f"contrast {member['contrast']}, {numbers}"
    )


class Inference(TypedDict):
    """How ``evaluate`` and ``predict`` computed their probabilities: the opt-ins in force."""

    runs: list[str]  # one run, or an ensemble's members
    members: list[Member]  # each run with the preprocessing it applies to every image
    ensemble: str | None  # "mean of the softmax of 3 runs"
    tta: str | None  # scoring.TTA when --tta
    adapted: str | None  # "adapted: BN re-estimated on N unlabelled images from DIR"
    notes: list[str]  # e.g. why an ensemble decides at the argmax


def inference_lines(record: Inference | None) -> list[str]:
    """The opt-ins in force, one line each (none for a plain single run); an ensemble names
    each member with its preprocessing."""
    if not record:
        return []
    out = [f"ensemble: {record['ensemble']}"] if record["ensemble"] else []
    out += [member_line(m) for m in record.get("members", [])] if record["ensemble"] else []
    out += [f"tta: {record['tta']}"] if record["tta"] else []
    return out + ([record["adapted"]] if record["adapted"] else []) + list(record["notes"])


class EvaluationMetrics(HeldOutMetrics):
    """``metrics.json`` of ``transfer evaluate`` on a held-out folder."""

    data_dir: str
    n_images: int
    skipped: list[SkippedImage]
    threshold: float | None  # the operating threshold (None: the argmax decides)
    threshold_policy: str | None  # how it was chosen on validation (None: multi-class)
    inference: Inference


class HistoryRow(TypedDict):
    """One epoch, one row of ``history.csv``."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float
    val_macro_f1: float
    val_roc_auc: float | None
    val_ece: float
    lr: float
    stages_trained: int
    train_seconds: float  # the training steps alone
    seconds: float  # including validation


def read_history(path: Path) -> list[HistoryRow]:
    """The rows of a run's ``history.csv`` with their numbers back (an empty cell: None).
    ``csv`` writes a float as its repr, so every value reads back exactly."""
    with open(path, newline="") as f:
        return [
            cast(HistoryRow, {k: _number(v) for k, v in row.items()}) for row in csv.DictReader(f)
        ]


def _number(text: str) -> int | float | str | None:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text or None


@dataclass
class FitResult:
    model: nn.Module  # holding the best epoch's weights, in eval mode
    history: list[HistoryRow]
    best_epoch: int
    best_value: float | None
    best_state: dict[str, torch.Tensor]
    last_state: dict[str, torch.Tensor]
    train_seconds: float  # the whole fit: feature cache, epochs, validation
    train_step_seconds: float  # training steps only: what throughput is measured on
    images_seen: int
    used_feature_cache: bool
    head_dropout: float  # the rate of the Dropout on the head's input in training (0: none)
    peak_rss_mb: float | None  # this process's peak resident memory at the end of the fit


@dataclass
class Outcome:
    metrics: RunMetrics
    ckpt: Checkpoint  # the best epoch, calibrated with --calibrate, with its threshold
    split: str  # the held-out split's key in ``prepared.splits``: "test" or "val"
    held: LoadedSplit
    proba: np.ndarray  # on ``held``, as the checkpoint predicts them
    proba_uncalibrated: np.ndarray | None  # on ``held`` before a temperature was applied
    # on the validation split, as the checkpoint predicts them: what the threshold was chosen
    # on, saved as predictions_val.csv so `transfer evaluate --threshold-policy` can re-choose
    val_proba: np.ndarray | None = None
