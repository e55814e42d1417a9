"""The Fashion-MNIST training config: one frozen dataclass, presets are named instances.

The config is the contract between the CLI, the study engine and the trainer: everything that
changes a trained model is a field here, and ``config.json`` in each run is ``to_dict()``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

from cnnlab.configs import FrozenConfig
from cnnlab.errors import CnnlabError

OPTIMIZERS = (
    "sgd", "momentum", "nesterov", "rmsprop", "adagrad", "adadelta", "adam", "adamw", "nadam",
)  # fmt: skip
SCHEDULES = ("constant", "cosine", "onecycle")
ACTIVATIONS = ("relu", "gelu", "silu", "swish", "elu", "selu", "leaky_relu", "mish", "tanh")

# Learning rates at which each optimizer is known to train small CNNs well; a study still
# sweeps around them, because one shared learning rate is not a fair optimizer comparison.
DEFAULT_LR = {
    "sgd": 0.05,
    "momentum": 0.02,
    "nesterov": 0.02,
    "rmsprop": 1e-3,
    "adagrad": 0.02,
    "adadelta": 1.0,
    "adam": 1e-3,
    "adamw": 1e-3,
    "nadam": 1e-3,
}


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    # architecture
    filters: tuple[int, ...] = (32, 64)  # one conv block per entry, each followed by pooling
    convs_per_block: int = 1
    kernel_size: int = 3  # every conv layer ...
    first_kernel_size: int | None = None  # ... except the first, when set
    activation: str = "relu"
    pooling: Literal["max", "avg"] = "max"
    padding: Literal["valid", "same"] = "valid"  # "same" keeps 28x28 until each pooling
    # pooling of an odd-sized map: "valid" drops its last row and column (7x7 -> 3x3, as
    # Keras does by default); "same" pools them too (7x7 -> 4x4)
    pool_padding: Literal["valid", "same"] = "valid"
    dense_units: int = 0  # hidden dense layer before the classifier; 0 = none
    global_pool: bool = False  # global average pooling instead of flatten
    # regularization
    l2: float = 0.0  # L2 weight decay on conv and dense kernels
    dropout: float = 0.5  # before the classifier
    batch_norm: bool = False
    # moving-average momentum of the BN statistics: Keras' 0.99 needs ~1000 steps to settle,
    # so short study budgets use 0.9
    batch_norm_momentum: float = 0.99
    augment: bool = False  # training-only augmentation, made of the three parts below
    shift: float = 0.08  # random translation, as a fraction of the side (0.08 = about 2 px)
    flip: bool = True  # random horizontal mirror image
    erasing: float = 0.5  # probability of erasing a random rectangle (0 = never)
    label_smoothing: float = 0.0
    # inference: average the class probabilities of each image and its mirror image (test-time
    # augmentation; used by the final test evaluation, `evaluate` and `predict`) ...
    tta: bool = False
    # ... and, when > 0, of both moved this many pixels up, down, left and right (10 views)
    tta_shift: int = 0
    # optimization
    optimizer: str = "adam"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    weight_decay: float = 0.0  # decoupled weight decay (adamw; ignored by the others)
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_epochs: float = 0.0
    batch_size: int = 128
    epochs: int = 15
    early_stopping: int | None = None  # patience in epochs on validation loss; None = off
    # data
    seed: int = 0
    train_limit: int | None = None  # use only N stratified training images
    val_size: int = 5000  # carved from the 60k training images, stratified and seeded

    def __post_init__(self) -> None:
        validate(self)

    @property
    def tta_options(self) -> dict:
        """The test-time augmentation keywords of ``model.predict_proba``/``tta_views``."""
        return {"tta": self.tta, "tta_shift": self.tta_shift}

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]


def validate(c: TrainConfig) -> None:
    """Reject impossible configs with one message naming the field."""

    def bad(field: str, why: str) -> None:
        raise CnnlabError(f"invalid {field}: {why}")

    def whole(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not c.filters or not all(whole(f) for f in c.filters) or any(f <= 0 for f in c.filters):
        bad("filters", f"need one or more positive whole numbers, got {c.filters}")
    if len(c.filters) > 3:
        bad("filters", "at most 3 blocks fit a 28x28 image (each block halves it)")
    for name in ("kernel_size", "first_kernel_size"):
        k = getattr(c, name)
        if k is not None and not (1 <= k <= 11):
            bad(name.replace("_", "-"), f"must be between 1 and 11, got {k}")
    if c.convs_per_block < 1:
        bad("convs-per-block", "must be at least 1")
    if c.pooling not in ("max", "avg"):
        bad("pooling", f"must be max or avg, got {c.pooling!r}")
    for name in ("padding", "pool_padding"):
        if getattr(c, name) not in ("valid", "same"):
            bad(name.replace("_", "-"), f"must be valid or same, got {getattr(c, name)!r}")
    if c.activation not in ACTIVATIONS:
        bad("activation", f"{c.activation!r} is not one of {', '.join(ACTIVATIONS)}")
    if c.dense_units < 0:
        bad("dense-units", f"must be >= 0, got {c.dense_units}")
    if not 0 <= c.warmup_epochs < c.epochs:
        bad("warmup-epochs", f"must be in [0, epochs), got {c.warmup_epochs}")
    if c.weight_decay < 0:
        bad("weight-decay", f"must be >= 0, got {c.weight_decay}")
    if c.early_stopping is not None and c.early_stopping < 1:
        bad("early-stopping", f"patience must be >= 1 epoch, got {c.early_stopping}")
    size = feature_map_size(c)
    if size < 1:
        bad(
            "kernel-size",
            f"with padding={c.padding!r} the feature map shrinks to nothing before the last "
            "block; use padding 'same', smaller kernels or fewer blocks",
        )
    if c.l2 < 0:
        bad("l2", f"must be >= 0, got {c.l2}")
    if not 0 <= c.dropout < 1:
        bad("dropout", f"must be in [0, 1), got {c.dropout}")
    if not 0 < c.batch_norm_momentum < 1:
        bad("batch-norm-momentum", f"must be in (0, 1), got {c.batch_norm_momentum}")
    if not 0 <= c.shift <= 0.5:
        bad("shift", f"must be between 0 and 0.5 of the image side, got {c.shift}")
    if not 0 <= c.erasing <= 1:
        bad("erasing", f"is a probability between 0 and 1, got {c.erasing}")
    if c.augment and not (c.shift > 0 or c.flip or c.erasing > 0):
        bad("augment", "is on, but shift, flip and erasing are all off")
    if not whole(c.tta_shift) or not 0 <= c.tta_shift <= 4:
        bad("tta-shift", f"must be a whole number of pixels from 0 to 4, got {c.tta_shift!r}")
    if c.tta_shift and not c.tta:
        bad("tta-shift", "shifts views at test time, so it needs tta on")
    if not 0 <= c.label_smoothing < 1:
        bad("label-smoothing", f"must be in [0, 1), got {c.label_smoothing}")
    if c.optimizer not in OPTIMIZERS:
        bad("optimizer", f"{c.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    if c.lr is not None and not c.lr > 0:
        bad("lr", f"must be > 0, got {c.lr}")
    if c.schedule not in SCHEDULES:
        bad("schedule", f"{c.schedule!r} is not one of {', '.join(SCHEDULES)}")
    if c.batch_size < 1:
        bad("batch-size", f"must be >= 1, got {c.batch_size}")
    if c.epochs < 1:
        bad("epochs", f"must be >= 1, got {c.epochs}")
    if c.train_limit is not None and c.train_limit < 100:
        bad("train-limit", f"must be >= 100 images, got {c.train_limit}")
    if not 100 <= c.val_size <= 20000:
        bad("val-size", f"must be between 100 and 20000, got {c.val_size}")


def feature_map_size(c: TrainConfig) -> int:
    """Side length of the last block's output (28x28 input; each block ends in 2x2 pooling)."""
    size = 28
    for block in range(len(c.filters)):
        for i in range(c.convs_per_block):
            k = c.first_kernel_size if block == 0 and i == 0 and c.first_kernel_size else None
            if c.padding == "valid":
                size -= (k or c.kernel_size) - 1
        if size < 2:
            return 0
        size = (size + 1) // 2 if c.pool_padding == "same" else size // 2
    return size


