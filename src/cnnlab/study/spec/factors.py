"""A spec's factors: each factor's levels -> the TrainConfig fields they change.

The four factors of cnnlab's mission have their own level syntax (``first7x7``, ``l2``,
``lr_scaling: linear``, ``equal_steps``, optimizers with an LR sweep); any other TrainConfig
field is a factor whose levels are its values (``lr: [0.0003, 0.001, 0.003]``). Each factor
runs in its own regime (``regime.py``): the study's baseline unless it overrides it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import DEFAULT_LR, OPTIMIZERS, TrainConfig
from cnnlab.study.spec.checks import (
    CONFIG_FIELDS,
    MAX_EPOCHS,
    bad,
    check_values,
    config,
    is_number,
    is_whole,
    no_unknown,
    seeds,
)
from cnnlab.study.spec.names import NAME_RULE, is_safe_name, show
from cnnlab.study.spec.regime import REGIME_KEYS, Regime, parse_regime

FACTOR_KINDS = ("kernel_size", "regularization", "batch_size", "optimizer")
REGULARIZATION_LEVELS = ("none", "l2", "dropout", "batch_norm", "augment", "all")
MAX_BATCH_SIZE = 60_000  # the whole training set
LR_SCALINGS = ("none", "linear", "sqrt")


@dataclass(frozen=True)
class Level:
    label: str
    overrides: dict[str, Any]  # TrainConfig fields changed from the baseline
    tune_lr: bool = False  # learning rate chosen by the factor's sweep, not fixed


@dataclass(frozen=True)
class LrSweep:
    """A learning-rate sweep per optimizer on the validation split, bracketed: after the grid,
    ``extend`` more rounds each try one rate, beyond the edge while the best rate is at an edge
    of what was tried, else between the best rate and its better neighbour (``tuning.py``)."""

    multipliers: tuple[float, ...] = (0.3, 1.0, 3.0)  # times the optimizer's default LR
    epochs: int | None = None  # None: the factor's epochs
    seeds: tuple[int, ...] = (0,)  # never the study's seeds: test accuracy comes from others
    extend: int = 0  # rounds after the grid (the cap of the bracketing)
    train_limit: int | None = None  # with limit_set: the sweep's training images
    limit_set: bool = False  # False: the factor's training images

    def overrides(self) -> dict[str, Any]:
        """Config fields the sweep's trials change from the factor's baseline (besides the
        optimizer, its rate and the seed)."""
        out: dict[str, Any] = {}
        if self.epochs is not None:
            out["epochs"] = self.epochs
        if self.limit_set:
            out["train_limit"] = self.train_limit
        return out


@dataclass(frozen=True)
class Factor:
    name: str
    kind: str  # one of FACTOR_KINDS, or a TrainConfig field name
    levels: tuple[Level, ...]
    reference: str  # the level every other level is compared with
    lr_sweep: LrSweep | None = None
    regime: Regime | None = None  # None: the study's baseline, budget and target

    def level(self, label: str) -> Level:
        return next(lv for lv in self.levels if lv.label == label)

    def baseline(self, study: TrainConfig) -> TrainConfig:
        """The config this factor's levels change: the study's, or its regime's."""
        return study if self.regime is None else self.regime.baseline

    @property
    def has_regime(self) -> bool:
        return self.regime is not None and bool(self.regime.changes)


def parse_factor(
    name: Any,
    fdef: Any,
    study_baseline: TrainConfig,
    study_seeds: tuple[int, ...] = (0,),
) -> Factor:
    if not is_safe_name(name):  # it names the report's plot files
        bad("factors", f"factor name {show(name)}: {NAME_RULE}")
    name = str(name)
    where = f"factors.{name}"
    if isinstance(fdef, list):  # shorthand: `kernel_size: [3, 5, 7]`
        fdef = {"levels": fdef}
    if not isinstance(fdef, Mapping):
        bad(where, "must be a list of levels or a mapping with 'levels'")
    fdef = dict(fdef)
    kind = fdef.pop("kind", name)
    if not isinstance(kind, str) or (kind not in FACTOR_KINDS and kind not in CONFIG_FIELDS):
        raise CnnlabError(
            f"unknown factor {show(kind)} in {where}: use one of {', '.join(FACTOR_KINDS)} "
            f"or a config field ({', '.join(sorted(CONFIG_FIELDS - {'seed'}))})"
        )
    if name == "baseline":
        bad(where, "'baseline' is reserved for the baseline config; name the factor otherwise")
    if kind == "seed":
        bad(where, "seeds are set by the top-level 'seeds' field, not as a factor")
    raw_levels = fdef.pop("levels", None)
    if not isinstance(raw_levels, list) or not raw_levels:
        bad(f"{where}.levels", "must list at least one level")
    reference = fdef.pop("reference", None)
    regime = parse_regime(fdef, study_baseline, where) if set(fdef) & set(REGIME_KEYS) else None
    baseline = regime.baseline if regime is not None else study_baseline
    parse = {
        "kernel_size": _kernel_levels,
        "regularization": _regularization_levels,
        "batch_size": _batch_levels,
        # the sweep's seeds must differ from the study's
        "optimizer": partial(_optimizer_levels, study_seeds=study_seeds),
    }.get(kind, _field_levels)
    levels, sweep = parse(kind, raw_levels, fdef, baseline, where)
    no_unknown(fdef, set(), where)  # every option has been consumed by its parser
    _labels_unique(levels, f"{where}.levels")
    for i, lv in enumerate(levels):  # each level must be a valid config
        config(baseline.to_dict() | lv.overrides, f"{where}.levels[{i}]")
    if reference is None:
        reference = _default_reference(levels, baseline)
    # a label, or the value it was made from (`reference: 128` for the level '128')
    scalar = isinstance(reference, str | float | bool) or is_whole(reference)
    if not scalar or str(reference) not in {lv.label for lv in levels}:
        bad(f"{where}.reference", f"{show(reference)} is not one of the levels")
    return Factor(name, kind, tuple(levels), str(reference), sweep, regime)


