"""One epoch of training and one evaluation, whatever the batches are made of.

Shaped like torchvision's ``references/classification``: ``train_one_epoch`` and
``evaluate`` take a ``BatchSource`` (decoded images or cached backbone features, see
``batches.py``), and ``train.fit`` calls them epoch after epoch. Under torchrun (a ``World``
of several processes, ``distributed.py``) each step's loss and counts are summed over the
processes, so all of them see the same figures and stop at the same step, and validation
predictions are gathered, so metrics are those of the whole split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.metrics import classification_metrics
from cnnlab.transfer.training.distributed import World, unwrap

if TYPE_CHECKING:
    from cnnlab.console import Advance
    from cnnlab.transfer.training.averaging import Ema
    from cnnlab.transfer.training.batches import BatchSource
    from cnnlab.transfer.training.recipe import Mix


# A cross-entropy this large means the true class sits a million logits below the predicted
# one: far past anything a working run shows (chance is ln(classes), under 10), and from where
# no run recovers. `--lr 1e30` on the head reaches 1e32, finite in float32, never NaN.
MAX_LOSS = 1e6


class Diverged(CnnlabError):
    """The loss exploded or the outputs became NaN or infinite: later steps would stay so."""


@dataclass(frozen=True)
class EpochStats:
    loss: float  # mean training loss over the epoch (against mixed targets when mixing)
    accuracy: float  # of the argmax against the true labels
    images: int
    lr: float  # of the first parameter group (the head) at the epoch's last step


def train_one_epoch(
    source: BatchSource,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    mix: Mix | None = None,
    progress: Advance | None = None,
    world: World = World(),
    ema: Ema | None = None,
) -> EpochStats:
    """One pass over ``source.train_batches()``, stepping the scheduler (and updating the
    weight average ``ema``) once per batch.

    Raises ``Diverged`` at the first NaN, infinite or exploded (> MAX_LOSS) loss (the mean over
    the processes' batches: every process raises at the same step).
    """
    network = source.network
    total_loss, correct, seen, lr = 0.0, 0, 0, optimizer.param_groups[0]["lr"]
    for step, (x, y) in enumerate(source.train_batches(), start=1):
        y = y.to(device)
        target = y
        if mix is not None:
            x, target = mix(x, y)
        logits = network(x)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        optimizer.step()
        if ema is not None:
            ema.update()
        if scheduler is not None:
            scheduler.step()
        value = float(loss.detach())  # read after the step, so the GPU queue keeps flowing
        hits = int((logits.detach().argmax(1) == y).sum())
        n = len(y)
        if world.active:
            step_loss, hits, n = world.sum(value * n, hits, n)
            value, hits, n = step_loss / n, int(hits), int(n)
        if not math.isfinite(value) or value > MAX_LOSS:
            raise Diverged(f"the training loss became {value:.3g} at step {step}")
        total_loss += value * n
        correct += hits
        seen += n
        if progress is not None:
            progress(1)
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), seen, lr)


def probabilities(
    network: nn.Module, batches: Iterable[torch.Tensor], progress: Advance | None = None
) -> np.ndarray:
    """Softmax of ``network`` (in eval mode, then restored) over ``batches``: N x classes."""
    was_training = network.training
    network.eval()
    out = []
    with torch.inference_mode():
        for x in batches:
            out.append(torch.softmax(network(x).float(), dim=1).cpu().numpy())
            if progress is not None:
                progress(len(x))
    network.train(was_training)
    n_classes = out[0].shape[1] if out else 0
    return np.concatenate(out) if out else np.zeros((0, n_classes))


def evaluate(
    source: BatchSource,
    labels: np.ndarray,
    class_names: Sequence[str],
    world: World = World(),
    network: nn.Module | None = None,
) -> dict[str, Any]:
    """``classification_metrics`` of ``network`` (default ``source.network``; the weight
    average's counterpart with ``--ema``) on the validation batches (this process's share of
    them, gathered: every process gets the metrics of the whole split)."""
    proba = probabilities(network or unwrap(source.network), source.val_batches())
    if world.active:
        part = torch.from_numpy(proba.reshape(len(proba), len(class_names)))
        proba = world.gather(part, len(labels)).numpy()
    if not np.isfinite(proba).all():  # weights overflowed in the last steps
        raise Diverged("the validation outputs became NaN or infinite")
    return classification_metrics(labels, proba, class_names)
