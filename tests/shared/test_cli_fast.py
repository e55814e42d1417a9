"""A command line that answers at once (issue 26): a wrong argument or path is refused before
TensorFlow or torch loads, and the help fits 80 columns without cutting an option name.

Asserted on what is imported, not on seconds: each command runs in its own process (this
test process may have imported anything), whose last line reports the frameworks loaded.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cnnlab_testing import cnnlab as run_cli
from cnnlab_testing import cnnlab_env

FRAMEWORKS = ("tensorflow", "keras", "torch", "torchvision", "sklearn")

# main(argv) in a child; after the one error line, the frameworks it had imported
PROBE = """
import sys
from cnnlab.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    loaded = [m for m in {frameworks!r} if m in sys.modules]
    print("loaded:", ",".join(loaded), "exit:", e.code)
"""


def probe(args: list[str], cwd) -> tuple[str, list[str], int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(frameworks=FRAMEWORKS), *args],
        cwd=cwd, env=cnnlab_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    *_, last = done.stdout.strip().splitlines()
    match = re.fullmatch(r"loaded: (\S*) exit: (\d+)", last)
    assert match, done.stdout
    return done.stderr, [m for m in match[1].split(",") if m], int(match[2])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "runs/nonexistent", "x.png"], "run directory not found: runs/nonexistent"),
        (["predict", "fm", "x.png"], "image not found: x.png"),
        (["predict", "tr", "x.png"], "tr is a transfer-learning run"),
        (["evaluate", "runs/nonexistent"], "run directory not found: runs/nonexistent"),
        (["train", "--data-dir", "/nonexistent", "--epochs", "1"], "Fashion-MNIST not found"),
        (["train", "--out", "fm"], "--out fm already holds files"),
        (["demo", "--single-run", "--data-dir", "/nonexistent"], "Fashion-MNIST not found"),
        (["demo", "--data-dir", "/nonexistent"], "Fashion-MNIST not found"),
        (["transfer", "train", "/nonexistent", "--out", "x"], "data folder not found"),
        (["transfer", "train", "data", "--out", "data/x"], "lies inside the data folder"),
        (["transfer", "predict", "runs/nonexistent", "x.png"], "checkpoint not found"),
        (["transfer", "predict", "tr", "x.png"], "not found: x.png"),
        (["transfer", "predict", "fm", "x.png"], "fm is a Fashion-MNIST run"),
        (["transfer", "evaluate", "tr", "/nonexistent"], "data folder not found: /nonexistent"),
        (["transfer", "export", "runs/nonexistent", "--out", "m.onnx"], "checkpoint not found"),
    ],
)
def test_errors_come_before_any_framework_loads(tmp_path, args, message):
    (tmp_path / "fm").mkdir()
    (tmp_path / "fm" / "model.keras").touch()  # a run of each kind (files only)
    (tmp_path / "tr").mkdir()
    (tmp_path / "tr" / "best.pt").touch()
    (tmp_path / "data").mkdir()
    stderr, loaded, code = probe(args, tmp_path)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("cnnlab: error: ") and message in stderr
    assert loaded == []


def test_a_failed_first_train_leaves_no_empty_runs_folder(tmp_path):
    result = run_cli("train", "--data-dir", "/nonexistent", "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert not (tmp_path / "runs").exists()


def test_a_failed_run_removes_only_the_folders_it_created(tmp_path):
    from cnnlab.runs import run_directory

    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), run_directory(tmp_path / "kept" / "new" / "deeper" / "r"):
        raise RuntimeError("the work failed")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


@pytest.mark.parametrize("command", [["train"], ["transfer", "train"], ["transfer", "predict"]])
def test_help_at_80_columns_shows_every_option_name_whole(command):
    result = run_cli(*command, "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0
    wide = run_cli(*command, "--help").stdout  # COLUMNS=250: one line per option
    names = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", wide))
    assert len(names) > 3
    text = result.stdout
    for name in names:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "<bool>" not in text


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_sub_command_module(args):
    from cnnlab.cli import COMMANDS

    modules = sorted({module for module, _, _ in COMMANDS.values()})
    code = (
        "import sys\nfrom cnnlab.cli import main\ntry:\n    main(sys.argv[1:])\n"
        f"finally:\n    print([m for m in {modules!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=cnnlab_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_the_help_lists_each_command_as_its_own_help_says():
    """The lines `cnnlab --help` shows before any sub-command module is imported are the
    lines the commands give once imported."""
    import typer

    from cnnlab.cli import COMMANDS, app

    group = typer.main.get_group(app)
    ctx = group.make_context("cnnlab", ["--help"], resilient_parsing=True)
    before = group.get_help(ctx)
    for name in COMMANDS:
        group.get_command(ctx, name)
    assert set(COMMANDS) <= set(group.commands)
    assert group.get_help(ctx) == before
