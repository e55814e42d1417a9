"""``run_main``, the in-process command line of the fault tests, shows what a child's stderr
would: if it hid a warning, a stray log record or a traceback, a "one error line and nothing
else" test run through it could not fail."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import warnings

from cnnlab_testing import cnnlab_env, run_main


def noisy_app(**_):
    warnings.warn("a library's warning", UserWarning, stacklevel=1)
    warnings.warn("hidden in a fresh interpreter too", DeprecationWarning, stacklevel=1)
    logging.getLogger("some.library").warning("a record no handler takes")
    print("to stdout")
    return 0


def test_warnings_and_unhandled_log_records_reach_stderr():
    code, out, err = run_main("--version", patches={"cnnlab.cli.app": noisy_app})
    assert code == 0 and out == "to stdout\n"
    assert "UserWarning: a library's warning" in err
    assert "a record no handler takes" in err
    assert "DeprecationWarning" not in err


def test_a_child_prints_the_same_warning_and_record(tmp_path):
    """The reference: the same app in a fresh interpreter (defined in a module, as cnnlab's
    code is, not in ``__main__``, where Python shows DeprecationWarnings)."""
    (tmp_path / "noisy.py").write_text(
        "import logging, warnings\n\n\n" + inspect.getsource(noisy_app)
    )
    script = (
        "import cnnlab.cli, noisy; cnnlab.cli.app = noisy.noisy_app; cnnlab.cli.main(['--version'])"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        env=cnnlab_env(path=[tmp_path]), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == 0 and child.stdout == "to stdout\n"
    assert "UserWarning: a library's warning" in child.stderr
    assert "a record no handler takes" in child.stderr
    assert "DeprecationWarning" not in child.stderr


def test_an_uncaught_exception_is_a_traceback_and_exit_1():
    def broken(**_):
        raise RuntimeError("a bug")

    code, _, err = run_main("--version", patches={"cnnlab.cli.app": broken})
    assert code == 1 and "Traceback" in err and "RuntimeError: a bug" in err


def test_cwd_umask_environment_and_patches_hold_only_during_the_call(tmp_path):
    before = (os.getcwd(), dict(os.environ), os.umask(0o022))
    os.umask(before[2])

    def app(**_):
        assert os.getcwd() == str(tmp_path) and os.umask(0o077) == 0o027
        os.environ["CNNLAB_SET_BY_A_COMMAND"] = "1"
        return 0

    assert run_main("--version", cwd=tmp_path, umask=0o027, patches={"cnnlab.cli.app": app})[0] == 0
    mask = os.umask(before[2])
    assert (os.getcwd(), dict(os.environ), mask) == before
