"""Fault injection: each bad input or fault of issue 16 run as a real `cnnlab` process.

Every one must end with exit code 2, exactly one `cnnlab: error:` line on stderr, no
traceback, and every file that existed before byte-identical afterwards. Three of them train
(tiny: 2,000 images, one epoch); the rest fail before training, as they should.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnlab.runs import RUN_MARKER, run_directory
from cnnlab_testing import CliResult, cnnlab_env, run_main

FM = ["--preset", "tutorial", "--train-limit", "2000", "--val-size", "1000", "--epochs", "1",
      "--no-progress"]  # fmt: skip


def cnnlab(args, cwd: Path, *, script: str | None = None, umask: int = 0o022, **env):
    """`python -m cnnlab ARGS` (or `python -c SCRIPT ARGS`) in ``cwd``, with these sources."""
    env = cnnlab_env({"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                      "CNNLAB_OFFLINE": "1", **env})  # fmt: skip
    head = ["-c", script] if script else ["-m", "cnnlab"]
    return subprocess.Popen(
        [sys.executable, *head, *map(str, args)], cwd=cwd, env=env, umask=umask,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(proc: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(args, cwd: Path, **kwargs) -> subprocess.CompletedProcess | CliResult:
    """``cnnlab ARGS`` from ``cwd``: in this process as a child would see it (``run_main``),
    or, with a script, umask or environment of its own (another backend), in a child."""
    if kwargs:
        return finish(cnnlab(args, cwd, **kwargs))
    return run_main(*args, cwd=cwd, env={"CNNLAB_OFFLINE": "1"})


def assert_one_line_error(proc: subprocess.CompletedProcess | CliResult, *fragments: str) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("cnnlab: error: ")
    assert "Traceback" not in proc.stdout + proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@contextlib.contextmanager
def nothing_lost(root: Path):
    before = snapshot(root)
    yield
    after = snapshot(root)
    changed = [name for name, data in before.items() if after.get(name) != data]
    assert not changed, f"changed or deleted: {changed}"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder of the user's own files, and an older cnnlab run beside them."""
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text("a,b\n")
    with run_directory(tmp_path / "runs" / "old") as tmp:
        (tmp / "metrics.json").write_text('{"test_accuracy": 0.9}')
    return tmp_path


@pytest.fixture(scope="module")
def real_data():
    if not Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (.ci/run installs dataset-fashion-mnist)")


# -- run directories --------------------------------------------------------------------------

KILLED_RUN = """
import os, signal, sys
from cnnlab.runs import run_directory
with run_directory(sys.argv[1]):
    os.kill(os.getpid(), signal.SIGKILL)
"""

# Holds a claim on an --out until it is killed: a run that is still training, made
# deterministic (a real tiny training can finish before a second process has even started).
HOLDER = """
import sys, time
from cnnlab.runs import run_directory
with run_directory(sys.argv[1]):
    print("claimed", flush=True)
    time.sleep(600)
"""

# A second claimant that starts in well under a second (no TensorFlow): it tests that a real
# `cnnlab train` holds its claim while it trains.
CLAIMANT = """
import sys
from cnnlab.errors import CnnlabError
from cnnlab.runs import run_directory
try:
    with run_directory(sys.argv[1], overwrite=True):
        pass
except CnnlabError as e:
    sys.exit(str(e))
"""


@dataclass
class Race:
    root: Path
    first: subprocess.CompletedProcess
    second: subprocess.CompletedProcess
    during_training: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def race(tmp_path_factory, real_data) -> Race:
    """`cnnlab train --out race` while another run holds it, in a folder where a killed run
    left a partial directory; then a real training (umask 022) that must hold its own claim.
    The only real training of the run tests."""
    root = tmp_path_factory.mktemp("race")
    (root / "runs").mkdir()
    killed = run(["runs/killed"], root, script=KILLED_RUN)
    assert killed.returncode == -signal.SIGKILL
    holder = cnnlab(["runs/race"], root, script=HOLDER)
    assert holder.stdout.readline().strip() == "claimed", finish(holder).stderr[-2000:]
    second = run(["train", *FM, "--seed", "2", "--out", "runs/race", "--overwrite"], root)
    holder.kill()  # released by the kernel, as for any killed run
    finish(holder)
    left = set((root / "runs").glob(".race.*.partial"))  # the holder's, now stale
    first = cnnlab(["train", *FM, "--seed", "1", "--out", "runs/race"], root, umask=0o022)
    deadline = time.monotonic() + 300
    while not set((root / "runs").glob(".race.*.partial")) - left:  # the first has claimed it
        if first.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the first run never started: {finish(first).stderr[-2000:]}")
        time.sleep(0.05)
    during = run(["runs/race"], root, script=CLAIMANT)
    return Race(root, finish(first), second, during)


