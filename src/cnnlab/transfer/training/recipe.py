"""The training recipe: loss, sampling, which layers train, optimizer, schedule, MixUp/CutMix.

Each factory reads its knobs from ``TransferConfig`` and returns a plain torch object, as
torchvision's ``references/classification`` does; the loop (``loop.py``) only calls them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler
from torchvision.transforms import v2

from cnnlab.transfer.models import head_name, stages

if TYPE_CHECKING:
    from cnnlab.transfer.config import TransferConfig

Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# -- imbalance --------------------------------------------------------------------------------
def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """n / (k * count_c): each class contributes equally to the loss (scikit-learn's
    'balanced' weighting)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return len(labels) / (n_classes * np.maximum(counts, 1))


def make_loss(
    cfg: TransferConfig, labels: np.ndarray, n_classes: int, device: torch.device | str
) -> nn.CrossEntropyLoss:
    weight = None
    if cfg.balance == "weights":
        weight = torch.tensor(class_weights(labels, n_classes), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)


def make_sampler(
    cfg: TransferConfig, labels: np.ndarray, generator: torch.Generator
) -> Sampler[int]:
    """The epoch's index order: shuffled, or drawn with class-balanced probabilities."""
    if cfg.balance == "sampler":
        per_image = class_weights(labels, int(labels.max()) + 1)[labels]
        return WeightedRandomSampler(
            torch.as_tensor(per_image, dtype=torch.double),
            len(labels),
            replacement=True,
            generator=generator,
        )
    return RandomSampler(range(len(labels)), generator=generator)


# -- the model's trainable parts --------------------------------------------------------------
@dataclass
class Plan:
    """Which modules train at each epoch and at what learning rate."""

    head: nn.Module
    stages: list[list[nn.Module]]
    others: list[nn.Module]  # modules owning parameters in neither the stages nor the head
    strategy: str
    every: int

    def stages_trained(self, epoch: int) -> int:
        """How many stages (counted from the last) train in 0-based ``epoch``."""
        n = len(self.stages)
        return {"head": 0, "partial": 1, "full": n}.get(self.strategy, min(n, epoch // self.every))

    def apply(self, model: nn.Module, epoch: int) -> None:
        """Set requires_grad and train/eval mode: frozen BatchNorm keeps ImageNet statistics."""
        k = self.stages_trained(epoch)
        trainable = [self.head] + [m for s in self.stages[len(self.stages) - k :] for m in s]
        if self.strategy != "head":
            trainable += self.others
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        if self.strategy == "full":
            model.train()
        for m in trainable:
            m.train()
            for p in m.parameters():
                p.requires_grad_(True)


def make_plan(model: nn.Module, cfg: TransferConfig) -> Plan:
    head = model.get_submodule(head_name(model))
    stage_list = stages(model)
    owned = {id(p) for s in stage_list for m in s for p in m.parameters()}
    owned |= {id(p) for p in head.parameters()}
    others = [
        m for m in model.modules() if any(id(p) not in owned for p in m.parameters(recurse=False))
    ]
    return Plan(head, stage_list, others, cfg.strategy, cfg.unfreeze_every)


# -- optimisation -----------------------------------------------------------------------------
def _params(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters()]


def make_optimizer(plan: Plan, cfg: TransferConfig) -> torch.optim.Optimizer:
    """Parameter groups: the head at ``lr``; for ``gradual`` each stage at a lower rate
    (discriminative learning rates: early layers hold general features worth keeping)."""
    groups = [{"params": list(plan.head.parameters()), "lr": cfg.lr}]
    if cfg.strategy != "head" and plan.others:
        groups.append({"params": _params(plan.others), "lr": cfg.lr})
    n = len(plan.stages)
    if cfg.strategy == "partial":
        groups.append({"params": _params(plan.stages[-1]), "lr": cfg.lr})
    elif cfg.strategy in ("full", "gradual"):
        for i, stage in enumerate(plan.stages):
            factor = cfg.lr_decay ** (n - i) if cfg.strategy == "gradual" else 1.0
            groups.append({"params": _params(stage), "lr": cfg.lr * factor})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TransferConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per batch; None for a constant learning rate."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))
        )
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps
        )
    return None


def make_mix(cfg: TransferConfig, n_classes: int) -> Mix | None:
    """MixUp and/or CutMix on a normalised batch (soft targets); None when both are off."""
    mixes: list[nn.Module] = []
    if cfg.mixup > 0:
        mixes.append(v2.MixUp(alpha=cfg.mixup, num_classes=n_classes))
    if cfg.cutmix > 0:
        mixes.append(v2.CutMix(alpha=cfg.cutmix, num_classes=n_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


# -- model selection --------------------------------------------------------------------------
def better(monitor: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` of the validation metric ``monitor`` beats ``best`` (None: none yet).

    An undefined value (ROC-AUC without both classes, a NaN) only counts when nothing
    better exists, so the first epoch still yields a checkpoint.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return best is None
    if best is None:
        return True
    return value < best if monitor == "loss" else value > best
