"""Each factor kind's level syntax -> the TrainConfig fields a level changes.

``3``, ``5x5 same``, ``first7x7`` (kernel size); ``l2``, ``dropout=0.3``, ``augment``
(regularization); batch sizes with an LR scaling rule or equal steps; optimizer names; any
other TrainConfig field's values. ``factors.py`` reads a factor's other options around these.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnlab.fmnist.config import DEFAULT_LR, OPTIMIZERS, TrainConfig
from cnnlab.study.spec.checks import MAX_EPOCHS, bad, check_values, is_number, is_whole
from cnnlab.study.spec.names import show

REGULARIZATION_LEVELS = (
    "none", "l2", "dropout", "batch_norm", "augment", "augment_no_erasing", "all",
)  # fmt: skip
STRENGTH_LEVELS = ("l2", "dropout")  # `l2=1e-4`, `dropout=0.3`: a strength grid
MAX_BATCH_SIZE = 60_000  # the whole training set
LR_SCALINGS = ("none", "linear", "sqrt")


@dataclass(frozen=True)
class Level:
    label: str
    overrides: dict[str, Any]  # TrainConfig fields changed from the baseline
    tune_lr: bool = False  # learning rate chosen by the factor's sweep, not fixed
    sweep_center: float | None = None  # tuned: the rate the sweep's multipliers multiply


_KERNEL = re.compile(
    r"(first[:_-]?)?([0-9]{1,3})(?:x([0-9]{1,3}))?(?:[:_-]?(same|valid))?", re.ASCII
)


def kernel_levels(kind, raw_levels, opts, baseline, where):
    """``5`` or ``5x5`` (the baseline's padding), ``5x5 same`` or ``5x5 valid`` (that padding:
    with ``same`` every kernel size keeps the feature maps' size, so a comparison of kernel
    sizes is not also one of map sizes), ``first7x7`` (the first layer only)."""
    levels = []
    for i, raw in enumerate(raw_levels):
        text = raw.strip().lower().replace(" ", "") if isinstance(raw, str) else None
        if is_whole(raw) and 0 < raw < 1000:
            text = str(raw)
        m = _KERNEL.fullmatch(text) if text is not None else None
        if m is None or (m[3] is not None and m[3] != m[2]):
            bad(
                f"{where}.levels[{i}]",
                f"{show(raw)} is not a kernel size (use e.g. 3, '5x5', '5x5 same' or 'first7x7' "
                "for a large first layer only)",
            )
        k = int(m[2])
        padding = {"padding": m[4]} if m[4] else {}
        suffix = f" {m[4]}" if m[4] else ""
        if m[1]:
            levels.append(Level(f"first {k}x{k}{suffix}", {"first_kernel_size": k} | padding))
        else:
            over = {"kernel_size": k, "first_kernel_size": None} | padding
            levels.append(Level(f"{k}x{k}{suffix}", over))
    return levels, None


def regularization_levels(kind, raw_levels, opts, baseline, where):
    """One technique against none: ``l2``, ``dropout``, ``batch_norm``, ``augment`` (shifts,
    mirror images and random erasing), ``augment_no_erasing``, ``all``; ``l2=1e-4`` and
    ``dropout=0.3`` set a strength of their own (a grid), else the factor's ``l2``/``dropout``."""
    l2 = opts.pop("l2", 5e-4)
    dropout = opts.pop("dropout", 0.5)
    _strength("l2", l2, f"{where}.l2")
    _strength("dropout", dropout, f"{where}.dropout")
    off = {"l2": 0.0, "dropout": 0.0, "batch_norm": False, "augment": False}
    on = {"l2": float(l2), "dropout": float(dropout), "batch_norm": True, "augment": True}
    levels = []
    for i, raw in enumerate(raw_levels):
        name = raw.strip().lower().replace(" ", "") if isinstance(raw, str) else None
        here = f"{where}.levels[{i}]"
        technique, _, value = (name or "").partition("=")
        if value and technique in STRENGTH_LEVELS:
            try:
                strength = float(value)
            except ValueError:
                strength = value
            _strength(technique, strength, here)
            levels.append(Level(f"{technique}={strength:g}", off | {technique: strength}))
        elif name not in REGULARIZATION_LEVELS:
            bad(here, f"{show(raw)} is not one of {', '.join(REGULARIZATION_LEVELS)} (or "
                "l2=VALUE, dropout=VALUE)")  # fmt: skip
        elif name == "none":
            levels.append(Level("none", dict(off)))
        elif name == "all":
            levels.append(Level("all", dict(on)))
        elif name == "augment_no_erasing":
            levels.append(Level(name, off | {"augment": True, "erasing": 0.0}))
        else:
            levels.append(Level(name, off | {name: on[name]}))
    return levels, None


