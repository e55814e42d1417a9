"""Study specs: a declarative file (YAML or TOML) or built-in profile -> a list of planned trials.

A spec names a baseline config, the factors and their levels, the seeds, the data budget and
the design (one factor at a time around the baseline, or full factorial). Parsing validates
everything up front, so a bad spec fails in one line naming the field before any training.

Every planned trial carries a deterministic ``key`` (a hash of what it trains). Two levels that
train the same config with the same seed share one key, hence one trial: the baseline is run
once and reused as the 3x3 level of the kernel factor, the dropout level of regularization...
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import DEFAULT_LR, OPTIMIZERS, PRESETS, TrainConfig

DESIGNS = ("ofat", "factorial")
FACTOR_KINDS = ("kernel_size", "regularization", "batch_size", "optimizer")
REGULARIZATION_LEVELS = ("none", "l2", "dropout", "batch_norm", "augment", "all")
_TOP_KEYS = {
    "name", "description", "design", "seeds", "budget", "baseline", "factors", "val_target",
}  # fmt: skip
_BUDGET_KEYS = {"train_limit", "epochs", "val_size"}
_CONFIG_FIELDS = set(TrainConfig.__dataclass_fields__)


@dataclass(frozen=True)
class Level:
    label: str
    overrides: dict[str, Any]  # TrainConfig fields changed from the baseline
    tune_lr: bool = False  # learning rate chosen by the factor's sweep, not fixed


@dataclass(frozen=True)
class LrSweep:
    """A short learning-rate sweep per optimizer on the validation split."""

    multipliers: tuple[float, ...] = (0.3, 1.0, 3.0)  # times the optimizer's default LR
    epochs: int | None = None  # None: the study's epochs
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Factor:
    name: str
    kind: str  # one of FACTOR_KINDS, or a TrainConfig field name
    levels: tuple[Level, ...]
    reference: str  # the level every other level is compared with
    lr_sweep: LrSweep | None = None

    def level(self, label: str) -> Level:
        return next(lv for lv in self.levels if lv.label == label)


@dataclass(frozen=True)
class PlannedTrial:
    key: str
    kind: str  # "main" or "sweep"
    config: dict[str, Any]  # TrainConfig.to_dict(); lr is None while tune_lr is pending
    seed: int
    label: str  # short human name, e.g. "kernel_size=5x5 seed=1"
    tune_lr: bool = False
    depends_on: tuple[str, ...] = ()  # keys of the sweep trials that choose the LR


@dataclass(frozen=True)
class Cell:
    """One (factor, level) of an OFAT design, or one combination of a factorial design."""

    levels: tuple[tuple[str, str], ...]  # ((factor, level), ...)
    keys: tuple[str, ...]  # one trial key per seed, in the spec's seed order

    @property
    def name(self) -> str:
        return ", ".join(f"{f}={lv}" for f, lv in self.levels)


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    design: str
    seeds: tuple[int, ...]
    baseline: TrainConfig
    factors: tuple[Factor, ...]
    val_target: float
    source: dict[str, Any] = field(repr=False)  # the normalised spec, stored with the study

    @property
    def digest(self) -> str:
        return _digest({**self.source, "baseline": _without_defaults(self.source["baseline"])})

    def plan(self) -> tuple[list[PlannedTrial], list[Cell]]:
        """Every distinct trial (sweeps first, then seed-major so that an interrupted study
        already holds one seed of everything) and the cells that the analysis compares."""
        return _plan(self)

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)


# -- loading -------------------------------------------------------------------------------


def profile_names() -> list[str]:
    files = resources.files("cnnlab.study").joinpath("profiles").iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml"))


def load_spec(path: str | Path | None = None, profile: str | None = None) -> StudySpec:
    """Parse a spec file (``.yaml``/``.yml``/``.toml``) or a built-in profile by name."""
    if (path is None) == (profile is None):
        raise CnnlabError("give either a spec file or --profile (not both)")
    if profile is not None:
        if profile not in profile_names():
            raise CnnlabError(
                f"unknown profile {profile!r}; choose one of {', '.join(profile_names())}"
            )
        text = resources.files("cnnlab.study").joinpath(f"profiles/{profile}.yaml").read_text()
        return parse_spec(_parse_text(text, "yaml", profile), default_name=profile)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CnnlabError(f"spec file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CnnlabError(f"cannot read spec file {path}: {e}") from None
    fmt = "toml" if path.suffix.lower() == ".toml" else "yaml"
    return parse_spec(_parse_text(text, fmt, str(path)), default_name=path.stem)


def _parse_text(text: str, fmt: str, where: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"spec {where} is not valid {fmt.upper()}: {first}") from None
    if not isinstance(data, dict):
        raise CnnlabError(f"spec {where}: expected a mapping at the top level")
    return data


def parse_spec(data: Mapping[str, Any], default_name: str = "study") -> StudySpec:
    """Validate a spec mapping; every error names the offending field."""
    data = dict(data)
    _no_unknown(data, _TOP_KEYS, "spec")
    name = str(data.get("name") or default_name)
    design = data.get("design", "ofat")
    if design not in DESIGNS:
        _bad("design", f"must be one of {', '.join(DESIGNS)}, got {design!r}")
    seeds = _seeds(data.get("seeds", 3), "seeds")
    baseline = _baseline(data.get("baseline", {}), data.get("budget", {}))
    val_target = data.get("val_target", 0.85)
    if not isinstance(val_target, int | float) or not 0 < val_target <= 1:
        _bad("val_target", f"must be a validation accuracy in (0, 1], got {val_target!r}")
    raw_factors = data.get("factors")
    if not isinstance(raw_factors, Mapping) or not raw_factors:
        _bad("factors", "must map at least one factor name to its levels")
    factors = tuple(
        _factor(str(fname), fdef, baseline, design) for fname, fdef in raw_factors.items()
    )
    if design == "factorial":
        _check_factorial(factors)
    source = {
        "name": name,
        "description": str(data.get("description", "")),
        "design": design,
        "seeds": list(seeds),
        "val_target": float(val_target),
        "baseline": baseline.to_dict(),
        "factors": {f.name: _factor_source(raw_factors[f.name]) for f in factors},
    }
    return StudySpec(
        name=name,
        description=source["description"],
        design=design,
        seeds=seeds,
        baseline=baseline,
        factors=factors,
        val_target=float(val_target),
        source=source,
    )


def spec_from_source(source: Mapping[str, Any]) -> StudySpec:
    """Rebuild a spec from the normalised form stored with a study."""
    data = dict(source)
    data["baseline"] = dict(data["baseline"])
    return parse_spec(data, default_name=data["name"])


# -- validation helpers --------------------------------------------------------------------


def _bad(field_name: str, why: str) -> None:
    raise CnnlabError(f"invalid spec field {field_name}: {why}")


def _no_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise CnnlabError(
            f"unknown field(s) in {where}: {', '.join(map(str, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        _bad(where, f"must be a count or a list of integers, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            _bad(where, f"need at least 1 seed, got {value}")
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) for s in value):
        if len(set(value)) != len(value):
            _bad(where, f"seeds must be distinct, got {value}")
        return tuple(value)
    _bad(where, f"must be a count or a non-empty list of integers, got {value!r}")
    raise AssertionError  # unreachable


def _config(values: Mapping[str, Any], where: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(dict(values))
    except CnnlabError as e:
        raise CnnlabError(f"invalid spec field {where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise CnnlabError(f"invalid spec field {where}: {e}") from None


def _baseline(raw: Any, budget: Any) -> TrainConfig:
    if not isinstance(raw, Mapping):
        _bad("baseline", "must be a mapping of config fields (and optionally preset)")
    if not isinstance(budget, Mapping):
        _bad("budget", "must be a mapping with train_limit, epochs, val_size")
    _no_unknown(budget, _BUDGET_KEYS, "budget")
    raw = dict(raw)
    preset_name = raw.pop("preset", "tutorial")
    if preset_name not in PRESETS:
        _bad("baseline.preset", f"unknown preset {preset_name!r} (one of {', '.join(PRESETS)})")
    _no_unknown(raw, _CONFIG_FIELDS, "baseline")
    values = PRESETS[preset_name].to_dict() | raw | dict(budget)
    return _config(values, "baseline")


def _labels_unique(levels: list[Level], where: str) -> None:
    seen = set()
    for lv in levels:
        if lv.label in seen:
            _bad(where, f"level {lv.label!r} appears twice")
        seen.add(lv.label)


def _factor(name: str, fdef: Any, baseline: TrainConfig, design: str) -> Factor:
    where = f"factors.{name}"
    if isinstance(fdef, list):  # shorthand: `kernel_size: [3, 5, 7]`
        fdef = {"levels": fdef}
    if not isinstance(fdef, Mapping):
        _bad(where, "must be a list of levels or a mapping with 'levels'")
    fdef = dict(fdef)
    kind = str(fdef.pop("kind", name))
    if kind not in FACTOR_KINDS and kind not in _CONFIG_FIELDS:
        raise CnnlabError(
            f"unknown factor {kind!r} in {where}: use one of {', '.join(FACTOR_KINDS)} "
            f"or a config field ({', '.join(sorted(_CONFIG_FIELDS - {'seed'}))})"
        )
    if name == "baseline":
        _bad(where, "'baseline' is reserved for the baseline config; name the factor otherwise")
    if kind == "seed":
        _bad(where, "seeds are set by the top-level 'seeds' field, not as a factor")
    raw_levels = fdef.pop("levels", None)
    if not isinstance(raw_levels, list) or not raw_levels:
        _bad(f"{where}.levels", "must list at least one level")
    reference = fdef.pop("reference", None)
    parse = {
        "kernel_size": _kernel_levels,
        "regularization": _regularization_levels,
        "batch_size": _batch_levels,
        "optimizer": _optimizer_levels,
    }.get(kind, _field_levels)
    levels, sweep = parse(kind, raw_levels, fdef, baseline, where)
    _no_unknown(fdef, set(), where)  # every option has been consumed by its parser
    _labels_unique(levels, f"{where}.levels")
    for i, lv in enumerate(levels):  # each level must be a valid config
        cfg = baseline.to_dict() | lv.overrides
        _config(cfg, f"{where}.levels[{i}]")
    if reference is None:
        reference = _default_reference(levels, baseline)
    reference = str(reference)
    if reference not in {lv.label for lv in levels}:
        _bad(f"{where}.reference", f"{reference!r} is not one of the levels")
    return Factor(name, kind, tuple(levels), reference, sweep)


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


def _kernel_levels(kind, raw_levels, opts, baseline, where):
    levels = []
    for i, raw in enumerate(raw_levels):
        text = str(raw).strip().lower().replace(" ", "")
        first = text.startswith("first")
        text = text.removeprefix("first").lstrip(":-_")
        size = text.split("x")[0]
        if not size.isdigit() or ("x" in text and text != f"{size}x{size}"):
            _bad(
                f"{where}.levels[{i}]",
                f"{raw!r} is not a kernel size (use e.g. 3, '5x5' or 'first7x7' for a large "
                "first layer only)",
            )
        k = int(size)
        if first:
            levels.append(Level(f"first {k}x{k}", {"first_kernel_size": k}))
        else:
            levels.append(Level(f"{k}x{k}", {"kernel_size": k, "first_kernel_size": None}))
    return levels, None


def _regularization_levels(kind, raw_levels, opts, baseline, where):
    l2 = opts.pop("l2", 5e-4)
    dropout = opts.pop("dropout", 0.5)
    if not isinstance(l2, int | float) or l2 <= 0:
        _bad(f"{where}.l2", f"must be > 0, got {l2!r}")
    if not isinstance(dropout, int | float) or not 0 < dropout < 1:
        _bad(f"{where}.dropout", f"must be in (0, 1), got {dropout!r}")
    off = {"l2": 0.0, "dropout": 0.0, "batch_norm": False, "augment": False}
    on = {"l2": float(l2), "dropout": float(dropout), "batch_norm": True, "augment": True}
    levels = []
    for i, raw in enumerate(raw_levels):
        name = str(raw).strip().lower()
        if name not in REGULARIZATION_LEVELS:
            _bad(
                f"{where}.levels[{i}]",
                f"{raw!r} is not one of {', '.join(REGULARIZATION_LEVELS)}",
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
    warmup = opts.pop("warmup_epochs", 1.0 if scaling == "linear" else 0.0)
    if scaling not in ("none", "linear"):
        _bad(f"{where}.lr_scaling", f"must be none or linear, got {scaling!r}")
    if not isinstance(warmup, int | float) or warmup < 0:
        _bad(f"{where}.warmup_epochs", f"must be >= 0, got {warmup!r}")
    if scaling == "linear" and warmup > 0 and baseline.schedule == "constant":
        _bad(
            f"{where}.warmup_epochs",
            "the constant schedule has no warm-up; set baseline.schedule to cosine or "
            "onecycle, or warmup_epochs to 0",
        )
    levels = []
    for i, raw in enumerate(raw_levels):
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            _bad(f"{where}.levels[{i}]", f"a batch size must be a positive integer, got {raw!r}")
        over: dict[str, Any] = {"batch_size": raw}
        if scaling == "linear":
            # linear scaling rule (Goyal et al. 2017): LR proportional to batch size, with warmup
            over["lr"] = baseline.learning_rate * raw / baseline.batch_size
            over["warmup_epochs"] = float(warmup)
        levels.append(Level(str(raw), over))
    return levels, None


def _optimizer_levels(kind, raw_levels, opts, baseline, where):
    tune = opts.pop("tune_lr", True)
    raw_sweep = opts.pop("lr_sweep", {})
    if not isinstance(tune, bool):
        _bad(f"{where}.tune_lr", f"must be true or false, got {tune!r}")
    if not isinstance(raw_sweep, Mapping):
        _bad(f"{where}.lr_sweep", "must be a mapping (multipliers, epochs, seeds)")
    raw_sweep = dict(raw_sweep)
    mults = raw_sweep.pop("multipliers", [0.3, 1.0, 3.0])
    if (
        not isinstance(mults, list)
        or not mults
        or not all(isinstance(m, int | float) and not isinstance(m, bool) and m > 0 for m in mults)
    ):
        _bad(f"{where}.lr_sweep.multipliers", f"must be a list of positive numbers, got {mults!r}")
    epochs = raw_sweep.pop("epochs", None)
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        _bad(f"{where}.lr_sweep.epochs", f"must be a positive integer, got {epochs!r}")
    seeds = _seeds(raw_sweep.pop("seeds", [0]), f"{where}.lr_sweep.seeds")
    _no_unknown(raw_sweep, set(), f"{where}.lr_sweep")
    levels = []
    for i, raw in enumerate(raw_levels):
        name = str(raw).strip().lower()
        if name not in OPTIMIZERS:
            _bad(f"{where}.levels[{i}]", f"{raw!r} is not one of {', '.join(OPTIMIZERS)}")
        over = {"optimizer": name, "lr": None if tune else DEFAULT_LR[name]}
        levels.append(Level(name, over, tune_lr=tune))
    sweep = LrSweep(tuple(float(m) for m in mults), epochs, seeds) if tune else None
    return levels, sweep


def _field_levels(kind, raw_levels, opts, baseline, where):
    """Any TrainConfig field as a factor, e.g. ``lr: [0.0003, 0.001, 0.003]``."""
    levels = []
    for raw in raw_levels:
        value = tuple(raw) if isinstance(raw, list) else raw
        label = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        levels.append(Level(label, {kind: list(value) if isinstance(value, tuple) else value}))
    return levels, None


def _check_factorial(factors: tuple[Factor, ...]) -> None:
    if len(factors) < 2:
        _bad("factors", "a factorial design needs at least two factors")
    setters = [f.name for f in factors if any("lr" in lv.overrides for lv in f.levels)]
    if len(setters) > 1:
        _bad("factors", f"in a factorial design only one factor may set the LR ({setters})")
    for f in factors:
        fields = {k for lv in f.levels for k in lv.overrides}
        for g in factors:
            if g is not f and fields & {k for lv in g.levels for k in lv.overrides}:
                _bad("factors", f"{f.name} and {g.name} change the same config fields")


def _factor_source(fdef: Any) -> Any:
    return {"levels": fdef} if isinstance(fdef, list) else dict(fdef)


# -- planning ------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
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


def _without_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` less the fields at their TrainConfig default, for digests: a field added to
    TrainConfig later, with a default that keeps the old behaviour, leaves every spec digest and
    trial key as it was, so studies written before it can still be resumed."""
    config = _normalise(dict(config))
    return {k: v for k, v in config.items() if k not in _DEFAULTS or _DEFAULTS[k] != v}


