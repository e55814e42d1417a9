"""Planning: a parsed spec -> every distinct trial it trains, and the cells that compare them.

Every planned trial carries a deterministic ``key`` (a hash of what it trains). Two levels that
train the same config with the same seed share one key, hence one trial: the baseline is run
once and reused as the 3x3 level of the kernel factor, the dropout level of regularization...
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cnnlab.fmnist.config import TrainConfig, applied_weight_decay
from cnnlab.study.spec.factors import Factor

FMNIST_TRAIN_IMAGES = 60_000  # the training split the validation images are carved from

# Where a trial's learning rate comes from (results.csv, lr_source): its factor's baseline;
# a level's own sweep, on validation; or a rate the level fixes (a scaling rule, a grid rate).
BASELINE, TUNED, FIXED = "baseline", "tuned", "fixed"


class StudySpec(Protocol):
    """What planning reads of a :class:`cnnlab.study.spec.StudySpec`; named here because the
    spec calls this module to plan itself, and a module imports no caller of its own."""

    design: str
    seeds: tuple[int, ...]
    baseline: TrainConfig
    factors: tuple[Factor, ...]

    def factor(self, name: str) -> Factor: ...

    def factor_baseline(self, factor: Factor) -> TrainConfig: ...


@dataclass(frozen=True)
class PlannedTrial:
    key: str
    kind: str  # "main" or "sweep"
    config: dict[str, Any]  # TrainConfig.to_dict(); lr is None while tune_lr is pending
    seed: int
    label: str  # short human name, e.g. "kernel_size=5x5 seed=1"
    tune_lr: bool = False
    depends_on: tuple[str, ...] = ()  # keys of the sweep trials that choose the LR
    lr_source: str = "baseline"  # BASELINE, TUNED or FIXED: where its learning rate comes from
    lr_sweep: str = ""  # the sweep that tuned it (or that it belongs to), e.g. "optimizer=sgd"


@dataclass(frozen=True)
class Cell:
    """One (factor, level) of an OFAT design, or one combination of a factorial design."""

    levels: tuple[tuple[str, str], ...]  # ((factor, level), ...)
    keys: tuple[str, ...]  # one trial key per seed, in the spec's seed order

    @property
    def name(self) -> str:
        return ", ".join(f"{f}={lv}" for f, lv in self.levels)


def digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_FLOAT_FIELDS = {
    name for name, f in TrainConfig.__dataclass_fields__.items() if "float" in str(f.type)
}


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    """Same config, same key: 0 and 0.0 (YAML writes either) must hash alike."""
    out = dict(config)
    for name in _FLOAT_FIELDS:
        value = out.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
    return out


_DEFAULTS = _normalise(TrainConfig().to_dict())


def without_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` less the fields at their TrainConfig default, for digests: a field added to
    TrainConfig later, with a default that keeps the old behaviour, leaves every spec digest and
    trial key as it was, so studies written before it can still be resumed."""
    config = _normalise(dict(config))
    return {k: v for k, v in config.items() if k not in _DEFAULTS or _DEFAULTS[k] != v}


def training_identity(config: Mapping[str, Any]) -> str:
    """What a trial trains, whatever study planned it: its config (learning rate and seed
    included) less defaults, floats to 12 significant digits (a rate reached by another route,
    0.002 x 4 against 0.008 x 1, may differ in its last bit). Trials of two studies with the
    same identity train the same network the same way (``storage.reuse``)."""
    config = without_defaults(_resolve_weight_decay(_normalise(dict(config))))
    return digest({k: float(f"{v:.12g}") if isinstance(v, float) else v
                   for k, v in config.items()})  # fmt: skip


