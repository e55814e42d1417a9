"""Options generated from config declarations: names, flags, defaults, parsing and help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from cnnlab.configs import FrozenConfig, check_fields, config_options, option


@dataclass(frozen=True)
class Toy(FrozenConfig):
    widths: tuple[int, ...] = option((8, 16), "Widths.", ge=1, le=64)
    mode: Literal["fast", "slow"] = option("fast", "Mode.")
    colour: str = option("red", "Colour.", choices=("red", "green"))
    rate: float | None = option(None, "Rate.", gt=0, le=1)
    steps: int = option(3, "Steps.", ge=1, le=10)
    shuffle: bool = option(True, "Shuffle.")
    pool: bool = option(False, "Pool.", flag="--pool/--flatten")

    def __post_init__(self) -> None:
        check_fields(self)


def toy_app(defaults: bool) -> tuple[typer.Typer, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []
    app = typer.Typer()

    @app.command()
    @config_options(Toy, defaults=defaults)
    def run(
        name: str = typer.Argument(...),
        *,
        config_fields: dict[str, Any],
        verbose: bool = typer.Option(False),
    ) -> None:
        received.append({"name": name, "verbose": verbose, **config_fields})

    return app, received


def invoke(app: typer.Typer, *args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_only_the_options_given_reach_the_command_when_defaults_are_the_callers():
    app, received = toy_app(defaults=False)
    invoke(app, "a", "--widths", "4, 8,16", "--no-shuffle", "--flatten", "--rate", "0.5")
    assert received == [
        {"name": "a", "verbose": False, "widths": (4, 8, 16), "shuffle": False, "pool": False,
         "rate": 0.5}
    ]  # fmt: skip
    invoke(app, "b", "--pool", "--shuffle", "--mode", "slow")
    assert received[1] == {"name": "b", "verbose": False, "pool": True, "shuffle": True,
                           "mode": "slow"}  # fmt: skip


def test_with_the_dataclass_defaults_every_field_arrives_and_builds_the_default_config():
    app, received = toy_app(defaults=True)
    invoke(app, "a", "--verbose")
    fields = {k: v for k, v in received[0].items() if k not in ("name", "verbose")}
    assert Toy(**fields) == Toy()
    assert set(fields) == set(Toy.__dataclass_fields__) - {"rate"}  # None: not given


def test_help_lists_choices_flags_and_dataclass_defaults():
    app, _ = toy_app(defaults=True)
    out = invoke(app, "--help").output
    for text in ("[fast|slow]", "[red|green]", "--widths", "N,N,...", "--flatten", "--no-shuffle"):
        assert text in out
    assert "[default: 8,16]" in out and "[default: 3]" in out
    app, _ = toy_app(defaults=False)
    assert "[default: 3]" not in invoke(app, "--help").output


def test_a_malformed_list_is_an_error_naming_the_flag():
    app, _ = toy_app(defaults=False)
    result = CliRunner().invoke(app, ["a", "--widths", "8,x"])
    assert "invalid --widths: expected whole numbers like 32,64, got '8,x'" in str(result.exception)


def test_a_command_must_say_where_the_options_go_and_not_declare_them_twice():
    with pytest.raises(TypeError, match="config_fields"):
        config_options(Toy)(lambda steps=1: None)
    with pytest.raises(TypeError, match="declares config fields itself"):

        def twice(*, config_fields: dict, steps: int = 1) -> None: ...

        config_options(Toy)(twice)
