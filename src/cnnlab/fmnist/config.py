"""The Fashion-MNIST training config: one frozen dataclass, presets are named instances.

The config is the contract between the CLI, the study engine and the trainer: everything that
changes a trained model is a field here, and ``config.json`` in each run is ``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cnnlab.configs import FrozenConfig, check_fields, invalid, option
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

# AdamW is Adam plus decoupled weight decay: at a decay of 0 the two train the same network,
# step for step. Its default is Keras' own (keras.optimizers.AdamW, 0.004, scaled by the
# learning rate at each step); the other optimizers take no decoupled decay.
DEFAULT_WEIGHT_DECAY = {"adamw": 0.004}


def applied_weight_decay(optimizer: str, weight_decay: float | None) -> float | None:
    """The decoupled weight decay ``optimizer`` applies: the given one or its default; None
    for an optimizer that takes none (whatever was given)."""
    if optimizer not in DEFAULT_WEIGHT_DECAY:
        return None
    return DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay


@dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    # architecture
    filters: tuple[int, ...] = option(
        (32, 64), "Filters per conv block, e.g. 32,64; each block ends in pooling.", ge=1, le=1024
    )
    convs_per_block: int = option(1, "Conv layers per block.", ge=1, le=8)
    kernel_size: int = option(3, "Kernel size of the conv layers.", ge=1, le=11)
    first_kernel_size: int | None = option(
        None, "Kernel size of the first conv layer (default: --kernel-size).", ge=1, le=11
    )
    activation: str = option("relu", "Activation of every hidden layer.", choices=ACTIVATIONS)
    pooling: Literal["max", "avg"] = option("max", "Pooling at the end of each block.")
    padding: Literal["valid", "same"] = option(
        "valid", "Conv padding: same keeps 28x28 until each pooling."
    )
    # pooling of an odd-sized map: "valid" drops its last row and column (7x7 -> 3x3, as
    # Keras does by default); "same" pools them too (7x7 -> 4x4)
    pool_padding: Literal["valid", "same"] = option(
        "valid", "Pooling of odd-sized maps: valid (7 -> 3, drops the last row) or same (7 -> 4)."
    )
    dense_units: int = option(
        0, "Hidden dense units before the classifier (0 = none).", ge=0, le=16384
    )
    global_pool: bool = option(
        False,
        "Global average pooling or flatten before the classifier.",
        flag="--global-pool/--flatten",
    )
    # regularization
    l2: float = option(0.0, "L2 weight decay on conv and dense kernels.", ge=0, le=1)
    dropout: float = option(0.5, "Dropout rate before the classifier.", ge=0, lt=1)
    batch_norm: bool = option(False, "Batch normalisation in every block.")
    # Keras' 0.99 needs ~1000 steps to settle, so short study budgets use 0.9
    batch_norm_momentum: float = option(
        0.99, "Moving-average momentum of the batch-norm statistics.", gt=0, lt=1
    )
    augment: bool = option(False, "Training-only augmentation: shift, flip and erasing below.")
    shift: float = option(
        0.08,
        "Augmentation: largest random shift, as a fraction of the side (0.08 = 2 px).",
        ge=0,
        le=0.5,
    )
    flip: bool = option(True, "Augmentation: random horizontal mirror image.")
    erasing: float = option(
        0.5, "Augmentation: probability of erasing a random rectangle.", ge=0, le=1
    )
    label_smoothing: float = option(0.0, "Label smoothing (0 = off).", ge=0, lt=1)
    # inference (the final test evaluation, `evaluate` and `predict`)
    tta: bool = option(False, "Average the predictions of each image and its mirror image.")
    tta_shift: int = option(
        0, "With --tta, also average both moved N pixels up, down, left, right.", ge=0, le=4
    )
    # optimization
    optimizer: str = option("adam", "Optimizer.", choices=OPTIMIZERS)
    # no upper bound: a diverging lr is worth seeing (training stops at the epoch whose loss
    # became NaN, with one line naming it)
    lr: float | None = option(None, "Peak learning rate (default: per optimizer).", gt=0)
    weight_decay: float | None = option(
        None,
        "Decoupled weight decay of adamw (default: 0.004, Keras' own; ignored by the others).",
        ge=0,
        le=1,
    )
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "constant", "Learning-rate schedule."
    )
    warmup_epochs: float = option(0.0, "Warm-up epochs (cosine, onecycle).", ge=0)
    batch_size: int = option(128, "Images per step.", ge=1, le=65536)
    # upper bounds on counts: a value that would train for weeks is a typo, not a plan
    epochs: int = option(15, "Epochs.", ge=1, le=1000)
    early_stopping: int | None = option(
        None, "Stop after this many epochs without a lower validation loss.", ge=1, le=1000
    )
    # data
    seed: int = option(0, "Seed of initialisation, shuffling and splits.", ge=0, le=2**32 - 1)
    train_limit: int | None = option(None, "Train on N stratified images only.", ge=100, le=60000)
    val_size: int = option(
        5000, "Validation images carved from the 60k training images.", ge=100, le=20000
    )

    def __post_init__(self) -> None:
        check_fields(self)
        validate(self)

    @property
    def tta_options(self) -> dict:
        """The test-time augmentation keywords of ``model.predict_proba``/``tta_views``."""
        return {"tta": self.tta, "tta_shift": self.tta_shift}

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def decoupled_weight_decay(self) -> float | None:
        """The weight decay the optimizer applies; None for an optimizer that takes none."""
        return applied_weight_decay(self.optimizer, self.weight_decay)


def validate(c: TrainConfig) -> None:
    """The rules that relate fields; ``check_fields`` has checked each field on its own."""
    if len(c.filters) > 3:
        invalid("filters", "at most 3 blocks fit a 28x28 image (each block halves it)")
    if c.warmup_epochs >= c.epochs:
        invalid("warmup_epochs", f"must be less than --epochs ({c.epochs}), got {c.warmup_epochs}")
    if feature_map_size(c) < 1:
        invalid(
            "kernel_size",
            f"with padding={c.padding!r} the feature map shrinks to nothing before the last "
            "block; use padding 'same', smaller kernels or fewer blocks",
        )
    if c.augment and not (c.shift > 0 or c.flip or c.erasing > 0):
        invalid("augment", "is on, but shift, flip and erasing are all off")
    if c.tta_shift and not c.tta:
        invalid("tta_shift", "shifts views at test time, so it needs --tta")


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


def resolve_config(config: TrainConfig | str, **fields: Any) -> TrainConfig:
    """A preset (by name) or config with every field that was given (not None) changed; what
    ``fmnist.train`` and so ``cnnlab train`` train."""
    base = preset(config) if isinstance(config, str) else config
    changes = {k: v for k, v in fields.items() if v is not None}
    return TrainConfig.from_dict({**base.to_dict(), **changes})  # names an unknown field
