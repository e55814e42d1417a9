"""``torchrun -m cnnlab transfer train``: DistributedDataParallel on CPU processes (gloo).

The end-to-end tests start real torchrun jobs of two processes on 127.0.0.1 (a free port
each), as CI does; the rest check the pieces without starting processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.console import make_console
from cnnlab.errors import CnnlabError
from cnnlab.transfer import pipeline
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.pipeline import train
from cnnlab.transfer.training import distributed
from cnnlab.transfer.training.distributed import BalancedDistributedSampler, World

SRC = Path(__file__).resolve().parents[2] / "src"
TINY = ["--weights", "none", "--arch", "resnet18", "--image-size", "32", "--batch-size", "8"]
STANDARD_FILES = {
    "config.json",
    "environment.json",
    "data_report.json",
    "splits.csv",
    "history.csv",
    "metrics.json",
    "best.pt",
    "last.pt",
    "report.html",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str | Path, cwd: Path, processes: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N ARGS`` through ``python -m torch.distributed.run``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    rendezvous = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [*launcher, *rendezvous, *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_trains_on_two_processes_and_rank_0_alone_writes_the_run(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"a": 14, "b": 14})
    cwd, runs = tmp_path / "cwd", tmp_path / "runs"
    cwd.mkdir()
    result = torchrun(
        "-m", "cnnlab", "transfer", "train", data, "--out", runs / "ddp", *TINY,
        "--epochs", "1", "--strategy", "full", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = runs / "ddp"
    assert sorted(p.name for p in runs.iterdir()) == ["ddp"]  # no partial, lock or rank-1 run
    assert {p.name for p in run.iterdir()} >= STANDARD_FILES
    assert list(cwd.iterdir()) == []
    assert result.stdout.count("run written to") == 1 and result.stdout.count("device:") == 1

    metrics = json.loads((run / "metrics.json").read_text())
    assert "2 processes" in metrics["device"] and "gloo" in metrics["device"]
    assert json.loads((run / "environment.json").read_text())["processes"] == 2
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 28

    cfg = TransferConfig(weights="none", image_size=32, batch_size=8, epochs=1, strategy="full")
    _, single = train(data, runs / "single", cfg, console=make_console(quiet=True))
    assert single is not None
    assert metrics.keys() == single.keys()
    assert metrics["val"].keys() == single["val"].keys()


@pytest.mark.slow
@pytest.mark.torchrun
def test_when_rank_0_cannot_start_every_process_stops_with_one_line(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("the user's own file\n")
    result = torchrun("-m", "cnnlab", "transfer", "train", data, "--out", taken, *TINY,
                      cwd=tmp_path)  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("cnnlab: error:")]
    # every rank checks the command line before any framework or process group starts, so
    # each stops at once with the same line, and none waits for another; torchrun stops the
    # other rank as soon as one has failed, so that one may be gone before it prints its line
    refused = (
        f"cnnlab: error: --out {taken} already holds files; choose another directory or --overwrite"
    )
    assert errors in ([refused], [refused, refused]), result.stderr[-3000:]
    assert "[rank1]: Traceback" not in result.stderr  # no broken connection in rank 1
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]


SAME_WEIGHTS = """
import sys
import torch
import torch.distributed as dist
from cnnlab.transfer.training import distributed
from cnnlab.transfer.training.batches import ImageSource
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.training.fit import fit
from cnnlab.transfer.training.loop import evaluate
from cnnlab.transfer.models import preprocessing
from cnnlab.transfer.data.prepare import prepare_data

cfg = TransferConfig(
    weights="none", image_size=32, epochs=3, strategy="gradual", unfreeze_every=1,
    balance="sampler", batch_size=8, device="cpu",
)
cpu = torch.device("cpu")
with distributed.session(cpu) as world:
    prepared = prepare_data(sys.argv[1], cfg)
    result = fit(cfg, prepared, cpu, world=world)
    state = torch.cat([v.flatten().double() for v in result.last_state.values()])
    states = [torch.zeros_like(state) for _ in range(world.size)]
    dist.all_gather(states, state)
    train, val = prepared.splits["train"], prepared.splits["val"]
    pre = preprocessing(cfg.arch, cfg.image_size)

    def scored(w):
        source = ImageSource(result.model, train, val, cfg, range(8), pre, cpu, False, w)
        return evaluate(source, val.labels, prepared.classes, w)

    shared = scored(world)  # each process predicts its share of val; gathered
    if world.is_main:
        alone = scored(distributed.World())  # one process predicts all of val
        keys = ("loss", "accuracy", "balanced_accuracy", "roc_auc", "ece")
        print("weights_difference", float((states[0] - states[1]).abs().max()))
        print("metrics_difference", max(abs(shared[k] - alone[k]) for k in keys))
        print("val_images", len(val))
