"""Helpers every test folder shares (importable as ``cnnlab_testing``: pyproject's pytest
``pythonpath`` puts tests/ on the path; this module imports no framework).

- ``cnnlab(*args)``: the command line in its own process, running this checkout's code;
- ``call_main(capsys, *args)``: the same in this process (faster; no start-up to test);
- ``run_main(*args, cwd=..., umask=...)``: the same in this process without ``capsys``, with
  what a child's stderr would also show (Python warnings, unhandled log records, a traceback);
- ``cli_error_line(capsys, *args)``: the one error line of a refused command (exit 2);
- ``markdown_tables(text)``: the Markdown tables of a report, by heading;
- ``as_a_background_job``: a child's ``preexec_fn`` that starts it as a shell starts ``cmd &``;
- ``assert_epochs_tracked(...)``: a run's history.csv logged to MLflow epoch by epoch;
- ``headless_chromium()``: the one Chromium set-up of the browser tests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

# The sources under test (found without importing them): the folder that holds cnnlab/.
SRC = str(Path(importlib.util.find_spec("cnnlab").origin).parents[1])


def cnnlab_env(
    env: Mapping[str, str] | None = None, unset: Iterable[str] = (), path: Iterable[str] = ()
) -> dict[str, str]:
    """This process's environment for a child: ``path`` then this checkout's sources first on
    PYTHONPATH (an installed cnnlab never wins), help text one line per option, ``env``
    added and the names in ``unset`` removed."""
    base = {k: v for k, v in os.environ.items() if k not in set(unset)}
    paths = [*map(str, path), SRC, os.environ.get("PYTHONPATH", "")]
    base["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths if p)
    base["COLUMNS"] = "250"  # help text on one line per option
    return {**base, **(env or {})}


def cnnlab(
    *args,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    path: Iterable[str] = (),
    timeout: float = 300,
    **run,
) -> subprocess.CompletedProcess:
    """``cnnlab ARGS`` in its own process (``python -m cnnlab``), output captured as text.
    ``env``/``unset``/``path``: see ``cnnlab_env``; ``run``: more ``subprocess.run`` options."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)], cwd=cwd,
        env=cnnlab_env(env, unset, path), capture_output=True, text=True, timeout=timeout,
        **run,
    )  # fmt: skip


class CliResult(NamedTuple):
    """What ``call_main`` gives: named like ``subprocess.CompletedProcess``'s fields, and a
    tuple ``(code, out, err)``."""

    returncode: int
    stdout: str
    stderr: str


def call_main(capsys, *args) -> CliResult:
    """``cnnlab ARGS`` through ``cnnlab.cli.main`` in this process (exit code, stdout and
    stderr read from ``capsys``)."""
    from cnnlab.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return CliResult(code, out, err)


_DEFAULT_WARNINGS = (  # the filters of a fresh interpreter (``python -W`` unset): what it prints
    ("ignore", DeprecationWarning),
    ("ignore", PendingDeprecationWarning),
    ("ignore", ImportWarning),
    ("ignore", ResourceWarning),
)


def run_main(
    *args,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    umask: int | None = None,
    patches: Mapping[str, object] | None = None,
) -> CliResult:
    """``cnnlab ARGS`` through ``cnnlab.cli.main`` in this process, as a child would see it.

    Seconds instead of a fresh process's torch/TensorFlow start-up each, with the same stderr
    a child would show: Python warnings are printed there as a fresh interpreter prints them
    (once per place, Deprecation/Import/Resource warnings ignored), log records no handler
    takes go there (``logging.lastResort``), and an uncaught exception is a traceback and exit
    code 1. ``cwd``, ``env`` (added to the environment) and ``umask`` hold during the call only;
    so do any other change to the environment and
    ``patches`` (``{"module.attr": replacement}``, e.g. ``{"os.fsync": full}``), restored after.
    """
    import io
    import logging
    import traceback
    import warnings

    from cnnlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, last_resort = root.handlers[:], logging.lastResort
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    old_mask = os.umask(umask) if umask is not None else None
    code = 0
    with contextlib.ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for action, category in _DEFAULT_WARNINGS:
            warnings.filterwarnings(action, category=category)
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        for target, value in (patches or {}).items():
            mp.setattr(target, value)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        root.handlers = [h for h in handlers if type(h).__module__.split(".")[0] != "_pytest"]
        logging.lastResort = logging.StreamHandler(err)
        logging.lastResort.setLevel(logging.WARNING)
        os.environ.update(env or {})
        try:
            if cwd is not None:
                os.chdir(cwd)
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # what an uncaught exception prints in a child
            err.write(traceback.format_exc())
            code = 1
        finally:
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)
            if old_mask is not None:
                os.umask(old_mask)
            root.handlers, logging.lastResort = handlers, last_resort
    for w in caught:
        err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_error_line(capsys, *args) -> str:
    """``call_main(capsys, *args)`` refused as the contract says: exit 2 and one
    ``cnnlab: error:`` line on stderr, which is returned."""
    code, _, err = call_main(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("cnnlab: error: "), err
    return lines[0]


def as_a_background_job() -> None:
    """``preexec_fn`` for a child started as a shell starts ``cmd &`` in a script (no job
    control): SIGINT ignored, which Python keeps."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def markdown_tables(text: str) -> dict:
    """{heading: (header, rows)} of every Markdown table under a ``### `` heading; a table
    before any heading is under ``None``."""
    tables, heading = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            heading = line[4:]
        elif line.startswith("| ") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if heading not in tables:
                tables[heading] = (cells, [])
            else:
                tables[heading][1].append(cells)
    return tables


def assert_epochs_tracked(client, run_id: str, run_dir: Path, epochs: int) -> None:
    """Each per-epoch column of the run's history.csv is one MLflow metric with one value per
    epoch, at steps 1..epochs, equal to the CSV's."""
    import csv

    with (run_dir / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        logged = client.get_metric_history(run_id, name)
        assert [m.step for m in logged] == list(range(1, epochs + 1)), name
        assert [m.value for m in logged] == pytest.approx([float(r[name]) for r in history])


@contextlib.contextmanager
def headless_chromium() -> Iterator:
    """A headless Chromium (Selenium) that keeps the page's console log; skips the test
    when Chromium or its driver is missing (.ci/run installs both)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,1600")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


# -- the published-results scripts (docs/results/*.sh, docs/findings/v3/publish.sh) --------


def stand_in_cnnlab(folder: Path, script: str) -> dict[str, str]:
    """A stand-in ``cnnlab`` (the bash ``script``, which records its calls in ``$CALLS``)
    written into ``folder``: the environment that makes a published-results script use it."""
    exe = folder / "cnnlab"
    exe.write_text(script)
    exe.chmod(0o755)
    return {"CNNLAB": str(exe), "CALLS": str(folder / "calls.log")}


def recorded_calls(env: Mapping[str, str]) -> list[list[str]]:
    """The argument lists the stand-in was called with, in order."""
    import shlex

    return [shlex.split(line) for line in Path(env["CALLS"]).read_text().splitlines()]


def run_script(script: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)  # fmt: skip