def _labels_unique(levels: list[Level], where: str) -> None:
    seen = set()
    for lv in levels:
        if lv.label in seen:
            bad(where, f"level {lv.label!r} appears twice")
        seen.add(lv.label)


def _default_reference(levels: list[Level], baseline: TrainConfig) -> str:
    """The level that trains the baseline config; else the level that keeps the baseline's
    value of the factor's main field (batch size 128 with a scaled LR, adam with a tuned LR);
    else the first level."""
    base = baseline.to_dict()
    for lv in levels:
        if all(base.get(k) == v for k, v in lv.overrides.items()):
            return lv.label
    for lv in levels:
        main = next(iter(lv.overrides), None)
        if main is not None and base.get(main) == lv.overrides[main]:
            return lv.label
    return levels[0].label


_KERNEL = re.compile(r"(first[:_-]?)?([0-9]{1,3})(?:x([0-9]{1,3}))?", re.ASCII)


def _kernel_levels(kind, raw_levels, opts, baseline, where):
    levels = []
    for i, raw in enumerate(raw_levels):
        text = raw.strip().lower().replace(" ", "") if isinstance(raw, str) else None
        if is_whole(raw) and 0 < raw < 1000:
            text = str(raw)
        m = _KERNEL.fullmatch(text) if text is not None else None
        if m is None or (m[3] is not None and m[3] != m[2]):
            bad(
                f"{where}.levels[{i}]",
                f"{show(raw)} is not a kernel size (use e.g. 3, '5x5' or 'first7x7' for a "
                "large first layer only)",
            )
        k = int(m[2])
        if m[1]:
            levels.append(Level(f"first {k}x{k}", {"first_kernel_size": k}))
        else:
            levels.append(Level(f"{k}x{k}", {"kernel_size": k, "first_kernel_size": None}))
    return levels, None


def _regularization_levels(kind, raw_levels, opts, baseline, where):
    l2 = opts.pop("l2", 5e-4)
    dropout = opts.pop("dropout", 0.5)
    if not is_number(l2) or l2 <= 0:
        bad(f"{where}.l2", f"must be a finite number > 0, got {show(l2)}")
    if not is_number(dropout) or not 0 < dropout < 1:
        bad(f"{where}.dropout", f"must be in (0, 1), got {show(dropout)}")
    off = {"l2": 0.0, "dropout": 0.0, "batch_norm": False, "augment": False}
    on = {"l2": float(l2), "dropout": float(dropout), "batch_norm": True, "augment": True}
    levels = []
    for i, raw in enumerate(raw_levels):
        name = raw.strip().lower() if isinstance(raw, str) else None
        if name not in REGULARIZATION_LEVELS:
            bad(
                f"{where}.levels[{i}]",
                f"{show(raw)} is not one of {', '.join(REGULARIZATION_LEVELS)}",
            )
        if name == "none":
            levels.append(Level("none", dict(off)))
        elif name == "all":
            levels.append(Level("all", dict(on)))
        else:
            levels.append(Level(name, off | {name: on[name]}))
    return levels, None


def _batch_levels(kind, raw_levels, opts, baseline, where):
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


MAX_EXTEND = 10  # bracketing rounds after the grid


