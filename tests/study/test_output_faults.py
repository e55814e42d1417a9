"""Issue 27, the output side of ``cnnlab study``: no output lands on a file the user owns, and
commands that only read write nothing.

Each repro runs the real CLI and checks: exit 2, one ``cnnlab: error:`` line, no traceback,
every watched file byte-identical afterwards. Unwritable folders: the tests run as root, so
they write under ``/sys``, where the kernel refuses to create a file for anyone (EACCES).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

UNWRITABLE = Path("/sys/cnnlab-cannot-write-here.md")


def files_of(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file()}


def one_line_error(r) -> str:
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("cnnlab: error: ")
    return r.stderr


@pytest.fixture
def study_copy(finished_fake_study, tmp_path):
    """A private copy of the finished fake study (these tests must be free to break it)."""
    db = tmp_path / "s.db"
    shutil.copy(Path(finished_fake_study["url"].removeprefix("sqlite:///")), db)
    Path(f"{db}.lock").touch()  # the study lock, as any use of the storage leaves it
    return db


def _compare(run_cli, db: Path, *options: str):
    url = f"sqlite:///{db}"
    return run_cli("study", "compare", url, "fake", url, "fake", *options)


def test_compare_never_writes_onto_the_study_database(run_cli, study_copy):
    """Repro 1: ``--out s.db`` turned a study database into a Markdown file."""
    before = files_of(study_copy.parent)
    for extra in ((), ("--overwrite",)):
        line = one_line_error(_compare(run_cli, study_copy, "--out", str(study_copy), *extra))
        assert "the storage of a study" in line
    assert files_of(study_copy.parent) == before


def test_compare_replaces_an_existing_file_only_with_overwrite(run_cli, study_copy, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("a user's notes\n")
    line = one_line_error(_compare(run_cli, study_copy, "--out", str(notes)))
    assert "exists" in line and "--overwrite" in line
    assert notes.read_text() == "a user's notes\n"
    r = _compare(run_cli, study_copy, "--out", str(notes), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert notes.read_text().startswith("#")


def test_compare_into_an_unwritable_folder_is_one_line(run_cli, study_copy):
    """Repro 9: a PermissionError traceback."""
    line = one_line_error(_compare(run_cli, study_copy, "--out", str(UNWRITABLE)))
    assert "Permission denied" in line or "permission denied" in line
    assert not UNWRITABLE.exists()


def test_status_of_an_empty_database_file_writes_nothing_into_it(run_cli, tmp_path):
    """Repro 12: ``study status`` wrote Optuna's schema into a 0-byte ``.db``."""
    db = tmp_path / "empty.db"
    db.touch()
    line = one_line_error(run_cli("study", "status", "--storage", f"sqlite:///{db}"))
    assert "empty" in line
    assert db.stat().st_size == 0


def test_a_symlinked_study_lock_is_one_line_and_its_target_untouched(run_cli, study_copy):
    """Repro 3: a planted link as the study lock gave an OSError traceback (or wrote through)."""
    victim = study_copy.parent / "victim.txt"
    victim.write_text("a user's file\n")
    Path(f"{study_copy}.lock").unlink(missing_ok=True)
    Path(f"{study_copy}.lock").symlink_to(victim)
    before = files_of(study_copy.parent)
    line = one_line_error(run_cli("study", "status", "--storage", f"sqlite:///{study_copy}"))
    assert "symbolic link" in line
    assert files_of(study_copy.parent) == before


def test_a_report_never_goes_into_the_folder_of_its_storage(run_cli, study_copy):
    before = files_of(study_copy.parent)
    url = f"sqlite:///{study_copy}"
    r = run_cli("study", "report", "--storage", url, "--out", str(study_copy.parent))
    one_line_error(r)
    assert files_of(study_copy.parent) == before
