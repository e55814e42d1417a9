"""Run directories: built aside and renamed when complete, claimed exclusively, never replacing
what cnnlab did not write, cleaned after killed runs, umask-respecting, and disk-full safe."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.files import write_json
from cnnlab.runs import RUN_MARKER, run_directory

SRC = str(Path(__file__).resolve().parents[2] / "src")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def finished_run(out: Path, text: str = "old") -> Path:
    with run_directory(out) as tmp:
        (tmp / "model.keras").write_text(text)
    return out


def test_run_directory_appears_only_when_complete(tmp_path):
    out = tmp_path / "run"
    with run_directory(out) as tmp:
        write_json(tmp / "metrics.json", {"a": np.float32(1.5)})
        assert not out.exists()
    assert json.loads((out / "metrics.json").read_text()) == {"a": 1.5}
    assert names(tmp_path) == ["run"]  # no temporary or lock left behind


def test_every_run_directory_carries_the_cnnlab_marker(tmp_path):
    out = finished_run(tmp_path / "run")
    assert names(out) == [RUN_MARKER, "model.keras"]
    assert "cnnlab" in (out / RUN_MARKER).read_text()


def test_failed_run_leaves_nothing_and_keeps_the_old_run(tmp_path):
    out = finished_run(tmp_path / "run")
    with pytest.raises(RuntimeError), run_directory(out, overwrite=True) as tmp:
        (tmp / "model.keras").write_text("new")
        raise RuntimeError("training crashed")
    assert (out / "model.keras").read_text() == "old"
    assert names(tmp_path) == ["run"]


def test_overwrite_replaces_a_cnnlab_run_once_the_new_one_is_complete(tmp_path):
    out = finished_run(tmp_path / "run")
    with run_directory(out, overwrite=True) as tmp:
        (tmp / "model.keras").write_text("new")
        assert (out / "model.keras").read_text() == "old"
    assert (out / "model.keras").read_text() == "new"
    assert names(tmp_path) == ["run"]


def test_existing_files_are_not_replaced_without_consent(tmp_path):
    out = finished_run(tmp_path / "run")
    with pytest.raises(CnnlabError, match="already holds files"), run_directory(out):
        pass
    assert (out / "model.keras").read_text() == "old"


def test_overwrite_refuses_a_folder_that_cnnlab_did_not_write(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / "thesis.txt").write_text("x")
    with (
        pytest.raises(CnnlabError, match="not a cnnlab run that --overwrite may") as info,
        run_directory(out, overwrite=True),
    ):
        pytest.fail("the block must not run")
    assert "\n" not in str(info.value)
    assert names(out) == ["thesis.txt"] and (out / "thesis.txt").read_text() == "x"
    assert names(tmp_path) == ["p"]


def test_an_empty_folder_may_be_the_run_directory(tmp_path):
    (tmp_path / "run").mkdir()
    finished_run(tmp_path / "run")
    assert (tmp_path / "run" / "model.keras").read_text() == "old"


@pytest.mark.parametrize("out", [".", "..", "./", "sub/.."])
def test_the_current_directory_or_a_parent_is_never_a_run(tmp_path, monkeypatch, out):
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    with pytest.raises(CnnlabError, match="current directory"), run_directory(out, overwrite=True):
        pytest.fail("the block must not run")
    assert names(here) == ["notes.txt"] and names(tmp_path / "work") == ["here"]


def test_a_file_or_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(finished_run(tmp_path / "run"))
    with pytest.raises(CnnlabError, match="not a directory"), run_directory(tmp_path / "file"):
        pass
    with (
        pytest.raises(CnnlabError, match="symbolic link"),
        run_directory(tmp_path / "link", overwrite=True),
    ):
        pass
    assert (tmp_path / "run" / "model.keras").read_text() == "old"


def test_a_second_run_to_the_same_out_fails_while_the_first_is_in_progress(tmp_path):
    out = tmp_path / "race"
    with run_directory(out) as tmp:
        with (
            pytest.raises(CnnlabError, match="being written by another cnnlab run") as info,
            run_directory(out, overwrite=True),
        ):
            pytest.fail("the second run must not start")
        assert f"(pid {os.getpid()})" in str(info.value)
        (tmp / "model.keras").write_text("first")
    assert (out / "model.keras").read_text() == "first"
    with run_directory(out, overwrite=True) as tmp:  # the claim ends with the first run
        (tmp / "model.keras").write_text("second")
    assert (out / "model.keras").read_text() == "second"


def test_other_names_in_the_same_folder_run_side_by_side(tmp_path):
    with run_directory(tmp_path / "a") as a, run_directory(tmp_path / "b") as b:
        (a / "x").write_text("a")
        (b / "x").write_text("b")
    assert (tmp_path / "a" / "x").read_text() + (tmp_path / "b" / "x").read_text() == "ab"


KILLED_RUN = """
import os, signal, sys
from cnnlab.runs import run_directory
with run_directory(sys.argv[1]) as tmp:
    (tmp / "model.keras").write_text("half")
    os.kill(os.getpid(), getattr(signal, sys.argv[2]))
