"""A factor's regime: the baseline, budget and validation target its trials run in, and why.

An effect exists in some regime and not in others: regularization has nothing to show when
nothing overfits (issue 13: on the old quick profile training accuracy stayed below validation
for every level), and the cost of a large batch at a fixed number of epochs is mostly a cost in
optimizer steps. So each factor may run around its own baseline:

    regularization_small:
      kind: regularization
      levels: [none, l2, dropout, batch_norm, augment, all]
      baseline: {dropout: 0.0, batch_size: 32}       # overrides of the study's baseline
      budget: {train_limit: 1000, epochs: 30}          # overrides of the study's budget
      val_target: 0.8                                  # "epochs/steps to target" for this factor
      regime: small training set, many epochs: the unregularized net overfits

Every override applies to that factor's trials only (its levels, its reference and, for an
optimizer factor, its learning-rate sweep); the report prints the regime text and what the
regime changes. A factor without overrides runs around the study's baseline, so its trials
keep the keys they had before regimes existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import TrainConfig
from cnnlab.study.spec.checks import (
    CONFIG_FIELDS,
    bad,
    check_values,
    config,
    is_number,
    no_unknown,
)
from cnnlab.study.spec.names import show

BUDGET_KEYS = frozenset({"train_limit", "epochs", "val_size"})
REGIME_KEYS = ("baseline", "budget", "regime", "val_target")
MAX_REGIME_TEXT = 2_000


@dataclass(frozen=True)
class Regime:
    baseline: TrainConfig  # the study's baseline with this factor's overrides
    changes: dict[str, Any] = field(default_factory=dict)  # fields that differ from the study's
    text: str = ""  # why the factor runs here (printed by the report)
    val_target: float | None = None  # None: the study's


def build_config(
    base: Mapping[str, Any], raw: Mapping[str, Any], budget: Mapping[str, Any], where: str
) -> TrainConfig:
    """``base | raw | budget`` as a config; on failure the one value at fault is named when it
    is wrong on its own (``where.baseline.lr``), else the combination (``where.baseline``)."""
    check_values(raw, _template(f"{where}.baseline"))
    check_values(budget, _template(f"{where}.budget"))
    try:
        return config(dict(base) | dict(raw) | dict(budget), f"{where}.baseline")
    except CnnlabError:
        for section, values in (("budget", budget), ("baseline", raw)):
            for key, value in values.items():
                config(dict(base) | {key: value}, f"{where}.{section}.{key}")
        raise


def _template(where: str) -> str:
    """``where`` as a ``check_values`` template (it formats ``{field}``)."""
    return where.replace("{", "{{").replace("}", "}}") + ".{field}"


def mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        bad(where, f"must be a mapping of {what}, got {show(value)}")
    return dict(value)


def parse_regime(fdef: dict[str, Any], study: TrainConfig, where: str) -> Regime:
    """Pop a factor's regime fields from ``fdef`` and build its baseline."""
    raw = mapping(fdef.pop("baseline", None), f"{where}.baseline", "config fields")
    budget = mapping(fdef.pop("budget", None), f"{where}.budget", "train_limit, epochs, val_size")
    text = fdef.pop("regime", "")
    target = fdef.pop("val_target", None)
    no_unknown(raw, CONFIG_FIELDS - {"seed"}, f"{where}.baseline")
    no_unknown(budget, BUDGET_KEYS, f"{where}.budget")
    if not isinstance(text, str) or len(text) > MAX_REGIME_TEXT:
        bad(f"{where}.regime", f"must be text of at most {MAX_REGIME_TEXT} characters")
    if target is not None and (not is_number(target) or not 0 < target <= 1):
        bad(f"{where}.val_target", f"must be a validation accuracy in (0, 1], got {show(target)}")
    base = study.to_dict()
    baseline = build_config(base, raw, budget, where) if raw or budget else study
    changes = {k: v for k, v in baseline.to_dict().items() if base.get(k) != v}
    return Regime(baseline, changes, " ".join(text.split()),
                  None if target is None else float(target))  # fmt: skip
