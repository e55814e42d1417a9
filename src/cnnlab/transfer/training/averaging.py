"""Weight averaging: an exponential moving average (EMA) of the weights, step by step.

The weights of one step sit wherever the last noisy gradients left them; their average over
the last few hundred steps sits nearer the middle of the region they wander in, which
generalises better and is less sensitive to the exact epoch (Polyak averaging; as timm's
``ModelEmaV3`` and TensorFlow's ``ExponentialMovingAverage``). With ``--ema DECAY`` the
loop updates the average after every optimizer step, and validation, the best epoch and the
saved checkpoints all use the averaged weights.

BatchNorm's running statistics are buffers, not weights: they are copied from the trained
network at each update (averaging them would mix statistics of different weights). The
decay warms up, ``min(decay, (1 + t) / (10 + t))`` at update ``t``, so the average of a run
of a few hundred steps is not dominated by the starting point, a random head included.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (0-based), warmed up."""
    return min(decay, (1 + updates) / (10 + updates))


class Ema:
    """An averaged copy of ``model``, kept in eval mode and never trained itself."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = model

    @torch.no_grad()
    def update(self) -> None:
        """Average the source's current weights in; copy its buffers."""
        d = ema_decay(self.decay, self.updates)
        for mine, theirs in zip(self.model.parameters(), self.source.parameters(), strict=True):
            mine.lerp_(theirs.detach(), 1 - d)
        for mine, theirs in zip(self.model.buffers(), self.source.buffers(), strict=True):
            mine.copy_(theirs)
        self.updates += 1

    def counterpart(self, module: nn.Module) -> nn.Module:
        """The averaged model's module in the place of ``module`` of the source (the whole
        model, or the head that the feature cache trains)."""
        names = {id(m): n for n, m in self.source.named_modules()}
        return self.model.get_submodule(names[id(module)])