def _resolve_weight_decay(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's config names the weight decay its optimizer applies: adamw's default is
    written out (its key changes when that default does, so a trial trained at another decay
    is run again, not reused), and an optimizer that takes none carries None (a decay it
    ignores leaves its key alone)."""
    optimizer = config.get("optimizer", _DEFAULTS["optimizer"])
    return {**config, "weight_decay": applied_weight_decay(optimizer, config.get("weight_decay"))}


def planned_trial(
    kind: str, config: dict[str, Any], label: str, tune: bool, deps=(), source=None
) -> PlannedTrial:
    """``source``: (``lr_source``, the sweep it names), by default (BASELINE, "")."""
    config = _resolve_weight_decay(_normalise(config))
    key = digest(
        {
            "kind": kind,
            "config": without_defaults(config),
            "tune_lr": tune,
            "depends_on": list(deps),
        }
    )
    lr_source, lr_sweep = source or (BASELINE, "")
    return PlannedTrial(
        key, kind, config, int(config["seed"]), label, tune, tuple(deps), lr_source, lr_sweep
    )


def sweep_trials(spec: StudySpec, factor: Factor, level: str) -> list[PlannedTrial]:
    """The LR sweep of one tuned level: the factor's baseline with that level's changes at each
    multiplier of the level's own rate (``Level.sweep_center``), then ``extend`` bracketing
    rounds. A round's rate is chosen when it is claimed, from the rounds before it
    (``tuning.probe_lr``), so its trials are planned with ``lr`` None and depend on every
    earlier sweep trial. Two levels that train the same config share their sweep's trials."""
    sweep = factor.lr_sweep
    lv = factor.level(level)
    assert sweep is not None and lv.sweep_center is not None
    base = spec.factor_baseline(factor).to_dict() | lv.overrides | sweep.overrides()
    name = sweep_name(factor, level)
    out = []
    for mult, seed in itertools.product(sweep.multipliers, sweep.seeds):
        cfg = base | {"lr": lv.sweep_center * mult, "seed": seed}
        label = f"lr-sweep {name} lr={cfg['lr']:.3g} seed={seed}"
        out.append(planned_trial("sweep", cfg, label, False, source=(FIXED, name)))
    for round_ in range(1, sweep.extend + 1):
        deps = tuple(t.key for t in out)
        for seed in sweep.seeds:
            label = f"lr-sweep {name} bracketing round {round_} seed={seed}"
            cfg = base | {"lr": None, "seed": seed}
            out.append(planned_trial("sweep", cfg, label, True, deps, source=(FIXED, name)))
    return out


def sweep_name(factor: Factor, level: str) -> str:
    """What results.csv calls a level's sweep: ``optimizer=sgd``."""
    return f"{factor.name}={level}"


def plan(spec: StudySpec) -> tuple[list[PlannedTrial], list[Cell]]:
    trials: dict[str, PlannedTrial] = {}
    sweeps: dict[tuple[str, str], tuple[str, ...]] = {}
    for f in spec.factors:
        for lv in f.levels:
            if lv.tune_lr:
                planned = sweep_trials(spec, f, lv.label)
                sweeps[(f.name, lv.label)] = tuple(t.key for t in planned)
                trials.update((t.key, t) for t in planned)

    if spec.design == "ofat":
        # the baseline is a cell of its own; it usually shares its trials with reference levels
        combos = [(("baseline", "baseline"),)]
        combos += [((f.name, lv.label),) for f in spec.factors for lv in f.levels]
    else:
        combos = list(
            itertools.product(*[[(f.name, lv.label) for lv in f.levels] for f in spec.factors])
        )
    keys: dict[tuple, list[str]] = {c: [] for c in combos}
    for seed in spec.seeds:
        for combo in combos:
            # an OFAT cell runs in its factor's regime; a factorial design has only one regime
            base = spec.baseline
            if spec.design == "ofat" and combo[0][0] != "baseline":
                base = spec.factor_baseline(spec.factor(combo[0][0]))
            cfg = base.to_dict() | {"seed": seed}
            tune, deps, source = False, (), (BASELINE, "")
            for fname, label in combo:
                if fname == "baseline":
                    continue
                f = spec.factor(fname)
                lv = f.level(label)
                cfg |= lv.overrides
                if lv.tune_lr:
                    tune, deps = True, sweeps[(fname, label)]
                    source = (TUNED, sweep_name(f, label))
                elif lv.overrides.get("lr") is not None:
                    source = (FIXED, "")
            name = ", ".join(f"{f}={lv}" for f, lv in combo)
            t = planned_trial("main", cfg, f"{name} seed={seed}", tune, deps, source)
            trials.setdefault(t.key, t)
            keys[combo].append(t.key)
    cells = [Cell(combo, tuple(keys[combo])) for combo in combos]
    return list(trials.values()), cells


def trial_count(spec: StudySpec) -> int:
    """Trials the plan holds before identical ones are shared (an upper bound, and cheap)."""
    if spec.design == "ofat":
        per_seed = 1 + sum(len(f.levels) for f in spec.factors)
    else:
        per_seed = 1
        for f in spec.factors:
            per_seed *= len(f.levels)
    sweeps = sum(
        (len(f.lr_sweep.multipliers) + f.lr_sweep.extend)
        * len(f.lr_sweep.seeds)
        * sum(lv.tune_lr for lv in f.levels)
        for f in spec.factors
        if f.lr_sweep is not None
    )
    return per_seed * len(spec.seeds) + sweeps


def train_split(config: Mapping[str, Any]) -> int:
    """Training images of a trial: ``train_limit`` of the 60,000 Fashion-MNIST training images
    left after its validation split (all of them without a limit)."""
    rest = FMNIST_TRAIN_IMAGES - int(config["val_size"])
    limit = config.get("train_limit")
    return rest if limit is None else min(int(limit), rest)


def training_images(config: Mapping[str, Any]) -> int:
    """Images a trial trains on, summed over its epochs."""
    return train_split(config) * int(config["epochs"])


def planned_work(trials: list[PlannedTrial]) -> dict[str, int]:
    """Each trial's key and the images it trains on: what an ETA weighs trials by."""
    return {t.key: training_images(t.config) for t in trials}


def steps_per_epoch(config: Mapping[str, Any]) -> int:
    return math.ceil(train_split(config) / int(config["batch_size"]))
