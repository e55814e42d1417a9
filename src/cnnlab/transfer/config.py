"""The transfer-learning config: one frozen dataclass, saved as ``config.json`` with each run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cnnlab.configs import FrozenConfig, check_fields, invalid, option
from cnnlab.transfer.data.contrast import CONTRASTS
from cnnlab.transfer.thresholds import POLICY_HELP, parse_policy
from cnnlab.transfer.training.transforms import AUGMENTS

STRATEGIES = ("head", "partial", "full", "gradual", "lp-ft")
BALANCES = ("none", "weights", "sampler")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle")
MONITORS = ("balanced_accuracy", "accuracy", "macro_f1", "roc_auc", "loss")
DEVICES = ("auto", "cpu", "cuda", "mps")
ENGINES = ("auto", "torch", "onnxruntime")  # inference of the frozen backbone (engine.py)
# the number itself lives in transfer/data/images.py (MAX_PIXELS), which the CLI must not import
MAX_PIXELS_HELP = (
    "Refuse images whose header claims more pixels, before decoding "
    "(default and maximum: Pillow's own limit, about 89 million)."
)


@dataclass(frozen=True)
class TransferConfig(FrozenConfig):
    # model
    arch: str = option(
        "resnet18", "torchvision model name, or efficientnet_lite0, _lite1 or _lite2."
    )
    weights: str = option("imagenet", "imagenet | none | PATH of a state-dict file.")
    image_size: int = option(224, "Images are resized to this square size (px).", ge=16, le=1024)
    strategy: str = option(
        "head",
        "Which layers train (gradual: one more stage at a time; lp-ft: the head alone for "
        "--probe-epochs, then every layer, the backbone at --backbone-lr-factor x --lr).",
        choices=STRATEGIES,
    )
    # augmentation
    augment: str = option(
        "basic",
        "basic: random flips; strong: also crops, rotation, colour and erasing; radiograph: "
        "crops, small affine, brightness/contrast/gamma, blur, noise, flips.",
        choices=AUGMENTS,
    )
    contrast: str = option(
        "none",
        "Contrast normalisation of every image, in training and wherever the model is used "
        "(stored in the checkpoint): clahe (8x8 tiles, clip 2) or equalize (global).",
        choices=CONTRASTS,
    )
    mixup: float = option(0.0, "MixUp alpha (0 = off).", ge=0, le=100)
    cutmix: float = option(0.0, "CutMix alpha (0 = off).", ge=0, le=100)
    feature_views: int = option(
        4, "head with strong or radiograph: augmented views cached per image.", ge=1, le=100
    )
    cache_features: bool = option(True, "head: compute backbone features once, not every epoch.")
    # imbalance
    balance: str = option(
        "none",
        "weights: class-weighted loss; sampler: class-balanced sampling.",
        choices=BALANCES,
    )
    # optimisation
    optimizer: str = option("adam", "Optimizer.", choices=OPTIMIZERS)
    # no upper bound: a diverging lr stops training at the epoch whose loss became NaN
    lr: float = option(1e-3, "Learning rate (of the head; see --lr-decay).", gt=0)
    weight_decay: float = option(0.0, "Weight decay.", ge=0, le=1)
    schedule: str = option("constant", "Learning-rate schedule.", choices=SCHEDULES)
    warmup: float = option(
        0.0,
        "Fraction of the steps (lp-ft: of each phase's) over which the learning rate rises "
        "linearly from 0.",
        ge=0,
        lt=1,
    )
    label_smoothing: float = option(0.0, "Label smoothing (0 = off).", ge=0, lt=1)
    batch_size: int = option(32, "Images per step.", ge=1, le=65536)
    # upper bounds on counts: a value that would train for weeks is a typo, not a plan
    epochs: int = option(5, "Epochs.", ge=1, le=1000)
    early_stopping: int | None = option(
        None, "Patience in epochs on --monitor (default: off).", ge=1, le=1000
    )
    # loss, not balanced accuracy: accuracy saturates on validation (0.98-0.99 on the chest
    # X-rays) and then ties or moves by one image, while the loss still measures confidence
    monitor: str = option(
        "loss", "Picks the best checkpoint (and early stopping).", choices=MONITORS
    )
    unfreeze_every: int = option(1, "gradual: epochs per newly unfrozen stage.", ge=1, le=1000)
    lr_decay: float = option(
        0.5, "gradual: each deeper stage learns at lr * lr_decay**depth.", gt=0, le=1
    )
    probe_epochs: int = option(
        1, "lp-ft: the first N of --epochs train the head alone (the linear probe).", ge=1, le=1000
    )
    backbone_lr_factor: float = option(
        0.1, "lp-ft: after the probe, the backbone learns at lr * this factor.", gt=0, le=1
    )
    freeze_bn: bool = option(
        False,
        "BatchNorm layers keep their pretrained statistics and weights (eval mode, no "
        "gradient) while the layers around them train.",
    )
    ema: float | None = option(
        None,
        "Average the weights (exponential moving average with this decay, e.g. 0.999); "
        "validation, the best epoch and the checkpoints use the average.",
        gt=0,
        lt=1,
    )
    # data
    val_size: float = option(
        0.15, "Fraction carved (stratified) for validation if there is no val/.", gt=0, lt=0.9
    )
    # default 0.15, not 0: without a test split, final metrics would come from the split that
    # chose the epoch and the threshold (0.942 on val vs 0.873 on test, issue 14)
    test_size: float = option(
        0.15,
        "Fraction carved (stratified) for test if there is no test/; 0 = report on validation "
        "(optimistic).",
        ge=0,
        lt=0.9,
    )
    limit: int | None = option(
        None, "At most N images of each split folder (stratified).", ge=4, le=10**9
    )
    dedupe: bool = option(False, "Remove images duplicated across splits before training.")
    max_pixels: int | None = option(
        None, MAX_PIXELS_HELP + " Larger files in the folders are listed and skipped.", ge=64
    )
    near_threshold: int = option(
        10, "dHash bits (of 256) within which two images are the same; -1 = off.", ge=-1, le=256
    )
    seed: int = option(0, "Seed of initialisation, shuffling and splits.", ge=0, le=2**32 - 1)
    split_seed: int | None = option(
        None,
        "Seed of the carved splits, --limit and --folds only (default: --seed): runs that "
        "differ in --seed but share it validate and test on the same images, so their "
        "ensemble chooses its threshold on that validation split.",
        ge=0,
        le=2**32 - 1,
    )
    # evaluation
    positive: str | None = option(
        None, "Two classes: the positive class (default: the second alphabetically)."
    )
    group_regex: str | None = option(
        None,
        "Images whose file names share the regex's first group (or whole match), e.g. "
        "'person(\\d+)_', stay in one split: no patient in two splits.",
    )
    folds: int | None = option(
        None, "K-fold cross-validation: K trainings, each image tested once.", ge=2, le=20
    )
    threshold_policy: str = option("youden", POLICY_HELP)
    calibrate: bool = option(
        False, "Fit temperature scaling on validation; the checkpoint applies it."
    )
    # machine
    device: str = option("auto", "auto = cuda, then mps, then cpu.", choices=DEVICES)
    workers: int = option(0, "DataLoader worker processes.", ge=0, le=256)
    threads: int | None = option(None, "torch CPU threads (default: torch's).", ge=1, le=1024)
    channels_last: bool = option(True, "channels_last memory format.")
    cache_dir: str | None = option(
        None,
        "Folder of the decoded-image cache, reused by later runs "
        "(default: $CNNLAB_CACHE_DIR, else ~/.cache/cnnlab).",
    )
    engine: str = option(
        "auto",
        "head: backbone features by torch or ONNX Runtime (auto: ONNX Runtime on a CPU for "
        "256+ images or an already exported backbone).",
        choices=ENGINES,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        validate(self)

    @property
    def splits_seed(self) -> int:
        """The seed the carved splits, --limit and --folds are drawn with."""
        return self.seed if self.split_seed is None else self.split_seed


def validate(c: TransferConfig) -> None:
    """The rules that relate fields; ``check_fields`` has checked each field on its own."""
    if c.weights not in ("imagenet", "none") and not _is_file(c.weights):
        invalid("weights", f"{c.weights!r} is neither imagenet, none nor an existing file")
    if c.strategy == "lp-ft" and c.probe_epochs >= c.epochs:
        invalid(
            "probe_epochs",
            f"lp-ft needs epochs left to fine-tune: {c.probe_epochs} >= --epochs {c.epochs}",
        )
    if c.warmup > 0 and c.schedule == "onecycle":
        invalid("warmup", "onecycle warms up by itself; use --schedule cosine or constant")
    parse_policy(c.threshold_policy)  # one line naming --threshold-policy
    if c.val_size + c.test_size >= 0.9:
        invalid("test_size", f"val + test must be < 0.9, got {c.val_size} + {c.test_size}")
    if c.group_regex is not None:
        try:
            re.compile(c.group_regex)
        except re.error as e:
            invalid("group_regex", f"{c.group_regex!r} is not a regular expression ({e})")


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL, is no file either
        return False