"""


@pytest.mark.slow
@pytest.mark.torchrun
def test_every_process_ends_with_the_same_weights_and_the_metrics_of_the_whole_split(
    tmp_path, make_folders
):
    """gradual unfreezes a stage each epoch (DDP is rebuilt for it); balance=sampler draws
    each process's share; validation predictions of the two shares are gathered."""
    data = make_folders(tmp_path / "data", {"a": 14, "b": 15})
    script = tmp_path / "same_weights.py"
    script.write_text(textwrap.dedent(SAME_WEIGHTS))
    result = torchrun(script, data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split() for line in result.stdout.splitlines() if line.count(" ") == 1)
    assert float(lines["weights_difference"]) == 0.0  # parameters and BatchNorm statistics
    assert float(lines["metrics_difference"]) < 1e-6
    assert int(lines["val_images"]) % 2 == 1  # the two shares differ in size


# -- the pieces, without processes ------------------------------------------------------------


@pytest.mark.parametrize("n, size", [(10, 2), (7, 3), (1, 2), (0, 2)])
def test_the_shares_of_a_split_cover_it_once_in_rank_order(n, size):
    shares = [World(rank, size, rank, "gloo").shard(n) for rank in range(size)]
    assert np.concatenate(shares).tolist() == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_balanced_shares_are_disjoint_parts_of_one_class_balanced_draw():
    labels = np.array([0] * 90 + [1] * 10)
    ranks = [BalancedDistributedSampler(labels, 2, rank, seed=3) for rank in range(2)]
    draws = [list(r) for r in ranks]
    assert [len(d) for d in draws] == [50, 50] == [len(r) for r in ranks]
    minority = np.isin(np.concatenate(draws), np.arange(90, 100)).mean()
    assert 0.35 < minority < 0.65  # 10% of the images, about half of the draws
    again = BalancedDistributedSampler(labels, 2, 0, seed=3)
    assert list(again) == draws[0]  # every process draws the same permutation
    again.set_epoch(1)
    assert list(again) != draws[0]  # and a new one each epoch


@dataclass(frozen=True)
class Told(World):
    """A world whose broadcast from rank 0 is recorded (``said``) and, in another rank,
    answered with ``answer``: the hand-over of ``claim`` without a process group."""

    said: list[bool] = field(default_factory=list)
    answer: bool = True

    def main_says(self, ok: bool = True) -> bool:
        self.said.append(ok)
        return ok if self.is_main else self.answer


@contextlib.contextmanager
def _taken_out():
    raise CnnlabError("--out taken")
    yield


def test_rank_0_tells_the_others_whether_it_could_claim_the_run():
    world = Told()
    with pytest.raises(CnnlabError, match="--out taken"), world.claim(_taken_out()):
        pass
    with world.claim(contextlib.nullcontext("run")) as claimed:
        assert claimed == "run"
    assert world.said == [False, True]


def test_a_process_told_that_rank_0_could_not_start_stops_with_one_line(tmp_path):
    # preflight refuses what it can see in every rank; this is for what only rank 0 meets
    # (a directory that appears, or a disk that fails, after the check)
    world = Told(rank=1, size=2, answer=False)
    cfg = TransferConfig(weights="none", image_size=32)
    with pytest.raises(CnnlabError, match="rank 0 could not start the run"):
        pipeline._follow(tmp_path / "never read", cfg, torch.device("cpu"), world)
    assert world.said == [True]


def test_a_single_process_world_changes_nothing():
    world = World()
    part = torch.arange(6.0).reshape(3, 2)
    assert not world.active and world.is_main
    assert world.gather(part, 3) is part and world.sum(1.5, 2) == [1.5, 2]
    module = torch.nn.Linear(2, 2)
    assert world.wrap(module) is module and distributed.unwrap(module) is module
    assert world.describe("cpu (2 threads)") == "cpu (2 threads)"


def test_without_torchrun_no_process_group_is_started(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session(torch.device("cpu")) as world:
        assert world == World()
        assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    "env, device, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "x", "LOCAL_RANK": "0"}, "cpu", "not all whole numbers"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, "mps", "Apple MPS"),
    ],
)
def test_a_broken_launch_is_one_clear_error(monkeypatch, env, device, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CnnlabError, match=message), distributed.session(torch.device(device)):
        pass
