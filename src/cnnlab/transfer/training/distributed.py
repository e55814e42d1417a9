"""Training on several processes: ``torchrun --nproc-per-node N -m cnnlab transfer train ...``.

torchrun starts N copies of the command with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in their environment; ``session`` joins that process group (gloo on CPU, nccl on
CUDA). Every process prepares the same splits (seeded, so identical; the image cache decodes
them once for all), trains a replica under DistributedDataParallel on its share of each epoch
(DistributedSampler, reshuffled by ``set_epoch``) and predicts its share of the validation
split; the shares are gathered, so every process computes the metrics of the whole split as
one process would, and all take the same best-epoch and early-stopping decisions. Rank 0 alone
writes the run directory and prints.

``batch_size`` is per process, as in torchvision's references: N processes step on
N x batch_size images (the learning rate is left as given).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, Sampler

from cnnlab.errors import CnnlabError
from cnnlab.transfer.training.recipe import class_weights

if TYPE_CHECKING:
    from cnnlab.transfer.config import TransferConfig

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; the default is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group, nothing to synchronise

    @property
    def active(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self, device: str) -> str:
        if not self.active:
            return device
        return f"{device} x {self.size} processes (DistributedDataParallel, {self.backend})"

    def place(self, device: torch.device) -> torch.device:
        """One GPU per process on a machine: LOCAL_RANK picks it."""
        if device.type != "cuda" or not self.active:
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise CnnlabError(
                f"torchrun started process {self.local_rank} on this machine, which has only "
                f"{torch.cuda.device_count()} GPU(s): lower --nproc-per-node"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def shard(self, n: int) -> np.ndarray:
        """This process's contiguous share of ``n`` items (sizes differ by at most one)."""
        return np.arange(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def gather(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Every process's ``shard(n)`` rows, in rank order: the whole of ``n`` rows."""
        if not self.active:
            return part
        sizes = [n * (r + 1) // self.size - n * r // self.size for r in range(self.size)]
        padded = part.new_zeros((max(sizes), *part.shape[1:]), device=self._comm_device())
        padded[: len(part)] = part
        pieces = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(pieces, padded)
        return torch.cat([p[:s] for p, s in zip(pieces, sizes, strict=True)]).to(part.device)

    def sum(self, *values: float) -> list[float]:
        """``values`` summed over the processes (float64: counts stay exact)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def main_says(self, ok: bool = True) -> bool:
        """Rank 0's ``ok``, in every process (a broadcast; every process must call it)."""
        if not self.active:
            return ok
        flag = torch.tensor([int(ok)], device=self._comm_device())
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    @contextlib.contextmanager
    def claim(self, run_dir: contextlib.AbstractContextManager[T]) -> Iterator[T]:
        """Rank 0 enters ``run_dir`` and tells the others whether it could: when it cannot
        (``--out`` taken, say), they stop with one line instead of a broken connection."""
        with contextlib.ExitStack() as stack:
            try:
                value = stack.enter_context(run_dir)
            except BaseException:
                self.main_says(False)
                raise
            self.main_says(True)
            yield value

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) everywhere. DDP sends them at the start of
        each forward, so after the last step every process holds the statistics of its own
        batch: validated as they are, each share would be scored by a slightly other model."""
        if self.active:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DDP (its trainable parameters as they are now), or as it is."""
        if not self.active:
            return module
        ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(module, device_ids=ids)

    def _comm_device(self) -> torch.device:
        return (
            torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        )


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP: evaluation runs it directly, with no collective per forward."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def launched() -> bool:
    """Whether torchrun (or a launcher like it) started this process."""
    return "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[World]:
    """Join torchrun's process group for the block; a plain World() when not launched by it."""
    if not launched():
        yield World()
        return
    try:
        rank, size, local_rank = (int(os.environ[name]) for name in _ENV)
    except (KeyError, ValueError):
        raise CnnlabError(
            f"WORLD_SIZE is set but {', '.join(_ENV)} are not all whole numbers: start "
            "several processes with torchrun --nproc-per-node N -m cnnlab transfer train ..."
        ) from None
    if device.type == "mps":
        raise CnnlabError("torchrun: Apple MPS cannot train on several processes; use --device cpu")
    if not dist.is_available():
        raise CnnlabError("this PyTorch build has no torch.distributed: torchrun cannot be used")
    backend = "nccl" if device.type == "cuda" else "gloo"
    world = World(rank, size, local_rank, backend)
    world.place(device)  # before nccl starts: it binds each process to its GPU
    dist.init_process_group(backend)  # reads MASTER_ADDR/PORT, RANK, WORLD_SIZE from the env
    try:
        yield world
    finally:
        dist.destroy_process_group()


def sampler(cfg: TransferConfig, labels: np.ndarray, world: World) -> Sampler[int]:
    """This process's share of each epoch, reshuffled by ``set_epoch(epoch)`` (the same
    permutation in every process, from ``cfg.seed``); class-balanced with ``--balance sampler``."""
    if cfg.balance == "sampler":
        return BalancedDistributedSampler(labels, world.size, world.rank, cfg.seed)
    return DistributedSampler(
        range(len(labels)), num_replicas=world.size, rank=world.rank, shuffle=True, seed=cfg.seed
    )


class BalancedDistributedSampler(Sampler[int]):
    """``WeightedRandomSampler``'s class-balanced draw, shared out like DistributedSampler:
    every process draws the same N indices (seeded by seed + epoch) and keeps every
    ``replicas``-th. torch ships no distributed weighted sampler."""

    def __init__(self, labels: np.ndarray, replicas: int, rank: int, seed: int):
        per_image = class_weights(labels, int(labels.max()) + 1)[labels]
        self.weights = torch.as_tensor(per_image, dtype=torch.double)
        self.replicas, self.rank, self.seed, self.epoch = replicas, rank, seed, 0
        self.per_replica = math.ceil(len(labels) / replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_replica

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.per_replica * self.replicas
        drawn = torch.multinomial(self.weights, total, replacement=True, generator=g)
        return iter(drawn[self.rank :: self.replicas].tolist())
