"""What every cnnlab config shares: frozen dataclasses whose fields declare their own options.

Each field is declared once, with ``option(default, help, ...)``: its type (the annotation),
default, allowed values or range, and help. Everything else is derived from that declaration:

- ``check_fields``: the checks every config runs when it is built, whatever the source (the
  CLI, a study spec, ``config.json``): the right type, a finite number, in range, one of the
  choices. Rules that relate two fields stay in each config's own ``validate``.
- ``config_options``: the Typer options of the command that builds the config, with their
  help, defaults and choice lists.

Errors name the flag as a user types it (``invalid --epochs: must be >= 1, got 0``), also for
values that came from a file: one style everywhere, and the flag is what the help lists.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import operator
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn, Self

import typer

from cnnlab.errors import CnnlabError

_META = "cnnlab.option"


@dataclasses.dataclass(frozen=True)
class Declared:
    """One config field as declared: what ``option`` was given, plus its resolved type."""

    name: str
    kind: type  # bool, int, float, str, or tuple (a tuple of whole numbers)
    optional: bool  # None is a valid value
    default: Any
    help: str
    choices: tuple[str, ...] | None
    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None
    flag: str | None  # Typer declaration when not the field's own name, e.g. "--a/--b"

    @property
    def cli_name(self) -> str:
        return flag(self.name)


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    flag: str | None = None,
) -> Any:
    """Declare a config field: default, help, allowed values (``choices``; a ``Literal``
    annotation gives them too) or range (``ge``/``gt``/``le``/``lt``, applied to every number
    of a tuple), and, for booleans, the CLI flag pair when it is not ``--name/--no-name``."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    return dataclasses.field(default=default, metadata={_META: meta | {"flag": flag}})


def flag(name: str) -> str:
    """The command-line spelling of a field name: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def invalid(name: str, why: str) -> NoReturn:
    """The one error style for a bad value: ``invalid --flag-name: why``."""
    raise CnnlabError(f"invalid {flag(name)}: {why}")


@functools.cache
def declarations(cls: type) -> tuple[Declared, ...]:
    """The declared fields of config class ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if _META not in f.metadata:  # a programming error, caught when the CLI is built
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with option()")
        kind, optional, literal = _resolve(hints[f.name])
        meta = dict(f.metadata[_META])
        meta["choices"] = meta["choices"] or literal
        out.append(Declared(f.name, kind, optional, f.default, **meta))
    return tuple(out)


def _resolve(hint: Any) -> tuple[type, bool, tuple[str, ...] | None]:
    """(kind, optional, Literal choices) of an annotation; only the types configs use."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        kind, _, choices = _resolve(inner)
        return kind, True, choices
    if origin is Literal:
        return str, False, args
    if origin is tuple and args == (int, ...):
        return tuple, False, None
    if hint in (bool, int, float, str):
        return hint, False, None
    raise TypeError(f"config fields cannot have type {hint!r}")  # a programming error


# -- checks -------------------------------------------------------------------------------------

_EXPECTED = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "text",
    tuple: "a list of one or more whole numbers",
}


def check_fields(config: Any) -> None:
    """Check each field of ``config`` against its declaration; the first failure is an error."""
    for d in declarations(type(config)):
        value = getattr(config, d.name)
        if value is None and d.optional:
            continue
        if not _has_kind(d.kind, value):
            invalid(d.name, f"must be {_EXPECTED[d.kind]}, got {_show(value)}")
        if d.kind is float and not _finite(value):
            invalid(d.name, f"must be a finite number, got {_show(value)}")
        if d.choices is not None and value not in d.choices:
            invalid(d.name, f"{_show(value)} is not one of {', '.join(d.choices)}")
        for number in value if d.kind is tuple else (value,):
            _check_range(d, number)


def _has_kind(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, never a count to a user
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real)
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, tuple) and len(value) > 0 and all(_has_kind(int, v) for v in value)


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond any float, e.g. 10**400
        return False


_BOUNDS = (("ge", operator.ge, ">="), ("gt", operator.gt, ">"), ("le", operator.le, "<="),
           ("lt", operator.lt, "<"))  # fmt: skip


def _check_range(d: Declared, value: Any) -> None:
    each = "each number " if d.kind is tuple else ""
    for attribute, holds, sign in _BOUNDS:
        bound = getattr(d, attribute)
        if bound is not None and not holds(value, bound):
            invalid(d.name, f"{each}must be {sign} {bound}, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FrozenConfig:
    """Mixin for frozen config dataclasses: ``replace``, ``to_dict`` and a strict ``from_dict``.

    Subclasses call ``check_fields(self)`` and then their cross-field rules in
    ``__post_init__``, so every way of building a config is checked the same way.
    """

    def replace(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()  # type: ignore[call-overload]
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from ``to_dict()`` output (or a spec file); anything wrong is one CnnlabError
        naming the field: an unknown name, a wrong type, a value out of range."""
        if not isinstance(data, Mapping):
            raise CnnlabError(f"a config must be a mapping of fields, got {_show(data)}")
        kinds = {d.name: d.kind for d in declarations(cls)}
        # escaped: a key holding a newline must not break the one-line error
        unknown = sorted(
            str(key).encode("unicode_escape").decode() for key in data if key not in kinds
        )
        if unknown:
            raise CnnlabError(f"unknown config field(s): {', '.join(unknown)}")
        values = {
            name: tuple(value) if kinds[name] is tuple and isinstance(value, list) else value
            for name, value in data.items()
        }
        return cls(**values)


