"""How long a study will take on this machine: its training images, and a measured throughput.

``cnnlab study plan`` ends with ``total: N trials, M training images`` (the sum over its
distinct trials of training images x epochs) and an estimate of the wall time. The estimate
comes from a short measurement of the tutorial network on this machine, run as the study's
workers run (as many processes at once, ``cores / workers`` threads each, so that they share
the cores as workers do; synthetic images: speed does not depend on the pixels): training at
batch sizes 32, 128 and 512 (one figure would misjudge a batch-size factor), inference, and
what building a model and each epoch cost besides their images. It is cached in
``~/.cache/cnnlab/throughput.json`` (``$XDG_CACHE_HOME``), keyed by CPU model, cnnlab version,
workers and threads, so only the first ``plan`` pays its ~30 s.

What it leaves out, and says: larger kernels and batch norm train slower than the tutorial
network, and a machine shared with other jobs is as fast as it was when measured, no more:
the load average per core before measuring is kept with it, and an estimate from a busy
machine says so (``study plan --remeasure`` measures again on a quiet one).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.caches import cache_root
from cnnlab.errors import CnnlabError
from cnnlab.study.spec.plan import PlannedTrial, train_split, training_images

BATCHES = (32, 128, 512)
MEASURE_IMAGES = 2048  # per epoch: about a second each on a 2-core VM
TEST_IMAGES = 10_000  # evaluated once per trial
MEASURE_TIMEOUT = 300
BUSY_LOAD = 0.5  # load average per core before measuring above which the machine was busy


@dataclass(frozen=True)
class Throughput:
    train: dict[int, float]  # batch size -> training images/s of one worker
    infer: float  # inference images/s of one worker
    key: str  # what it was measured on
    cached: bool = False
    trial_overhead: float = 0.0  # seconds to build, trace and start training a model
    epoch_overhead: float = 0.0  # seconds each epoch costs besides its images
    load: float | None = None  # the 1-minute load average per core when it was measured

    @classmethod
    def from_entry(cls, entry: dict[str, Any], key: str, cached: bool) -> Throughput:
        load = entry.get("load_per_core")
        return cls({int(b): float(r) for b, r in entry["train"].items()}, float(entry["infer"]),
                   key, cached, float(entry.get("trial_overhead", 0.0)),
                   float(entry.get("epoch_overhead", 0.0)),
                   None if load is None else float(load))  # fmt: skip

    @property
    def busy(self) -> bool:
        """Measured while other work held the cores: the estimate is too slow for a quiet
        machine (``cnnlab study plan --remeasure`` there)."""
        return self.load is not None and self.load > BUSY_LOAD

    def train_rate(self, batch: int) -> float:
        """Images/s at ``batch``: interpolated in log2(batch size) between the measured batch
        sizes, the nearest one's outside them."""
        points = sorted(self.train.items())
        if batch <= points[0][0]:
            return points[0][1]
        for (b0, r0), (b1, r1) in zip(points, points[1:], strict=False):
            if batch <= b1:
                t = (math.log2(batch) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
                return r0 + t * (r1 - r0)
        return points[-1][1]


def total_images(trials: Iterable[PlannedTrial]) -> int:
    return sum(training_images(t.config) for t in trials)


def trial_seconds(config: dict[str, Any], rate: Throughput) -> float:
    """Training, plus per epoch the validation split and as many clean training images
    (``trial.clean_images``), plus the test set once."""
    from cnnlab.study.trial import CLEAN_TRAIN_IMAGES

    epochs = int(config["epochs"])
    val = int(config["val_size"])
    clean = min(val, CLEAN_TRAIN_IMAGES, train_split(config))
    train = training_images(config) / rate.train_rate(int(config["batch_size"]))
    evaluate = (epochs * (val + clean) + TEST_IMAGES) / rate.infer
    return train + evaluate + rate.trial_overhead + epochs * rate.epoch_overhead


def wall_seconds(trials: list[PlannedTrial], rate: Throughput, workers: int) -> float:
    """Trials spread over ``workers`` parallel workers (sweeps first, so the total is a lower
    bound when the tuned trials must wait for their sweep)."""
    return sum(trial_seconds(t.config, rate) for t in trials) / max(workers, 1)


# -- the measurement and its cache ---------------------------------------------------------


def cache_file() -> Path:
    return cache_root() / "throughput.json"


def machine_key(threads: int, workers: int) -> str:
    from cnnlab.machine import environment_info

    return (f"{environment_info()['processor']} | cnnlab {__version__} | {workers} worker(s) x "
            f"{threads} thread(s)")  # fmt: skip


def throughput(
    threads: int, workers: int, measure: bool = True, remeasure: bool = False
) -> Throughput | None:
    """The cached throughput for this machine, else (``measure``) a fresh measurement;
    ``remeasure`` measures again and replaces the cached one."""
    key = machine_key(threads, workers)
    path = cache_file()
    cache = _read(path)
    if key in cache and not remeasure:
        return Throughput.from_entry(cache[key], key, cached=True)
    if not (measure or remeasure):
        return None
    load = _load_per_core()  # before the measurement's own processes start
    entry = _measure_in_subprocesses(threads, workers)
    if load is not None:
        entry["load_per_core"] = round(load, 3)
    cache[key] = entry | {"measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    with contextlib.suppress(OSError):  # a read-only home only loses the cache
        _write(path, cache)
    return Throughput.from_entry(entry, key, cached=False)


def _load_per_core() -> float | None:
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except (AttributeError, OSError):  # no load average on this platform (Windows)
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".throughput-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _measure_in_subprocesses(threads: int, workers: int) -> dict[str, Any]:
    """``workers`` processes measuring at once, as a study runs them: they share the cores
    (and the memory bandwidth) as workers do. Each in a process of its own, because
    TensorFlow's thread pools are fixed when it starts. Per field, the median worker."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = [sys.executable, "-m", "cnnlab.study.estimate", str(threads)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(workers)]  # fmt: skip
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=MEASURE_TIMEOUT)
            lines = out.strip().splitlines()
            if proc.returncode != 0 or not lines:
                why = (err.strip().splitlines() or ["no output"])[-1][:300]
                raise CnnlabError(
                    f"could not measure this machine's throughput ({why}); use --no-measure"
                )
            results.append(json.loads(lines[-1]))
    except subprocess.TimeoutExpired:
        raise CnnlabError(
            f"measuring this machine's throughput took over {MEASURE_TIMEOUT} s; use --no-measure"
        ) from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    batches = results[0]["train"]
    return {
        "train": {b: statistics.median(r["train"][b] for r in results) for b in batches},
        **{k: statistics.median(r[k] for r in results)
           for k in ("infer", "trial_overhead", "epoch_overhead")},
    }  # fmt: skip


def measure(threads: int) -> dict[str, Any]:
    """Images/s of the tutorial network training at each of ``BATCHES`` and predicting."""
    from cnnlab.runtime import configure_threads

    configure_threads(threads)
    import numpy as np

    from cnnlab.fmnist.backend import seed_everything
    from cnnlab.fmnist.callbacks import CleanTrainAccuracy, EpochClock
    from cnnlab.fmnist.config import PRESETS
    from cnnlab.fmnist.training import Splits, compile_model, fit_inputs

    seed_everything(0)
    rng = np.random.default_rng(0)
    x = rng.random((MEASURE_IMAGES, 28, 28, 1), dtype=np.float32) * 255
    y = Splits.one_hot(rng.integers(0, 10, MEASURE_IMAGES))
    config = PRESETS["tutorial"]
    # what a trial costs besides its images, on 256 of them with validation and the clean
    # training evaluation: building and tracing a model, and each further epoch
    tiny = fit_inputs(x[:256], y[:256], 128, shuffle=True, seed=0)

    def fit(model, epochs: int) -> float:
        start = time.perf_counter()
        model.fit(**tiny, epochs=epochs, verbose=0, validation_data=(x[:256], y[:256]),
                  callbacks=[CleanTrainAccuracy(x[:256], y[:256].argmax(axis=1))])  # fmt: skip
        return time.perf_counter() - start

    start = time.perf_counter()
    model = compile_model(config, 2)
    fit(model, 1)
    first = time.perf_counter() - start
    one, four = fit(model, 1), fit(model, 4)
    epoch_overhead = max((four - one) / 3, 0.0)
    trial_overhead = max(first - epoch_overhead, 0.0)
    model = compile_model(config, MEASURE_IMAGES // config.batch_size)
    train = {}
    for batch in BATCHES:
        # the first epoch traces the step for this batch size; then the median of 3 epochs,
        # since a machine shared with other jobs makes single epochs vary by 2x
        clock = EpochClock()
        model.fit(**fit_inputs(x, y, batch, shuffle=True, seed=0), epochs=4, verbose=0,
                  callbacks=[clock])  # fmt: skip
        seconds = sorted(row["seconds"] for row in clock.history[1:])[1]
        train[str(batch)] = MEASURE_IMAGES / seconds
    model.predict(x, batch_size=1024, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=1024, verbose=0)
    infer = MEASURE_IMAGES / (time.perf_counter() - start)
    return {"train": train, "infer": infer, "trial_overhead": trial_overhead,
            "epoch_overhead": epoch_overhead}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
