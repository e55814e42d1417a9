"""The transfer-learning config: one frozen dataclass, saved as ``config.json`` with each run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.configs import FrozenConfig
from cnnlab.errors import CnnlabError
from cnnlab.transfer.presets import AUGMENTS

STRATEGIES = ("head", "partial", "full", "gradual")
BALANCES = ("none", "weights", "sampler")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
MONITORS = ("balanced_accuracy", "accuracy", "macro_f1", "roc_auc", "loss")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TransferConfig(FrozenConfig):
    # model
    arch: str = "resnet18"
    weights: str = "imagenet"  # imagenet | none | path of a state-dict file
    image_size: int = 224
    strategy: str = "head"  # head | partial | full | gradual (which layers train)
    # augmentation
    augment: str = "basic"  # none | basic (flip) | strong
    mixup: float = 0.0  # Beta(alpha, alpha) of MixUp; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off
    feature_views: int = 4  # augmented views per image cached for `head` with `strong`
    cache_features: bool = True  # `head`: run the frozen backbone once, not every epoch
    # imbalance
    balance: str = "none"  # none | weights (class-weighted loss) | sampler (weighted sampler)
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    label_smoothing: float = 0.0
    batch_size: int = 32
    epochs: int = 5
    early_stopping: int | None = None  # patience in epochs on --monitor; None = off
    monitor: str = "balanced_accuracy"  # picks the best checkpoint (and early stopping)
    unfreeze_every: int = 1  # `gradual`: epochs between unfreezing one more stage
    lr_decay: float = 0.5  # `gradual`: each deeper stage learns at lr * lr_decay**depth
    # data
    val_size: float = 0.15  # carved from train (stratified) when there is no val/ folder
    test_size: float = 0.0  # carved too when > 0 and there is no test/ folder
    limit: int | None = None  # use at most N images of each split folder (stratified)
    dedupe: bool = False  # remove images duplicated across splits before training
    near_threshold: int = 10  # dHash bits (of 256) within which two images are "the same"
    seed: int = 0
    # machine
    device: str = "auto"  # auto = cuda, then mps, then cpu
    workers: int = 0  # DataLoader worker processes
    threads: int | None = None  # torch intra-op threads; None = torch's default
    channels_last: bool = True

    def __post_init__(self) -> None:
        validate(self)


def validate(c: TransferConfig) -> None:
    def bad(name: str, why: str) -> None:
        raise CnnlabError(f"invalid --{name.replace('_', '-')}: {why}")

    def one_of(name: str, choices: tuple[str, ...]) -> None:
        if getattr(c, name) not in choices:
            bad(name, f"{getattr(c, name)!r} is not one of {', '.join(choices)}")

    one_of("strategy", STRATEGIES)
    one_of("augment", AUGMENTS)
    one_of("balance", BALANCES)
    one_of("optimizer", OPTIMIZERS)
    one_of("schedule", SCHEDULES)
    one_of("monitor", MONITORS)
    one_of("device", DEVICES)
    if c.weights not in ("imagenet", "none") and not Path(c.weights).is_file():
        bad("weights", f"{c.weights!r} is neither imagenet, none nor an existing file")
    if not 16 <= c.image_size <= 1024:
        bad("image_size", f"must be between 16 and 1024 px, got {c.image_size}")
    for name in ("mixup", "cutmix", "weight_decay", "label_smoothing"):
        if getattr(c, name) < 0:
            bad(name, f"must be >= 0, got {getattr(c, name)}")
    if c.label_smoothing >= 1:
        bad("label_smoothing", f"must be < 1, got {c.label_smoothing}")
    if not c.lr > 0:
        bad("lr", f"must be > 0, got {c.lr}")
    for name in ("batch_size", "epochs", "feature_views", "unfreeze_every"):
        if getattr(c, name) < 1:
            bad(name, f"must be >= 1, got {getattr(c, name)}")
    if c.early_stopping is not None and c.early_stopping < 1:
        bad("early_stopping", f"patience must be >= 1 epoch, got {c.early_stopping}")
    if not 0 < c.lr_decay <= 1:
        bad("lr_decay", f"must be in (0, 1], got {c.lr_decay}")
    if not 0 < c.val_size < 0.9:
        bad("val_size", f"must be a fraction in (0, 0.9), got {c.val_size}")
    if not 0 <= c.test_size < 0.9 or c.val_size + c.test_size >= 0.9:
        bad("test_size", f"must be a fraction >= 0 with val + test < 0.9, got {c.test_size}")
    if c.limit is not None and c.limit < 4:
        bad("limit", f"must be >= 4 images, got {c.limit}")
    if c.workers < 0:
        bad("workers", f"must be >= 0, got {c.workers}")
    if c.threads is not None and c.threads < 1:
        bad("threads", f"must be >= 1, got {c.threads}")
    if not -1 <= c.near_threshold <= 256:
        bad("near_threshold", f"must be between -1 (off) and 256 bits, got {c.near_threshold}")
