"""docs/findings/v3/publish.sh and supplement/publish.sh, the commands behind the published
findings of study version 3: which commands they run, in which order and into which files, and
that bad input is one line and exit 2. A stand-in ``cnnlab`` records the calls; each recorded
command then goes through the real command line (``test_the_commands_parse``)."""

import subprocess
from pathlib import Path

import pytest

from cnnlab_testing import recorded_calls, run_main, run_script, stand_in_cnnlab

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "findings" / "v3" / "publish.sh"
STAND_IN = '#!/bin/bash\necho "$@" >> "$CALLS"\n'
V2 = "docs/findings/v2/standard/studies.db"
V3 = "docs/findings/v3/studies.db"
QUICK = "docs/findings/v3/quick/studies.db"


def _storages(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")


def _run(root: Path, **env: str) -> subprocess.CompletedProcess:
    return run_script(SCRIPT, root, **env)


@pytest.fixture
def stand_in(tmp_path):
    return stand_in_cnnlab(tmp_path, STAND_IN)


def test_report_then_v2_against_v3_then_quick_against_standard(tmp_path, stand_in):
    _storages(tmp_path, V2, V3)
    done = _run(tmp_path, **stand_in)
    assert done.returncode == 0, done.stderr
    report, changed, quick, consistency = recorded_calls(stand_in)
    assert report[:2] == ["study", "report"] and report[report.index("--storage") + 1] == (
        f"sqlite:///{V3}"
    )
    assert report[report.index("--out") + 1] == "docs/findings/v3/report"
    assert changed[:2] == ["study", "compare"]
    assert changed[2:6] == [f"sqlite:///{V2}", "standard", f"sqlite:///{V3}", "standard"]
    assert changed[changed.index("--out") + 1] == "docs/findings/v3/v2-vs-v3.md"
    assert quick[0] == "demo" and quick[quick.index("--storage") + 1] == f"sqlite:///{QUICK}"
    assert consistency[2:6] == [f"sqlite:///{QUICK}", "quick", f"sqlite:///{V3}", "standard"]
    assert all("--overwrite" in c for c in (report, changed, quick, consistency))
    assert done.stdout.count("+ ") == 4 and done.stdout.count(" s)") == 4  # each timed


def test_missing_storage_or_command_is_one_line_and_exit_2(tmp_path, stand_in):
    _storages(tmp_path, V2)
    done = _run(tmp_path, **stand_in)
    assert done.returncode == 2 and not Path(stand_in["CALLS"]).exists()
    assert done.stderr.count("\n") == 1 and f"{V3} not found" in done.stderr
    _storages(tmp_path, V3)
    done = _run(tmp_path, CNNLAB=str(tmp_path / "none"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no cnnlab command" in done.stderr


def test_the_commands_parse(tmp_path, stand_in):
    """Every command the script writes gets past cnnlab's option parsing: on empty storage files
    each stops at the storage, not at a flag (an unknown flag would stop first)."""
    _storages(tmp_path, V2, V3)
    assert _run(tmp_path, **stand_in).returncode == 0
    calls = [c for c in recorded_calls(stand_in) if c[0] != "demo"]  # demo would train: see below
    for call in calls:
        code, _, err = run_main(*call, cwd=tmp_path)
        assert code == 2 and "No such option" not in err and "Usage" not in err, (call, err)
    demo = next(c for c in recorded_calls(stand_in) if c[0] == "demo")
    code, _, err = run_main(*demo, "--profile", "no-such-profile", cwd=tmp_path)
    assert code == 2 and "no-such-profile" in err and "No such option" not in err
    code, _, err = run_main(*calls[0], "--no-such-flag", cwd=tmp_path)
    assert code == 2 and "No such option" in err  # the control: a bad flag is caught first


SUPPLEMENT = SCRIPT.parent / "supplement" / "publish.sh"
SUPPLEMENT_DB = "docs/findings/v3/supplement/studies.db"


def test_the_supplement_reports_its_two_studies_then_compares_with_standard(tmp_path, stand_in):
    _storages(tmp_path, V3)
    done = run_script(SUPPLEMENT, tmp_path, **stand_in)
    assert done.returncode == 2 and f"{SUPPLEMENT_DB} not found" in done.stderr
    assert done.stderr.count("\n") == 1 and not Path(stand_in["CALLS"]).exists()
    _storages(tmp_path, SUPPLEMENT_DB)
    done = run_script(SUPPLEMENT, tmp_path, **stand_in)
    assert done.returncode == 0, done.stderr
    pilot, report, compare = recorded_calls(stand_in)
    db = f"sqlite:///{SUPPLEMENT_DB}"
    assert pilot[:2] == ["study", "report"] and pilot[pilot.index("--name") + 1] == "pilot"
    assert report[report.index("--name") + 1] == "supplement"
    assert {c[c.index("--storage") + 1] for c in (pilot, report)} == {db}
    assert compare[2:6] == [f"sqlite:///{V3}", "standard", db, "supplement"]
    assert all("--overwrite" in c for c in (pilot, report, compare))
    for call in (pilot, report, compare):  # past the option parsing, stopped at the storage
        code, _, err = run_main(*call, cwd=tmp_path)
        assert code == 2 and "No such option" not in err and "Usage" not in err, (call, err)