def _trial(kind: str, config: dict[str, Any], label: str, tune: bool, deps=()) -> PlannedTrial:
    config = _normalise(config)
    key = _digest(
        {
            "kind": kind,
            "config": _without_defaults(config),
            "tune_lr": tune,
            "depends_on": list(deps),
        }
    )
    return PlannedTrial(key, kind, config, int(config["seed"]), label, tune, tuple(deps))


def sweep_trials(spec: StudySpec, factor: Factor, optimizer: str) -> list[PlannedTrial]:
    """The LR sweep of one optimizer: the baseline with that optimizer at each multiplier."""
    sweep = factor.lr_sweep
    assert sweep is not None
    out = []
    for mult, seed in itertools.product(sweep.multipliers, sweep.seeds):
        over = {"optimizer": optimizer, "lr": DEFAULT_LR[optimizer] * mult, "seed": seed}
        if sweep.epochs is not None:
            over["epochs"] = sweep.epochs
        cfg = spec.baseline.to_dict() | over
        label = f"lr-sweep {optimizer} lr={cfg['lr']:.3g} seed={seed}"
        out.append(_trial("sweep", cfg, label, False))
    return out


def _plan(spec: StudySpec) -> tuple[list[PlannedTrial], list[Cell]]:
    trials: dict[str, PlannedTrial] = {}
    sweeps: dict[tuple[str, str], tuple[str, ...]] = {}
    for f in spec.factors:
        for lv in f.levels:
            if lv.tune_lr:
                planned = sweep_trials(spec, f, lv.overrides["optimizer"])
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
            cfg = spec.baseline.to_dict() | {"seed": seed}
            tune, deps = False, ()
            for fname, label in combo:
                if fname == "baseline":
                    continue
                lv = spec.factor(fname).level(label)
                cfg |= lv.overrides
                if lv.tune_lr:
                    tune, deps = True, sweeps[(fname, label)]
            name = ", ".join(f"{f}={lv}" for f, lv in combo)
            t = _trial("main", cfg, f"{name} seed={seed}", tune, deps)
            trials.setdefault(t.key, t)
            keys[combo].append(t.key)
    cells = [Cell(combo, tuple(keys[combo])) for combo in combos]
    return list(trials.values()), cells