# -- command-line options -----------------------------------------------------------------------


def config_options(cls: type, *, defaults: bool = True) -> Callable:
    """Give a Typer command one option per field of config class ``cls``.

    The command declares a keyword-only ``config_fields`` parameter; the generated options take
    its place (in the help too), and it receives the fields as a dict without the options that
    are None. With ``defaults=False`` every option defaults to None, "not given", so that the
    caller's own defaults (a preset) apply and the help shows none.
    """
    declared = declarations(cls)

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        if "config_fields" not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a keyword-only config_fields parameter")
        clash = {d.name for d in declared} & set(signature.parameters)
        if clash:
            raise TypeError(f"{command.__name__} declares config fields itself: {clash}")
        params = []
        for p in signature.parameters.values():
            if p.name == "config_fields":
                params += [_typer_parameter(d, defaults) for d in declared]
            else:  # keyword-only: the generated options may follow parameters without defaults
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))

        @functools.wraps(command)
        def with_config_fields(**kwargs: Any) -> Any:
            given = {}
            for d in declared:
                value = kwargs.pop(d.name)
                if value is not None:
                    given[d.name] = _parse_numbers(d.name, value) if d.kind is tuple else value
            return command(**kwargs, config_fields=given)

        # Typer reads the signature and the type hints: both describe the generated options.
        with_config_fields.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        with_config_fields.__annotations__ = {p.name: p.annotation for p in params}
        return with_config_fields

    return decorate


def _typer_parameter(d: Declared, defaults: bool) -> inspect.Parameter:
    if d.kind is bool:
        names = d.flag or f"{d.cli_name}/--no-{d.cli_name[2:]}"
        metavar = None
    else:
        names = d.flag or d.cli_name
        metavar = (
            f"[{'|'.join(d.choices)}]" if d.choices else "N,N,..." if d.kind is tuple else None
        )
    default = d.default if defaults else None
    if d.kind is tuple and default is not None:  # as it is written on the command line
        default = ",".join(map(str, default))
    info = typer.Option(
        default, names, help=d.help, metavar=metavar, shell_complete=_completer(d.choices)
    )
    cli_type = str if d.kind in (str, tuple) else d.kind
    return inspect.Parameter(
        d.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=cli_type | None
    )


def _completer(choices: tuple[str, ...] | None) -> Callable | None:
    """Shell completion of an option's choices (the value stays ``str``, so that a typo is
    refused by ``check_fields``, in the one error style)."""
    if choices is None:
        return None
    return lambda ctx, param, incomplete: [c for c in choices if c.startswith(incomplete)]


def _parse_numbers(name: str, text: str) -> tuple[int, ...]:
    """``"32,64"`` -> ``(32, 64)``: how a tuple field is written on the command line."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        invalid(name, f"expected whole numbers like 32,64, got {text!r}")
    if not values:
        invalid(name, "give at least one number, like 32,64")
    return values
