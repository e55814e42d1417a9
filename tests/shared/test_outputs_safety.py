"""The one rule for every output path (``files.check_output``), lock files that never follow
a link, and outputs that follow the umask (issue 27 Deliver 1, issue 25 Deliver 3).

The commands' own repros run through the CLI in tests/transfer/test_output_faults.py and
tests/study/test_output_faults.py; these pin the helper they all share.
"""

from __future__ import annotations

import os
import stat

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.files import (
    atomic_write_bytes,
    atomic_write_text,
    check_output,
    held_lock,
    staged,
    write_csv,
)
from cnnlab.runs import RUN_MARKER, lock_path, run_directory
from cnnlab.tensorboard import prepare_log_dir


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- the output rule ------------------------------------------------------------------------


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("mine")
    with pytest.raises(CnnlabError, match="exists; choose a new name or add --overwrite"):
        check_output("--out", notes)
    assert check_output("--out", notes, overwrite=True) == notes
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(CnnlabError, match="exists"):
        check_output("--out", tmp_path / "dangling")


def test_an_output_is_never_an_input_nor_holds_nor_lies_inside_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    (tmp_path / "alias").symlink_to(run)  # symbolic links are followed
    cases = {  # (output, input): how they meet
        (run / "best.pt", run / "best.pt"): "is the model",
        (tmp_path / "alias" / "best.pt", run / "best.pt"): "is the model",
        (tmp_path / "alias" / "other.csv", run): "lies inside the model",
    }
    for (out, read), words in cases.items():
        with pytest.raises(CnnlabError, match=words):
            check_output("--out", out, overwrite=True, inputs={"the model": read})
    with pytest.raises(CnnlabError, match="holds an input"):
        check_output("--cam", tmp_path, directory=True, inputs=[run / "best.pt"])
    assert check_output("--out", tmp_path / "p.csv", inputs=[run]) == tmp_path / "p.csv"


def test_an_output_never_resolves_to_or_above_a_run_it_did_not_create(tmp_path):
    run = tmp_path / "run"
    (run / "evaluations").mkdir(parents=True)
    for out in (run / "evaluations" / "..", tmp_path, tmp_path / "alias"):
        if out.name == "alias":
            out.symlink_to(run)
        with pytest.raises(CnnlabError, match="resolves to the run directory"):
            check_output("--out", out, directory=True, runs=[run])
    inside = run / "evaluations" / "held-out"
    assert check_output("--out", inside, directory=True, runs=[run]) == inside


def test_a_file_that_appears_during_the_work_is_not_replaced(tmp_path):
    out = tmp_path / "p.csv"
    check_output("--out", out)  # checked before the work ...
    out.write_text("written by someone else meanwhile")  # ... which takes a while
    with pytest.raises(CnnlabError, match="appeared while cnnlab worked"):
        atomic_write_text(out, "cnnlab's", overwrite=False)
    with pytest.raises(CnnlabError, match="appeared"), staged(out, overwrite=False) as stage:
        stage(out).write_text("cnnlab's")
    assert out.read_text() == "written by someone else meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]  # no temporaries left


def test_an_unwritable_folder_is_one_line(tmp_path):
    # root ignores permission bits; /sys refuses new files to everyone (EACCES)
    with pytest.raises(CnnlabError, match="cannot write /sys/x.csv: Permission denied"):
        atomic_write_bytes("/sys/x.csv", b"x")
    with pytest.raises(CnnlabError, match="cannot write /sys/cams"), staged("/sys/cams") as stage:
        stage("/sys/cams/a.png")


def test_tensorboard_inside_the_run_directory_is_refused_before_it_is_made(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CnnlabError, match="--tensorboard .* lies inside the run directory"):
        prepare_log_dir(out / "tb", out)
    assert list(tmp_path.iterdir()) == []  # nothing made that would block the next run
    assert prepare_log_dir(tmp_path / "tb", out).is_dir()


# -- locks ------------------------------------------------------------------------------------


def test_a_symlinked_run_lock_is_refused_and_its_target_keeps_every_byte(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the start of a user's file")
    lock_path(tmp_path / "r").symlink_to(victim)
    with pytest.raises(CnnlabError, match="symbolic link"), run_directory(tmp_path / "r"):
        pass
    assert victim.read_text() == "the start of a user's file"
    assert not (tmp_path / "r").exists()


def test_a_hard_linked_run_lock_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("a user's file")
    os.link(victim, lock_path(tmp_path / "r"))
    with pytest.raises(CnnlabError, match="not a plain file"), run_directory(tmp_path / "r"):
        pass
    assert victim.read_text() == "a user's file"


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    lock_path(tmp_path / "r").write_text("99999999")  # a longer pid than ours, process gone
    with run_directory(tmp_path / "r") as tmp:
        assert lock_path(tmp_path / "r").read_text() == str(os.getpid())
        (tmp / "a.txt").write_text("done")
    assert (tmp_path / "r" / "a.txt").is_file()


def test_a_symlinked_study_lock_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "s.db.lock").symlink_to(victim)
    with pytest.raises(CnnlabError, match="symbolic link"), held_lock(tmp_path / "s.db.lock", 1):
        pass
    assert victim.read_text() == "mine"


# -- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_every_output_file_follows_the_umask(tmp_path, umask):
    saved = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        write_csv(tmp_path / "b.csv", [{"a": 1}])
        with staged(tmp_path) as stage:
            stage(tmp_path / "cams" / "c.png").write_bytes(b"png")
        with run_directory(tmp_path / "run") as tmp:
            atomic_write_text(tmp / "metrics.json", "{}")
    finally:
        os.umask(saved)
    files = ["a.txt", "b.csv", "cams/c.png", f"run/{RUN_MARKER}", "run/metrics.json"]
    assert {f: mode(tmp_path / f) for f in files} == dict.fromkeys(files, 0o666 & ~umask)
    assert mode(tmp_path / "run") == 0o777 & ~umask
