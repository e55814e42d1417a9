"""Study specs: a declarative file (YAML or TOML) or built-in profile -> a list of planned trials.

A spec names a baseline config, the factors and their levels, the seeds, the data budget and
the design (one factor at a time around the baseline, or full factorial). Parsing validates
everything up front, so a bad spec fails in one line naming the field before any training.

Modules: ``file`` (reading files within limits), ``checks`` (field checks shared by
the parts), ``factors`` (levels -> config changes), ``regime`` (a factor's own baseline, budget
and reason), ``plan`` (trials, keys and cells), ``names`` (study names). This module holds the
spec itself and its top-level fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import PRESETS, TrainConfig
from cnnlab.study.spec import plan as planning
from cnnlab.study.spec.checks import (
    CONFIG_FIELDS,
    MAX_TRIALS,
    bad,
    check_values,
    config,
    is_number,
    no_unknown,
    seeds,
)
from cnnlab.study.spec.factors import (
    FACTOR_KINDS,
    REGULARIZATION_LEVELS,
    Factor,
    Level,
    LrSweep,
    check_factorial,
    factor_source,
    parse_factor,
)
from cnnlab.study.spec.file import parse_text, read_spec_file
from cnnlab.study.spec.names import check_study_name, show, slug
from cnnlab.study.spec.plan import Cell, PlannedTrial, sweep_trials

__all__ = [
    "DESIGNS", "FACTOR_KINDS", "REGULARIZATION_LEVELS", "Cell", "Factor", "Level", "LrSweep",
    "PlannedTrial", "StudySpec", "load_spec", "parse_spec", "profile_names", "spec_from_source",
    "sweep_trials",
]  # fmt: skip

DESIGNS = ("ofat", "factorial")
_TOP_KEYS = {
    "name", "description", "design", "seeds", "budget", "baseline", "factors", "val_target",
}  # fmt: skip
_BUDGET_KEYS = {"train_limit", "epochs", "val_size"}


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
        baseline = planning.without_defaults(self.source["baseline"])
        return planning.digest({**self.source, "baseline": baseline})

    def plan(self) -> tuple[list[PlannedTrial], list[Cell]]:
        """Every distinct trial (sweeps first, then seed-major so that an interrupted study
        already holds one seed of everything) and the cells that the analysis compares."""
        return planning.plan(self)

    def factor(self, name: str) -> Factor:
        return next(f for f in self.factors if f.name == name)

    def factor_baseline(self, factor: Factor) -> TrainConfig:
        """The config ``factor``'s levels change: the study's baseline or its regime's."""
        return factor.baseline(self.baseline)

    def val_target_of(self, factor: Factor) -> float:
        regime = factor.regime
        return self.val_target if regime is None or regime.val_target is None else regime.val_target


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
                f"unknown profile {show(profile)}; choose one of {', '.join(profile_names())}"
            )
        text = resources.files("cnnlab.study").joinpath(f"profiles/{profile}.yaml").read_text()
        return parse_spec(parse_text(text, "yaml", profile), default_name=profile)
    path = Path(path)
    text, fmt = read_spec_file(path)
    # the file's name, made safe, unless the spec names the study itself
    return parse_spec(parse_text(text, fmt, str(path)), default_name=slug(path.stem))


def parse_spec(data: Mapping[str, Any], default_name: str = "study") -> StudySpec:
    """Validate a spec mapping; every error names the offending field."""
    return _parse(data, default_name)


def spec_from_source(source: Mapping[str, Any]) -> StudySpec:
    """Rebuild a spec from the normalised form stored with a study, checked as a file is."""
    if not isinstance(source, Mapping) or not isinstance(source.get("baseline"), Mapping):
        raise CnnlabError("the spec stored with this study is damaged")
    data = dict(source)
    data["baseline"] = dict(data["baseline"])
    return _parse(data, str(data.get("name") or "study"))


# -- the top-level fields ------------------------------------------------------------------


def _parse(data: Mapping[str, Any], default_name: str) -> StudySpec:
    if not isinstance(data, Mapping):
        raise CnnlabError(f"a spec is a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    no_unknown(data, _TOP_KEYS, "spec")
    name = data.get("name") or default_name
    check_study_name(name, "spec field name")
    description = data.get("description", "")
    if isinstance(description, list | dict):
        bad("description", "must be text")
    design = data.get("design", "ofat")
    if not isinstance(design, str) or design not in DESIGNS:
        bad("design", f"must be one of {', '.join(DESIGNS)}, got {show(design)}")
    spec_seeds = seeds(data.get("seeds", 3), "seeds")
    baseline = _baseline(data.get("baseline", {}), data.get("budget", {}))
    val_target = data.get("val_target", 0.85)
    if not is_number(val_target) or not 0 < val_target <= 1:
        bad("val_target", f"must be a validation accuracy in (0, 1], got {show(val_target)}")
    raw_factors = data.get("factors")
    if not isinstance(raw_factors, Mapping) or not raw_factors:
        bad("factors", "must map at least one factor name to its levels")
    factors = tuple(
        parse_factor(fname, fdef, baseline, spec_seeds) for fname, fdef in raw_factors.items()
    )
    if design == "factorial":
        check_factorial(factors)
    source = {
        "name": str(name),
        "description": str(description),
        "design": design,
        "seeds": list(spec_seeds),
        "val_target": float(val_target),
        "baseline": baseline.to_dict(),
        "factors": {f.name: factor_source(raw_factors[f.name]) for f in factors},
    }
    spec = StudySpec(
        name=source["name"],
        description=source["description"],
        design=design,
        seeds=spec_seeds,
        baseline=baseline,
        factors=factors,
        val_target=float(val_target),
        source=source,
    )
    if (n := planning.trial_count(spec)) > MAX_TRIALS:
        bad("factors", f"the plan holds {n} trials; at most {MAX_TRIALS} (fewer levels or seeds)")
    return spec


def _baseline(raw: Any, budget: Any) -> TrainConfig:
    if not isinstance(raw, Mapping):
        bad("baseline", "must be a mapping of config fields (and optionally preset)")
    if not isinstance(budget, Mapping):
        bad("budget", "must be a mapping with train_limit, epochs, val_size")
    no_unknown(budget, _BUDGET_KEYS, "budget")
    raw = dict(raw)
    preset_name = raw.pop("preset", "tutorial")
    if not isinstance(preset_name, str) or preset_name not in PRESETS:
        bad("baseline.preset", f"unknown preset {show(preset_name)} (one of {', '.join(PRESETS)})")
    no_unknown(raw, CONFIG_FIELDS, "baseline")
    check_values(raw, "baseline.{field}")
    check_values(budget, "budget.{field}")
    preset = PRESETS[preset_name].to_dict()
    try:
        return config(preset | raw | dict(budget), "baseline")
    except CnnlabError:
        # name the one value at fault when it is wrong on its own, not only with the others
        for section, values in (("budget", budget), ("baseline", raw)):
            for key, value in values.items():
                config(preset | {key: value}, f"{section}.{key}")
        raise
