"""Checks shared by the parts of a spec: each failure is one line naming where the spec
went wrong (``invalid spec field factors.lr.levels[2]: ...``).

Values are checked here for type and finiteness where the spec knows the field's place, and
then built into a ``TrainConfig`` (``from_dict``), whose own validation decides the ranges.
A spec is also refused when it plans an absurd amount of work: ``epochs: 1e26`` was accepted
and never ended, ``seeds: 100000000`` built its seed list before failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import TrainConfig
from cnnlab.study.spec.names import show

MAX_SEEDS = 1_000
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seed range
MAX_EPOCHS = 1_000
MAX_TRIALS = 10_000  # planned trials before identical ones are shared
MAX_WHOLE = 2**32  # a bigger int is no count of anything here and overflows float arithmetic
CONFIG_FIELDS = frozenset(TrainConfig.__dataclass_fields__)


def bad(where: str, why: str) -> NoReturn:
    raise CnnlabError(f"invalid spec field {where}: {why}")


def no_unknown(data: Mapping[Any, Any], known: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise CnnlabError(
            f"unknown field(s) in {where}: {', '.join(show(u, 40) for u in unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_WHOLE


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return is_whole(value) if isinstance(value, int) else math.isfinite(value)


def seeds(value: Any, where: str) -> tuple[int, ...]:
    """A count (``3`` -> 0, 1, 2) or a list of distinct seeds."""
    if is_whole(value):
        if not 1 <= value <= MAX_SEEDS:
            bad(where, f"need 1 to {MAX_SEEDS} seeds, got {value}")
        return tuple(range(value))
    if not isinstance(value, list | tuple) or not value:
        bad(where, f"must be a count or a non-empty list of integers, got {show(value)}")
    if len(value) > MAX_SEEDS:
        bad(where, f"at most {MAX_SEEDS} seeds, got {len(value)}")
    for i, s in enumerate(value):
        if not is_whole(s) or not 0 <= s <= MAX_SEED:
            bad(f"{where}[{i}]", f"a seed is a whole number from 0 to {MAX_SEED}, got {show(s)}")
    if len(set(value)) != len(value):
        bad(where, f"seeds must be distinct, got {show(list(value))}")
    return tuple(value)


def _field_kinds() -> dict[str, str]:
    """TrainConfig field -> what the spec may write there, from its annotation."""
    kinds = {}
    for name, f in TrainConfig.__dataclass_fields__.items():
        ann = str(f.type).replace(" | None", "")
        kind = {"int": "int", "float": "float", "bool": "bool", "str": "str"}.get(ann)
        if ann.startswith("Literal"):
            kind = "str"
        elif ann.startswith("tuple[int"):
            kind = "ints"
        kinds[name] = (kind or "any") + ("?" if "None" in str(f.type) else "")
    return kinds


FIELD_KINDS = _field_kinds()
_KIND_TEXT = {
    "int": "a whole number",
    "float": "a finite number",
    "bool": "true or false",
    "str": "text",
    "ints": "a list of whole numbers",
}


def _fits(kind: str, value: Any) -> bool:
    if kind.endswith("?"):
        return value is None or _fits(kind[:-1], value)
    return {
        "int": is_whole,
        "float": is_number,
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "ints": lambda v: isinstance(v, list | tuple) and all(is_whole(x) for x in v),
    }.get(kind, lambda v: True)(value)


def check_values(values: Mapping[str, Any], where: str) -> None:
    """Each config value the spec writes has its field's type (finite, if a number)."""
    for name, value in values.items():
        kind = FIELD_KINDS[name]
        if not _fits(kind, value):
            text = _KIND_TEXT.get(kind.rstrip("?"), "valid")
            text += " or null" if kind.endswith("?") else ""
            bad(where.format(field=name), f"{name} must be {text}, got {show(value)}")
    epochs = values.get("epochs")
    if is_whole(epochs) and epochs > MAX_EPOCHS:
        bad(where.format(field="epochs"), f"at most {MAX_EPOCHS} epochs, got {epochs}")


def config(values: Mapping[str, Any], where: str) -> TrainConfig:
    """``TrainConfig.from_dict(values)``; its one-line error prefixed with where in the spec."""
    try:
        return TrainConfig.from_dict(dict(values))
    except (CnnlabError, TypeError, ValueError, ArithmeticError) as e:
        bad(where, str(e) or type(e).__name__)