"""


def killed_run(out: Path, how: str = "SIGKILL") -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, str(out), how], env=env)
    assert proc.returncode == -getattr(signal, how)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_partials_of_killed_runs_are_removed_by_the_next_run_into_the_folder(tmp_path, how):
    killed_run(tmp_path / "a", how)
    left = [n for n in names(tmp_path) if n.endswith(".partial")]
    assert len(left) == 1 and left[0].startswith(".a.")
    finished_run(tmp_path / "b")  # another name, same folder
    assert names(tmp_path) == ["b"]  # partial and lock file of the killed run are gone
    killed_run(tmp_path / "a", how)
    finished_run(tmp_path / "a")  # the killed name itself
    assert names(tmp_path) == ["a", "b"]


def test_partials_of_live_runs_and_of_unknown_origin_are_kept(tmp_path):
    legacy = tmp_path / ".old.abc123xy.partial"  # cnnlab before owner records
    legacy.mkdir()
    foreign = tmp_path / ".x.0123abcd.partial"  # an owner record naming another folder
    foreign.mkdir()
    (foreign / ".cnnlab-owner").write_text(json.dumps({"name": "y", "pid": 2**22 + 1}))
    with run_directory(tmp_path / "live"):  # alive: this process owns it
        finished_run(tmp_path / "next")
        assert len([n for n in names(tmp_path) if n.startswith(".live.")]) == 2  # lock, partial
    assert legacy.is_dir() and foreign.is_dir()


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    before = os.umask(0o022)
    yield set_umask
    os.umask(before)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755),
                                                             (0o077, 0o600, 0o700),
                                                             (0o002, 0o664, 0o775)])  # fmt: skip
def test_run_files_respect_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    with run_directory(tmp_path / "runs" / "run") as tmp:
        write_json(tmp / "metrics.json", {"a": 1})
    run = tmp_path / "runs" / "run"
    assert stat.S_IMODE(run.stat().st_mode) == dir_mode
    assert stat.S_IMODE((run.parent).stat().st_mode) == dir_mode
    for name in ("metrics.json", RUN_MARKER):
        assert stat.S_IMODE((run / name).stat().st_mode) == file_mode, name


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_is_one_line_and_removes_the_unfinished_run(tmp_path, monkeypatch):
    out = finished_run(tmp_path / "run")
    with pytest.raises(DiskFull) as info, run_directory(out, overwrite=True) as tmp:
        monkeypatch.setattr(os, "fsync", no_space)  # the next write finds the disk full
        write_json(tmp / "metrics.json", {"a": 1})
    message = str(info.value)
    assert message.startswith(f"disk full while writing the run {out} (No space left on device)")
    assert "\n" not in message
    assert names(tmp_path) == ["run"] and (out / "model.keras").read_text() == "old"


def test_quota_exceeded_inside_a_library_is_disk_full_too(tmp_path):
    class SaveError(Exception):
        pass

    with pytest.raises(DiskFull, match="Disk quota exceeded"), run_directory(tmp_path / "r"):
        try:  # e.g. a model saver that wraps the OSError of its zip writer
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError as e:
            raise SaveError("could not save") from e
    assert names(tmp_path) == []


def test_disk_full_before_the_run_starts_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", no_space)
    with (
        pytest.raises(DiskFull, match="disk full while creating the run"),
        run_directory(tmp_path / "run"),
    ):
        pytest.fail("the block must not run")
    assert names(tmp_path) == []


def test_a_parent_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "ro").write_text("a file where a folder should be")
    with (
        pytest.raises(CnnlabError, match="ro is a file, not a directory"),
        run_directory(tmp_path / "ro" / "run"),
    ):
        pass
