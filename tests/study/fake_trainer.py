"""A fake trainer with known effects, so the engine can be tested in seconds without Keras.

Accuracy = 0.85 + the effect of each changed config field + seed noise; per-image correctness
comes from a fixed per-image difficulty, so paired trials are correlated like real ones.
``FAKE_EPOCH_SECONDS`` (env) slows every epoch down, for kill-and-resume tests.
``FAKE_SGD_BEST`` (env): SGD's best learning rate as a multiple of its default; accuracy then
falls with the squared log distance from it, so a sweep has a known optimum to bracket.
Histories hold ``clean_train_accuracy`` as the real trainer's do: without dropout or
augmentation the fake overfits (a larger gap), with them it does not.
"""

from __future__ import annotations

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


def accuracy(config) -> float:
    acc = 0.85
    acc += {3: 0.0, 5: 0.004, 7: -0.02}.get(config.kernel_size, 0.0)
    acc += 0.02 if config.batch_norm else 0.0
    acc -= 0.0 if config.lr is None or config.batch_size <= 128 else 0.0
    if config.batch_size > 128 and config.lr is not None and config.lr <= 1e-3:
        acc -= 0.03  # large batches at a fixed LR take too few steps
    acc -= {"sgd": 0.05, "adagrad": 0.02}.get(config.optimizer, 0.0)
    best = os.environ.get("FAKE_SGD_BEST")
    if best and config.optimizer == "sgd":
        acc -= 0.05 * math.log(config.learning_rate / (DEFAULT_LR["sgd"] * float(best))) ** 2
    rng = np.random.default_rng(zlib.crc32(repr(config).encode()))
    return float(acc + rng.normal(0, 0.002))


def trainer(data_dir=None):
    if os.environ.get("FAKE_TRAINER_FAIL"):
        from cnnlab.errors import DataUnavailable

        raise DataUnavailable("Fashion-MNIST not found (fake)")
    epoch_seconds = float(os.environ.get("FAKE_EPOCH_SECONDS", "0"))
    log = os.environ.get("FAKE_TRAINER_LOG")

    def run(config):
        if str(config.kernel_size) == os.environ.get("FAKE_FAIL_KERNEL"):
            raise RuntimeError("simulated crash")
        if log:
            with open(log, "a") as f:
                f.write(f"start {os.getpid()} {config.seed} {config.kernel_size}\n")
        acc = accuracy(config)
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
        if log:
            with open(log, "a") as f:
                f.write(f"end {os.getpid()} {config.seed} {config.kernel_size}\n")
        return {
            "history": history,
            "metrics": metrics,
            "test_pred": pred,
            "test_labels": LABELS,
            "train_seconds": 0.1 * config.epochs,
            "call_seconds": 0.1 * config.epochs,
        }

    return run
