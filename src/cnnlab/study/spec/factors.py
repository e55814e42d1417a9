"""A spec's factors: each factor's levels -> the TrainConfig fields they change.

The four factors of cnnlab's mission have their own level syntax (``first7x7``, ``l2``,
``lr_scaling: linear``, ``equal_steps``, optimizers with an LR sweep); any other TrainConfig
field is a factor whose levels are its values (``lr: [0.0003, 0.001, 0.003]``). Each factor
runs in its own regime (``regime.py``): the study's baseline unless it overrides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import DEFAULT_LR, TrainConfig
from cnnlab.study.spec.checks import (
    CONFIG_FIELDS,
    MAX_EPOCHS,
    bad,
    config,
    is_number,
    is_whole,
    no_unknown,
    seeds,
)
from cnnlab.study.spec.levels import (
    MAX_BATCH_SIZE,
    REGULARIZATION_LEVELS,
    Level,
    batch_levels,
    field_levels,
    kernel_levels,
    optimizer_levels,
    regularization_levels,
)
from cnnlab.study.spec.names import NAME_RULE, is_safe_name, show
from cnnlab.study.spec.regime import REGIME_KEYS, Regime, parse_regime

__all__ = ["FACTOR_KINDS", "MAX_BATCH_SIZE", "REGULARIZATION_LEVELS", "Factor", "Level",
           "LrSweep", "check_factorial", "factor_source", "parse_factor"]  # fmt: skip

FACTOR_KINDS = ("kernel_size", "regularization", "batch_size", "optimizer")


@dataclass(frozen=True)
class LrSweep:
    """A learning-rate sweep per optimizer on the validation split, bracketed: after the grid,
    ``extend`` more rounds each try one rate, beyond the edge while the best rate is at an edge
    of what was tried, else between the best rate and its better neighbour (``tuning.py``)."""

    multipliers: tuple[float, ...] = (0.3, 1.0, 3.0)  # times the level's own rate
    epochs: int | None = None  # None: the factor's epochs
    seeds: tuple[int, ...] = (0, 1)  # never the study's seeds: test accuracy comes from others
    extend: int = 0  # rounds after the grid (the cap of the bracketing)
    train_limit: int | None = None  # with limit_set: the sweep's training images
    limit_set: bool = False  # False: the factor's training images
    # (level label, rate): levels whose multipliers multiply this rate, not their untuned one
    centers: tuple[tuple[str, float], ...] = ()

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
    tune = fdef.pop("tune_lr", kind == "optimizer")
    raw_sweep = fdef.pop("lr_sweep", None)
    if not isinstance(tune, bool):
        bad(f"{where}.tune_lr", f"must be true or false, got {show(tune)}")
    parse = {
        "kernel_size": kernel_levels,
        "regularization": regularization_levels,
        "batch_size": batch_levels,
        "optimizer": partial(optimizer_levels, tune=tune),
    }.get(kind, field_levels)
    levels, _ = parse(kind, raw_levels, fdef, baseline, where)
    no_unknown(fdef, set(), where)  # every option has been consumed by its parser
    _labels_unique(levels, f"{where}.levels")
    for i, lv in enumerate(levels):  # each level must be a valid config
        config(baseline.to_dict() | lv.overrides, f"{where}.levels[{i}]")
    if reference is None:  # from the levels as given, before their rates are left to a sweep
        reference = _default_reference(levels, baseline)
    sweep = None
    if tune:
        if kind == "lr":
            bad(f"{where}.tune_lr", "a factor whose levels are learning rates cannot tune it")
        if raw_sweep is not None and not isinstance(raw_sweep, Mapping):
            bad(f"{where}.lr_sweep", "must be a mapping (multipliers, epochs, seeds, extend, …)")
        raw_sweep = dict(raw_sweep or {})
        centers = _centers(raw_sweep.pop("centers", {}), levels, f"{where}.lr_sweep.centers")
        levels = [_tuned(lv, baseline, dict(centers).get(lv.label)) for lv in levels]
        # the sweep's seeds must differ from the study's (checked unless reading a stored spec)
        sweep = _sweep(raw_sweep, baseline, f"{where}.lr_sweep", study_seeds, True)
        sweep = replace(sweep, centers=centers)
    elif raw_sweep is not None:
        bad(f"{where}.lr_sweep", "is set, but tune_lr is false: nothing would use it")
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


MAX_EXTEND = 10  # bracketing rounds after the grid


def _tuned(level: Level, baseline: TrainConfig, center: float | None = None) -> Level:
    """``level`` with its learning rate left to the factor's sweep, which multiplies the rate
    the level would otherwise train at: an optimizer's default rate, a batch size's scaled
    rate, else the baseline's; or ``center``, the rate ``lr_sweep.centers`` gives it."""
    if center is None and "optimizer" in level.overrides and level.overrides.get("lr") is None:
        center = DEFAULT_LR[level.overrides["optimizer"]]
    elif center is None:
        center = config(baseline.to_dict() | level.overrides, "level").learning_rate
    return Level(level.label, level.overrides | {"lr": None}, True, float(center))


MAX_CENTER = 100.0  # a learning rate, not a typo of one


def _centers(raw: Any, levels: list[Level], where: str) -> tuple[tuple[str, float], ...]:
    """``lr_sweep.centers``: a finer sweep around rates known from an earlier study, e.g.
    ``{adam: 0.008, sgd: 0.4}``; levels it does not name keep their untuned rate."""
    if not isinstance(raw, Mapping):
        bad(where, f"must map levels to learning rates, e.g. {{adam: 0.008}}, got {show(raw)}")
    labels = [lv.label for lv in levels]
    out = []
    for key, rate in raw.items():
        label = str(key).strip()
        if label not in labels:
            bad(where, f"{show(key)} is not one of the levels ({', '.join(labels)})")
        if not is_number(rate) or not 0 < rate <= MAX_CENTER:
            bad(f"{where}.{label}", f"must be a learning rate in (0, {MAX_CENTER:g}], got "
                f"{show(rate)}")  # fmt: skip
        out.append((label, float(rate)))
    return tuple(sorted(out))


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
    else:  # two seeds, the first the study does not use: one seed's noise can pick a rate
        free = (s for s in range(len(study_seeds) + 2) if s not in study_seeds)
        sweep_seeds = (next(free), next(free))
    shared = sorted(set(sweep_seeds) & set(study_seeds))
    if tuned and shared:
        bad(
            f"{where}.seeds",
            f"seed(s) {shared} are also study seeds: the tuned levels' test accuracy must "
            "come from seeds that played no part in choosing their learning rate",
        )
    no_unknown(raw, set(), where)
    rates = tuple(float(m) for m in mults)
    return LrSweep(rates, epochs, sweep_seeds, int(extend), limit, limit_set)


def _multiplier(m: Any) -> bool:
    return is_number(m) and 0 < m <= 1e6


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