@pytest.mark.slow
def test_a_second_run_to_the_same_out_fails_at_once(race):
    assert_one_line_error(race.second, "--out runs/race is being written by another cnnlab run")
    assert "is being written by another cnnlab run" in race.during_training.stderr
    assert race.during_training.returncode == 1
    assert race.first.returncode == 0, race.first.stderr[-2000:]
    assert (race.root / "runs" / "race" / "model.keras").is_file()
    assert (race.root / "runs" / "race" / RUN_MARKER).is_file()


@pytest.mark.slow
def test_the_next_run_removes_what_a_killed_run_left(race):
    assert sorted(p.name for p in (race.root / "runs").iterdir()) == ["race"]


@pytest.mark.slow
def test_run_files_follow_the_umask(race):
    run_dir = race.root / "runs" / "race"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o755
    for name in ("config.json", "metrics.json", "history.csv", "model.keras", "report.html"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o644, name


def test_overwrite_refuses_a_folder_that_cnnlab_did_not_write(workspace):
    (workspace / "p").mkdir()
    (workspace / "p" / "thesis.txt").write_text("x")
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--out", "p", "--overwrite"], workspace)
    assert_one_line_error(
        proc, "--out p holds files but no .cnnlab-run marker, so it is not a cnnlab run"
    )
    assert sorted(p.name for p in (workspace / "p").iterdir()) == ["thesis.txt"]


@pytest.mark.parametrize("out", [".", ".."])
def test_the_current_folder_or_its_parent_is_refused_before_training(workspace, out):
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--out", out, "--overwrite"], workspace / "data")
    assert_one_line_error(proc, f"--out {out} is the current directory or contains it")
    assert not [p for p in workspace.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.slow
def test_disk_full_while_writing_the_run_is_one_line_and_keeps_the_old_run(workspace, real_data):
    # After training, the first write of the run finds the disk full (fsync fails with ENOSPC).
    script = f"""
import errno, os, sys
import cnnlab.fmnist.training as train
from cnnlab.cli import main
write_run = train.write_run
def full_disk_write_run(*args, **kwargs):
    def no_space(fd):
        raise OSError(errno.{errno.errorcode[errno.ENOSPC]}, os.strerror(errno.ENOSPC))
    os.fsync = no_space
    write_run(*args, **kwargs)
train.write_run = full_disk_write_run
main(sys.argv[1:])
"""
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--out", "runs/old", "--overwrite"], workspace, script=script)
    assert_one_line_error(proc, "disk full while writing the run runs/old", "was removed")
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == ["old"]


# -- Fashion-MNIST input ------------------------------------------------------------------------

GZ_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: None, "(not present)"),
        (lambda d: d.write_text("not a folder"), "(not a folder)"),
        (lambda d: (d.mkdir(), (d / "train-images-idx3-ubyte.gz").write_bytes(b"x")), "missing"),
        (lambda d: [d.mkdir()] + [(d / n).write_bytes(b"\x1f\x8b junk") for n in GZ_NAMES],
         "wrong checksum for train-images-idx3-ubyte.gz"),
    ],
    ids=["missing", "a file", "incomplete", "corrupt"],
)  # fmt: skip
def test_a_named_data_dir_that_is_unusable_is_named_never_replaced(workspace, make, why):
    make(workspace / "fm")
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--data-dir", "fm", "--out", "runs/new"], workspace)
    assert_one_line_error(proc, "--data-dir fm ", why, "used alone")
    assert not (workspace / "runs" / "new").exists()


@pytest.mark.slow
def test_a_diverging_run_names_the_epoch_of_the_first_nan(workspace, real_data):
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--epochs", "3", "--lr", "1e30", "--out", "runs/lr"], workspace)
    assert_one_line_error(proc, "training diverged", "nan in epoch 1 of 3", "1e+30")
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == ["old"]


@pytest.mark.parametrize("backend", ["jax", "bogus"])
def test_an_unsupported_keras_backend_names_the_supported_ones(workspace, backend):
    with nothing_lost(workspace):
        proc = run(["train", *FM, "--out", "runs/b"], workspace, KERAS_BACKEND=backend)
    assert_one_line_error(proc, f"Keras backend {backend!r}", "tensorflow or torch")
    assert not (workspace / "runs" / "b").exists()


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels (and holds almost none)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.slow
@pytest.mark.parametrize("side", [20000, 10000])  # over twice Pillow's limit, and just over it
def test_a_decompression_bomb_is_refused_in_one_line(race, tmp_path, side):
    (tmp_path / "bomb.png").write_bytes(png_header(side, side))
    with nothing_lost(race.root), nothing_lost(tmp_path):
        proc = run(["predict", race.root / "runs" / "race", "bomb.png"], tmp_path)
    assert_one_line_error(proc, "image bomb.png is too large to read safely")
