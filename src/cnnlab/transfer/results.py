"""What the transfer pipeline hands back: typed records of ``metrics.json`` and ``fit``.

TypedDicts, not classes, for everything saved as JSON: they are plain dicts at run time, so
``metrics.json`` keeps its keys and order, while readers and type checkers see every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

if TYPE_CHECKING:
    import torch
    from torch import nn


# one row of ``per_class``; the functional form because ``class`` is a Python keyword
ClassMetrics = TypedDict(
    "ClassMetrics",
    {"class": str, "precision": float, "recall": float, "f1": float, "support": int},
)


class BinaryMetrics(TypedDict):
    """``metrics.binary_metrics``: the decision ``probability of class 1 >= threshold``."""

    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    balanced_accuracy: float


class HeldOutMetrics(TypedDict):
    """``metrics.metrics_contract`` of one split, and for two classes the operating points."""

    test_accuracy: float
    test_loss: float
    balanced_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    roc_auc: float | None  # None when a class is absent from the split
    ece: float
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]
    positive_class: NotRequired[str]
    at_argmax: NotRequired[BinaryMetrics]
    operating_point: NotRequired[BinaryMetrics]  # at the threshold chosen on validation


class ValSummary(TypedDict):
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    roc_auc: float | None
    ece: float


class RunMetrics(HeldOutMetrics):
    """``metrics.json`` of ``transfer train``: the held-out split's metrics and the run."""

    evaluated_on: str  # "test", or "val" when there is no test split
    class_names: list[str]
    threshold: float | None
    best_epoch: int
    monitor: str
    epochs_run: int
    train_seconds: float
    images_per_second: float
    feature_cache: bool
    device: str
    n_train: int
    n_val: int
    n_test: int
    val: ValSummary  # the best checkpoint on the validation split


class SkippedImage(TypedDict):
    path: str
    reason: str


class EvaluationMetrics(HeldOutMetrics):
    """``metrics.json`` of ``transfer evaluate`` on a held-out folder."""

    data_dir: str
    n_images: int
    skipped: list[SkippedImage]


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