def _optimizer_levels(kind, raw_levels, opts, baseline, where, *, study_seeds):
    tune = opts.pop("tune_lr", True)
    raw_sweep = opts.pop("lr_sweep", {})
    if not isinstance(tune, bool):
        bad(f"{where}.tune_lr", f"must be true or false, got {show(tune)}")
    if not isinstance(raw_sweep, Mapping):
        bad(f"{where}.lr_sweep", "must be a mapping (multipliers, epochs, seeds, extend)")
    raw_sweep = dict(raw_sweep)
    levels = []
    for i, raw in enumerate(raw_levels):
        name = raw.strip().lower() if isinstance(raw, str) else None
        if name not in OPTIMIZERS:
            bad(f"{where}.levels[{i}]", f"{show(raw)} is not one of {', '.join(OPTIMIZERS)}")
        over = {"optimizer": name, "lr": None if tune else DEFAULT_LR[name]}
        levels.append(Level(name, over, tune_lr=tune))
    sweep = _sweep(raw_sweep, baseline, f"{where}.lr_sweep", study_seeds, tune)
    return levels, sweep if tune else None


def _sweep(raw: dict, baseline: TrainConfig, where: str, study_seeds, tuned: bool) -> LrSweep:
    mults = raw.pop("multipliers", [0.3, 1.0, 3.0])
    # bounded so that the swept LR stays a finite float for any optimizer's default
    if not isinstance(mults, list) or not mults or not all(_multiplier(m) for m in mults):
        bad(f"{where}.multipliers", f"must be a list of numbers in (0, 1e6], got {show(mults)}")
    if len(set(mults)) != len(mults):
        bad(f"{where}.multipliers", f"must be distinct, got {show(mults)}")
    epochs = raw.pop("epochs", None)
    if epochs is not None and (not is_whole(epochs) or not 1 <= epochs <= MAX_EPOCHS):
        bad(f"{where}.epochs", f"must be a whole number from 1 to {MAX_EPOCHS}, got {show(epochs)}")
    limit_set = "train_limit" in raw
    limit = raw.pop("train_limit", None)
    if limit_set:
        config(baseline.to_dict() | {"train_limit": limit}, f"{where}.train_limit")
    # default: two bracketing rounds when the grid has two rates or more to tell a direction
    extend = raw.pop("extend", 2 if len(mults) > 1 else 0)
    if not is_whole(extend) or not 0 <= extend <= MAX_EXTEND:
        bad(f"{where}.extend", f"must be a whole number from 0 to {MAX_EXTEND}, got {show(extend)}")
    if extend and len(mults) < 2:
        bad(f"{where}.extend", "bracketing needs at least two multipliers to tell a direction")
    if "seeds" in raw:
        sweep_seeds = seeds(raw.pop("seeds"), f"{where}.seeds")
    else:  # one seed, the first the study does not use
        sweep_seeds = (next(s for s in range(len(study_seeds) + 1) if s not in study_seeds),)
    shared = sorted(set(sweep_seeds) & set(study_seeds))
    if tuned and shared:
        bad(
            f"{where}.seeds",
            f"seed(s) {shared} are also study seeds: the tuned optimizers' test accuracy must "
            "come from seeds that played no part in choosing their learning rate",
        )
    no_unknown(raw, set(), where)
    rates = tuple(float(m) for m in mults)
    return LrSweep(rates, epochs, sweep_seeds, int(extend), limit, limit_set)


def _multiplier(m: Any) -> bool:
    return is_number(m) and 0 < m <= 1e6


def _field_levels(kind, raw_levels, opts, baseline, where):
    """Any TrainConfig field as a factor, e.g. ``lr: [0.0003, 0.001, 0.003]``."""
    levels = []
    for i, raw in enumerate(raw_levels):
        check_values({kind: raw}, f"{where}.levels[{i}]")
        value = list(raw) if isinstance(raw, list | tuple) else raw
        label = ",".join(map(str, raw)) if isinstance(raw, list | tuple) else str(raw)
        levels.append(Level(label, {kind: value}))
    return levels, None


def check_factorial(factors: tuple[Factor, ...]) -> None:
    if len(factors) < 2:
        bad("factors", "a factorial design needs at least two factors")
    for f in factors:
        if f.regime is not None and (f.regime.changes or f.regime.val_target is not None):
            bad(f"factors.{f.name}", "a factorial design crosses factors around one baseline: "
                "per-factor baseline, budget or val_target need design: ofat")  # fmt: skip
    setters = [f.name for f in factors if any("lr" in lv.overrides for lv in f.levels)]
    if len(setters) > 1:
        bad("factors", f"in a factorial design only one factor may set the LR ({setters})")
    for f in factors:
        fields = {k for lv in f.levels for k in lv.overrides}
        for g in factors:
            if g is not f and fields & {k for lv in g.levels for k in lv.overrides}:
                bad("factors", f"{f.name} and {g.name} change the same config fields")


def factor_source(fdef: Any) -> Any:
    return {"levels": fdef} if isinstance(fdef, list) else dict(fdef)
