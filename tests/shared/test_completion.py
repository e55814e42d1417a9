"""Options are discoverable: the help lists every fixed set of values, and the shell completes
commands, options and those values (``cnnlab --install-completion``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from cnnlab.cli import app, main
from cnnlab_testing import cnnlab_env

CNNLAB = f"{sys.executable} -m cnnlab"


def env(**extra: str) -> dict[str, str]:
    """The environment of a ``cnnlab`` subprocess running the code under test."""
    return cnnlab_env({"SHELL": "/bin/bash", **extra})


def in_bash(command: str, **extra: str) -> subprocess.CompletedProcess:
    # `; exit $?` keeps bash in the process tree (a lone command would be exec'd): Typer finds
    # the shell to complete for by walking up to the first shell among the parent processes.
    return subprocess.run(
        ["/bin/bash", "-c", f"{command}; exit $?"],
        capture_output=True, text=True, timeout=60, env=env(**extra),
    )  # fmt: skip


def complete(words: str) -> list[str]:
    """What bash would offer after ``words`` (the completion protocol Typer's script uses)."""
    parts = words.split(" ")
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab"],
        capture_output=True, text=True, timeout=60,
        env=env(_CNNLAB_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1)),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_show_completion_prints_a_bash_script_that_completes_cnnlab():
    result = in_bash(f"{CNNLAB} --show-completion")
    assert result.returncode == 0, result.stderr
    assert "_CNNLAB_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _cnnlab_completion cnnlab" in result.stdout


def test_install_completion_writes_the_script_and_sources_it_from_bashrc(tmp_path):
    (tmp_path / ".bashrc").write_text("# the user's own settings\n")
    result = in_bash(f"{CNNLAB} --install-completion", HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "cnnlab.sh"
    assert "_CNNLAB_COMPLETE=complete_bash" in script.read_text()
    bashrc = (tmp_path / ".bashrc").read_text()
    assert bashrc.startswith("# the user's own settings") and f"source '{script}'" in bashrc


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("cnnlab tr", ["train", "transfer"]),
        ("cnnlab predict --invert ", ["auto", "yes", "no"]),
        ("cnnlab train --optimizer n", ["nesterov", "nadam"]),
        ("cnnlab train --preset ", ["tutorial", "fast", "strong"]),
        ("cnnlab study plan --profile s", ["smoke", "standard"]),
        ("cnnlab transfer predict --device c", ["cpu", "cuda"]),
    ],
)
def test_the_shell_completes_commands_and_the_values_of_options(words, expected):
    assert complete(words) == expected


def options_with_fixed_values() -> list[tuple[list[str], str, list[str]]]:
    """(command path, option, values) of every option whose completion is a fixed list."""
    found = []

    def walk(command, path: list[str]) -> None:
        names = command.list_commands(None) if hasattr(command, "list_commands") else []
        for name in names:  # get_command imports a sub-command's module (cnnlab.cli.COMMANDS)
            walk(command.get_command(None, name), [*path, name])
        if names:
            return
        ctx = command.make_context(" ".join(["cnnlab", *path]), [], resilient_parsing=True)
        for param in command.params:
            if getattr(param, "is_flag", False) or param.name == "help":
                continue
            items = param.shell_complete(ctx, "")
            if items and {item.type for item in items} == {"plain"}:  # not file names
                found.append((path, param.opts[0], [item.value for item in items]))

    walk(typer.main.get_command(app), [])
    return found


def test_help_lists_the_values_of_every_option_that_has_a_fixed_set(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    options = options_with_fixed_values()
    commands = {tuple(path) for path, _, _ in options}
    assert {("predict",), ("demo",), ("study", "run"), ("transfer", "evaluate")} <= commands
    for path, option, values in options:
        main([*path, "--help"])
        lines = capsys.readouterr().out.splitlines()
        line = next(x for x in lines if x.lstrip("│* ").startswith(f"{option} "))
        assert "|".join(values) in line, f"cnnlab {' '.join(path)} --help: {line.strip()}"


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["predict", ".", "a.png", "--invert", "maybe"], "'auto', 'yes', 'no'"),
        (["study", "plan", "--profile", "quik"], "'quick', 'smoke', 'standard'"),
        (["transfer", "evaluate", ".", ".", "--device", "gpu"], "'auto', 'cpu', 'cuda', 'mps'"),
        (["demo", "--profile", "huge"], "'quick', 'smoke', 'standard'"),
    ],
)
def test_a_typo_is_refused_in_one_line_that_lists_the_values(args, listed, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: Invalid value"), lines
    assert f"is not one of {listed}." in lines[0] and "Value error" not in lines[0]
