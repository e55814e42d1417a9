"""A fake trainer with known effects, so the engine can be tested in seconds without Keras.

Accuracy = 0.85 + the effect of each changed config field + seed noise; per-image correctness
comes from a fixed per-image difficulty, so paired trials are correlated like real ones.
Histories hold ``clean_train_accuracy`` as the real trainer's do: without dropout or
augmentation the fake overfits (a larger gap), with them it does not.

The study engine loads a trainer by name (``"module:factory"``) in its own worker processes,
so the fake is configured through that name: ``name(epoch_seconds=1.0, log=path)`` gives
``"fake_trainer:{...options as JSON...}"``, which this module's ``__getattr__`` turns back into
``trainer`` with those keyword arguments. Plain ``"fake_trainer:trainer"`` has every default.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import time
import zlib

import numpy as np

from cnnlab.fmnist.config import DEFAULT_LR
from cnnlab.study.spec.plan import train_split

N_TEST = 2000
LABELS = np.random.default_rng(0).integers(0, 10, N_TEST)
DIFFICULTY = np.random.default_rng(1).random(N_TEST)
DEFAULT = "fake_trainer:trainer"


def name(**options) -> str:
    """The trainer name (for ``run_study(trainer=...)``) of the fake with ``options``, the
    keyword arguments of ``trainer``; an unknown option is a TypeError here, not in a worker."""
    inspect.signature(trainer).bind(None, **options)
    return f"fake_trainer:{json.dumps(options, sort_keys=True)}" if options else DEFAULT


def __getattr__(attr: str):
    """``fake_trainer:{"log": ...}`` (see ``name``) -> ``trainer`` with those options."""
    if attr.startswith("{"):
        return functools.partial(trainer, **json.loads(attr))
    raise AttributeError(attr)


def accuracy(config, batch_norm_effect: float = 0.02, sgd_best: float | None = None) -> float:
    acc = 0.85
    acc += {3: 0.0, 5: 0.004, 7: -0.02}.get(config.kernel_size, 0.0)
    acc += batch_norm_effect if config.batch_norm else 0.0
    if config.batch_size > 128 and config.lr is not None and config.lr <= 1e-3:
        acc -= 0.03  # large batches at a fixed LR take too few steps
    acc -= {"sgd": 0.05, "adagrad": 0.02}.get(config.optimizer, 0.0)
    if sgd_best and config.optimizer == "sgd":
        acc -= 0.05 * math.log(config.learning_rate / (DEFAULT_LR["sgd"] * float(sgd_best))) ** 2
    rng = np.random.default_rng(zlib.crc32(repr(config).encode()))
    return float(acc + rng.normal(0, 0.002))


def _started(log: str | None) -> int:
    if not log or not os.path.exists(log):
        return 0
    with open(log) as f:
        return sum(line.startswith("start ") for line in f)


def trainer(
    data_dir=None,
    *,
    epoch_seconds: float = 0.0,
    log: str | None = None,
    fail_kernel: int | None = None,
    unavailable: bool = False,
    sgd_best: float | None = None,
    batch_norm_effect: float = 0.02,
    stall_after: int | None = None,
):
    """The fake trainer. ``epoch_seconds``: each epoch takes this long. ``log``: a file where
    each training appends ``start PID SEED KERNEL`` and ``end ...`` lines. ``fail_kernel``:
    trials of that kernel size crash. ``unavailable``: building the trainer fails as with no
    data. ``sgd_best``: SGD's best learning rate as a multiple of its default (accuracy falls
    with the squared log distance from it, so a sweep has a known optimum to bracket).
    ``batch_norm_effect``: what batch norm adds to accuracy. ``stall_after`` (needs ``log``):
    once that many trainings have started, the next ones hang (until signalled or killed),
    so a test can interrupt a trial that is certainly running, without guessing a time."""
    if unavailable:
        from cnnlab.errors import DataUnavailable

        raise DataUnavailable("Fashion-MNIST not found (fake)")

    def note(event, config):
        if log:
            with open(log, "a") as f:
                f.write(f"{event} {os.getpid()} {config.seed} {config.kernel_size}\n")

    def run(config):
        if config.kernel_size == fail_kernel:
            raise RuntimeError("simulated crash")
        stall = stall_after is not None and _started(log) >= stall_after
        note("start", config)
        while stall:  # a training that never ends; SIGINT/SIGTERM/SIGKILL stop it
            time.sleep(0.05)
        acc = accuracy(config, batch_norm_effect, sgd_best)
        overfit = 0.12 if config.dropout == 0 and not config.augment else 0.02
        history = []
        for epoch in range(1, config.epochs + 1):
            time.sleep(epoch_seconds)
            frac = epoch / config.epochs
            val = acc * (0.8 + 0.2 * frac) - 0.01
            history.append({
                "epoch": epoch, "train_loss": 1.0 - 0.5 * frac, "val_loss": 1.05 - 0.5 * frac,
                "train_accuracy": min(acc * (0.8 + 0.22 * frac), 1.0),
                "val_accuracy": val, "lr": 0.001, "seconds": epoch_seconds or 0.1,
                "clean_train_accuracy": min(val + overfit * frac, 1.0),
            })  # fmt: skip
        noise = np.random.default_rng(config.seed).normal(0, 0.03, N_TEST)
        correct = DIFFICULTY + noise < acc
        pred = np.where(correct, LABELS, (LABELS + 1) % 10)
        metrics = {
            "test_accuracy": float(correct.mean()), "test_loss": 1.0 - acc,
            "balanced_accuracy": float(correct.mean()), "macro_f1": float(correct.mean()) - 0.001,
            "ece": 0.01, "params": 1000 * config.kernel_size**2,
            "train_seconds": 0.1 * config.epochs, "images_per_second": 1000.0,
            "epochs_run": config.epochs, "train_images": train_split(config.to_dict()),
        }  # fmt: skip
        note("end", config)
        return {
            "history": history,
            "metrics": metrics,
            "test_pred": pred,
            "test_labels": LABELS,
            "train_seconds": 0.1 * config.epochs,
            "call_seconds": 0.1 * config.epochs,
        }

    return run
