"""The training recipe: loss, sampling, which layers train, optimizer, schedule, MixUp/CutMix.

Each factory reads its knobs from ``TransferConfig`` and returns a plain torch object, as
torchvision's ``references/classification`` does; the loop (``loop.py``) only calls them.

``lp-ft`` (Kumar et al., ICLR 2022, "Fine-tuning can distort pretrained features") runs in
two phases (``phases``): a linear probe, the backbone untouched (BatchNorm statistics
included), then every layer, the backbone at ``backbone_lr_factor`` times the head's rate.
A fresh head trained together with the backbone sends large, random gradients into the
pretrained features in the first steps; a probed head does not, which is why LP-FT keeps
the features that transfer under a shift of site. Each phase gets its own optimizer and
schedule (warm-up included).
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

from cnnlab.transfer.models import head_dropout, head_name, stages

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
    probe_epochs: int = 0  # lp-ft: epochs of the linear probe
    freeze_bn: bool = False
    # the Dropout on the head's input (``models.head_dropout``): it trains with the head
    head_dropout: nn.Module | None = None

    def stages_trained(self, epoch: int) -> int:
        """How many stages (counted from the last) train in 0-based ``epoch``."""
        n = len(self.stages)
        if self.strategy == "lp-ft":
            return 0 if epoch < self.probe_epochs else n
        return {"head": 0, "partial": 1, "full": n}.get(self.strategy, min(n, epoch // self.every))

    def probing(self, epoch: int) -> bool:
        """Whether only the head trains in ``epoch`` (its backbone could be cached)."""
        return self.strategy == "head" or (self.strategy == "lp-ft" and epoch < self.probe_epochs)

    def apply(self, model: nn.Module, epoch: int) -> None:
        """Set requires_grad and train/eval mode: frozen BatchNorm keeps ImageNet statistics."""
        k = self.stages_trained(epoch)
        trainable = [self.head] + [m for s in self.stages[len(self.stages) - k :] for m in s]
        if not self.probing(epoch):
            trainable += self.others
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
        if k == len(self.stages):  # everything trains: modules in no stage too (dropout)
            model.train()
        for m in trainable:
            m.train()
            for p in m.parameters():
                p.requires_grad_(True)
        if self.head_dropout is not None:  # in eval with the frozen backbone it never acted
            self.head_dropout.train()
        if self.freeze_bn:
            for m in batch_norms(model):
                m.eval()
                for p in m.parameters():
                    p.requires_grad_(False)


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def make_plan(model: nn.Module, cfg: TransferConfig) -> Plan:
    head = model.get_submodule(head_name(model))
    stage_list = stages(model)
    owned = {id(p) for s in stage_list for m in s for p in m.parameters()}
    owned |= {id(p) for p in head.parameters()}
    others = [
        m for m in model.modules() if any(id(p) not in owned for p in m.parameters(recurse=False))
    ]
    return Plan(
        head, stage_list, others, cfg.strategy, cfg.unfreeze_every, cfg.probe_epochs,
        cfg.freeze_bn, head_dropout(model),
    )  # fmt: skip


def phases(cfg: TransferConfig) -> list[range]:
    """The epochs of each phase, each with its own optimizer, schedule and batch source:
    lp-ft's probe and fine-tuning; one phase for every other strategy."""
    if cfg.strategy == "lp-ft":
        return [range(cfg.probe_epochs), range(cfg.probe_epochs, cfg.epochs)]
    return [range(cfg.epochs)]


# -- optimisation -----------------------------------------------------------------------------
def _params(modules: Iterable[nn.Module], frozen: set[int] | None = None) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if id(p) not in (frozen or set())]


def make_optimizer(plan: Plan, cfg: TransferConfig, epoch: int = 0) -> torch.optim.Optimizer:
    """Parameter groups for the phase holding ``epoch``: the head at ``lr``; for ``gradual``
    each stage at a lower rate, for ``lp-ft``'s fine-tuning the whole backbone at
    ``lr * backbone_lr_factor`` (discriminative learning rates: early layers hold general
    features worth keeping). Frozen BatchNorm parameters (``freeze_bn``) are in no group."""
    frozen: set[int] = set()
    if plan.freeze_bn:
        backbone = [m for s in plan.stages for m in s] + plan.others
        frozen = {id(p) for m in backbone for b in batch_norms(m) for p in b.parameters()}
    groups = [{"params": list(plan.head.parameters()), "lr": cfg.lr}]
    backbone_rate = cfg.lr * cfg.backbone_lr_factor if cfg.strategy == "lp-ft" else cfg.lr
    if not plan.probing(epoch) and plan.others:
        groups.append({"params": _params(plan.others, frozen), "lr": backbone_rate})
    n = len(plan.stages)
    if cfg.strategy == "partial":
        groups.append({"params": _params(plan.stages[-1], frozen), "lr": cfg.lr})
    elif cfg.strategy in ("full", "gradual") or not plan.probing(epoch):
        for i, stage in enumerate(plan.stages):
            factor = cfg.lr_decay ** (n - i) if cfg.strategy == "gradual" else 1.0
            groups.append({"params": _params(stage, frozen), "lr": backbone_rate * factor})
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TransferConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Stepped once per batch; None for a constant learning rate without warm-up.

    ``warmup``: the rate rises linearly over the first ``warmup * total_steps`` steps, so the
    first, largest gradients (a head still far from fitting) cannot wreck pretrained
    weights; Adam's early steps are also the noisiest (its moment estimates are young)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps
        )
    warm = max(1, round(cfg.warmup * total_steps)) if cfg.warmup > 0 else 0
    if cfg.schedule == "constant" and not warm:
        return None

    def factor(t: int) -> float:
        ramp = min(1.0, (t + 1) / warm) if warm else 1.0
        if cfg.schedule != "cosine":
            return ramp
        return ramp * 0.5 * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