def _strength(technique: str, value: Any, where: str) -> None:
    if technique == "l2" and (not is_number(value) or not 0 < value <= 1):
        bad(where, f"an l2 strength must be a number in (0, 1], got {show(value)}")
    if technique == "dropout" and (not is_number(value) or not 0 < value < 1):
        bad(where, f"a dropout rate must be in (0, 1), got {show(value)}")


def batch_levels(kind, raw_levels, opts, baseline, where):
    scaling = opts.pop("lr_scaling", "none")
    if scaling not in LR_SCALINGS:
        bad(f"{where}.lr_scaling", f"must be one of {', '.join(LR_SCALINGS)}, got {show(scaling)}")
    warmup = opts.pop("warmup_epochs", 1.0 if scaling != "none" else 0.0)
    if not is_number(warmup) or warmup < 0:
        bad(f"{where}.warmup_epochs", f"must be a finite number >= 0, got {show(warmup)}")
    equal_steps = opts.pop("equal_steps", False)
    if not isinstance(equal_steps, bool):
        bad(f"{where}.equal_steps", f"must be true or false, got {show(equal_steps)}")
    if scaling != "none" and warmup > 0 and baseline.schedule == "constant":
        bad(
            f"{where}.warmup_epochs",
            "the constant schedule has no warm-up; set baseline.schedule to cosine or "
            "onecycle, or warmup_epochs to 0",
        )
    levels = []
    for i, raw in enumerate(raw_levels):
        if not is_whole(raw) or not 1 <= raw <= MAX_BATCH_SIZE:
            bad(
                f"{where}.levels[{i}]",
                f"a batch size must be a whole number from 1 to {MAX_BATCH_SIZE}, got {show(raw)}",
            )
        over: dict[str, Any] = {"batch_size": raw}
        ratio = raw / baseline.batch_size
        warm = float(warmup) if scaling != "none" else baseline.warmup_epochs
        if scaling == "linear":
            # linear scaling rule (Goyal et al. 2017): LR proportional to batch size, with warmup
            over["lr"] = baseline.learning_rate * ratio
        elif scaling == "sqrt":
            # square-root rule, the one derived for Adam (Malladi et al. 2022)
            over["lr"] = baseline.learning_rate * math.sqrt(ratio)
        if equal_steps:
            # as many optimizer steps as the baseline: epochs (and warm-up) scale with the batch
            over["epochs"] = _equal_step_epochs(baseline, raw, f"{where}.levels[{i}]")
            warm *= over["epochs"] / baseline.epochs
        if scaling != "none" or warm != baseline.warmup_epochs:
            over["warmup_epochs"] = warm
        levels.append(Level(str(raw), over))
    return levels, None


def _equal_step_epochs(baseline: TrainConfig, batch: int, where: str) -> int:
    epochs = baseline.epochs * batch / baseline.batch_size
    if not float(epochs).is_integer() or not 1 <= epochs <= MAX_EPOCHS:
        bad(
            where,
            f"equal steps need a whole number of epochs from 1 to {MAX_EPOCHS}: "
            f"{baseline.epochs} epochs x {batch} / {baseline.batch_size} = {epochs:g}; choose "
            "batch sizes (or the factor's epochs) that make it whole",
        )
    return int(epochs)


def optimizer_levels(kind, raw_levels, opts, baseline, where, *, tune):
    levels = []
    for i, raw in enumerate(raw_levels):
        name = raw.strip().lower() if isinstance(raw, str) else None
        if name not in OPTIMIZERS:
            bad(f"{where}.levels[{i}]", f"{show(raw)} is not one of {', '.join(OPTIMIZERS)}")
        # untuned, each optimizer trains at its own default rate, not the baseline's
        levels.append(Level(name, {"optimizer": name, "lr": None if tune else DEFAULT_LR[name]}))
    return levels, None


def field_levels(kind, raw_levels, opts, baseline, where):
    """Any TrainConfig field as a factor, e.g. ``lr: [0.0003, 0.001, 0.003]``."""
    levels = []
    for i, raw in enumerate(raw_levels):
        check_values({kind: raw}, f"{where}.levels[{i}]")
        value = list(raw) if isinstance(raw, list | tuple) else raw
        label = ",".join(map(str, raw)) if isinstance(raw, list | tuple) else str(raw)
        levels.append(Level(label, {kind: value}))
    return levels, None