# Presets are configs, not code. `tutorial` is the Keras `mnist_convnet` example exactly.
PRESETS: dict[str, TrainConfig] = {
    "tutorial": TrainConfig(
        filters=(32, 64),
        kernel_size=3,
        dropout=0.5,
        optimizer="adam",
        lr=1e-3,
        batch_size=128,
        epochs=15,
    ),  # fmt: skip
    # Best validation accuracy within 300 s of training among the probes in docs/presets.md
    # (round 2): the tutorial layout with `same` padding (28 -> 14 -> 7, so the border pixels
    # count), batch norm after pooling (a quarter of the cost) for fast, stable steps at a high
    # learning rate, a 128-unit dense layer, label smoothing against over-confidence, and a
    # one-cycle schedule that ends on small steps within 9 epochs.
    "fast": TrainConfig(
        filters=(32, 64),
        padding="same",
        batch_norm=True,
        dense_units=128,
        dropout=0.3,
        label_smoothing=0.1,
        optimizer="adam",
        lr=3e-3,
        schedule="onecycle",
        batch_size=256,  # fewer, larger steps: better CPU throughput, same accuracy here
        epochs=9,
    ),
    # Best validation accuracy within 30 minutes of training among the probes in docs/presets.md
    # (round 3): a third block (28 -> 14 -> 7 -> 3) and 1.5x the widths of `fast`, light
    # augmentation (shifts and mirror images, no erasing: heavier augmentation slowed learning
    # more than it helped within the budget), 18 epochs (about 90 s each here), and test-time
    # augmentation over 10 views: the image and its mirror image, each also moved 1 px up, down,
    # left and right (+0.26 points over mirror-only TTA on validation; docs/presets.md, round 4).
    "strong": TrainConfig(
        filters=(48, 96, 192),
        padding="same",
        batch_norm=True,
        dense_units=256,
        dropout=0.2,
        augment=True,
        shift=0.08,
        flip=True,
        erasing=0.0,
        tta=True,
        tta_shift=1,
        label_smoothing=0.1,
        optimizer="adam",
        lr=3e-3,
        schedule="onecycle",
        batch_size=256,
        epochs=18,
    ),
}


def preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise CnnlabError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
