"""Optimizers by name and learning-rate schedules (keras.ops only, so any backend runs them).

Cosine decay with warm-up is Keras' own ``CosineDecay``, so a saved ``model.keras`` names only
Keras classes. The one-cycle schedule has no Keras equivalent (its rise is a cosine, Keras'
warm-up a line): it is a ``LearningRateSchedule`` subclass registered with Keras, and
:func:`is_builtin_schedule` tells the code that saves a model to replace it there
(:func:`cnnlab.fmnist.artifacts.save_model`), so that plain Keras loads the file too.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from cnnlab.fmnist.config import TrainConfig


def warmup_cosine(peak_lr: float, total_steps: int, warmup_steps: int = 0):
    """Linear warm-up from ``peak/warmup_steps`` to ``peak``, then cosine decay to zero.

    Warm-up keeps the first large-gradient steps (random weights, batch-norm statistics not
    settled) from throwing the weights far away; cosine decay ends with small, fine steps.
    Keras' schedule counts steps from 0 and warms up from ``initial_learning_rate``; this one
    warms up from the first step on (to ``peak/warmup_steps``) and reaches zero on the last.
    Starting Keras' warm-up one step earlier (``warmup_steps - 1``: -1 without warm-up shifts
    the cosine by one step) gives exactly that curve (tests/fmnist/test_optim.py).
    """
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak_lr / max(warmup_steps, 1),
        decay_steps=max(total_steps - warmup_steps, 1),
        warmup_target=peak_lr,
        warmup_steps=warmup_steps - 1,
    )


@keras.saving.register_keras_serializable(package="cnnlab")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy (as PyTorch's OneCycleLR with cosine annealing): rise from
    ``peak/div_factor`` to ``peak`` over the first ``pct_start`` of training, then anneal to
    ``peak/(div_factor*final_div_factor)``. The high middle phase explores and regularises;
    the long tail converges. (Momentum is not cycled: Keras optimizers fix it at creation.)"""

    def __init__(
        self,
        peak_lr: float,
        total_steps: int,
        pct_start: float = 0.25,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.peak_lr / self.div_factor
        end = start / self.final_div_factor
        rise_steps = max(self.pct_start * self.total_steps, 1.0)
        fall_steps = max(self.total_steps - rise_steps, 1.0)

        def anneal(lo, hi, t):  # cosine from hi (t=0) to lo (t=1)
            return lo + 0.5 * (hi - lo) * (1.0 + ops.cos(math.pi * ops.clip(t, 0.0, 1.0)))

        rising = anneal(self.peak_lr, start, step / rise_steps)
        falling = anneal(end, self.peak_lr, (step - rise_steps) / fall_steps)
        return ops.where(step < rise_steps, rising, falling)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """A float for the constant schedule, otherwise a schedule over the whole run."""
    peak = config.learning_rate
    total = steps_per_epoch * config.epochs
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "cosine":
        return warmup_cosine(peak, total, warmup)
    if config.schedule == "onecycle":
        pct = config.warmup_epochs / config.epochs if config.warmup_epochs else 0.25
        return OneCycle(peak, total, pct_start=pct)
    return peak


def is_builtin_schedule(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether ``optimizer``'s learning rate is a number or a schedule that Keras itself
    defines (so ``keras.saving.load_model`` rebuilds it without cnnlab)."""
    rate = optimizer.get_config()["learning_rate"]
    return not isinstance(rate, dict) or str(rate.get("module", "")).startswith("keras.")


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
    lr = learning_rate(config, steps_per_epoch)
    name = config.optimizer
    opt = keras.optimizers
    if name == "sgd":
        return opt.SGD(lr)
    if name in ("momentum", "nesterov"):
        return opt.SGD(lr, momentum=0.9, nesterov=name == "nesterov")
    if name == "rmsprop":
        return opt.RMSprop(lr)
    if name == "adagrad":
        return opt.Adagrad(lr)
    if name == "adadelta":
        return opt.Adadelta(lr)
    if name == "adam":
        return opt.Adam(lr)
    if name == "adamw":
        return opt.AdamW(lr, weight_decay=config.decoupled_weight_decay)
    if name == "nadam":
        return opt.Nadam(lr)
    raise AssertionError(f"validated optimizer {name!r} has no factory")  # pragma: no cover
