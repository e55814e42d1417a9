"""Engine overhead of ``cnnlab study run``: wall-clock of a small study vs the time its trials
spent inside the trainer, measured in the same run.

    python benchmarks/study_overhead.py [--workers 1] [--train-limit 3000] [--epochs 3]

The spec is the ``smoke`` profile's design (16 trials, 2 seeds) at the ``quick`` profile's
budget (3,000 images, 3 epochs), so that fixed costs (worker start-up, TensorFlow import, data
parsing: a few seconds per worker) are amortised as they are in a real study. Printed:

- wall: the whole ``run_study`` call (spawning workers, storage, every trial);
- trainer: the sum over trials of the trainer call (``cnnlab.fmnist.training.train``: model
  build, fit, validation and test evaluation), each timed inside its worker;
- fit: the sum of the trainer's own training time (``model.fit`` without evaluation);
- overhead = wall x workers / trainer - 1 (the engine's share; target <= 5%);
- the same net of the framework's start-up: a fresh ``python -c "import keras"`` timed in the
  same run, once per worker. Any process that trains with Keras pays it, a plain loop over the
  same trials included, and a study pays it once per worker however many trials it runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

from cnnlab.study import load_spec
from cnnlab.study import storage as st
from cnnlab.study.run import run_study
from cnnlab.study.spec import parse_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=3000)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    source = dict(load_spec(profile="smoke").source)
    source["name"] = "overhead"
    source["baseline"] = dict(source["baseline"], train_limit=args.train_limit,
                              epochs=args.epochs, val_size=1000)  # fmt: skip
    spec = parse_spec(source)
    framework = framework_startup()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        started_at = datetime.datetime.now()
        start = time.perf_counter()
        summary = run_study(spec, url, "overhead", args.workers, progress=False)
        wall = time.perf_counter() - start
        study = st.load_study(st.open_storage(url), "overhead")
        records = st.completed_records(study)
        trials = study.get_trials(deepcopy=False)
    trainer = sum(r.seconds for r in records.values())
    fit = sum(r.metrics["train_seconds"] for r in records.values())
    busy = wall * args.workers
    print(
        f"machine: {os.cpu_count()} CPUs; workers {args.workers}; {summary.complete} trials "
        f"of {args.train_limit} images x {args.epochs} epochs"
    )
    print(f"wall-clock of the study        {wall:8.1f} s")
    print(f"sum of trainer calls           {trainer:8.1f} s  (fit only: {fit:.1f} s)")
    print(f"engine overhead                {100 * (busy / trainer - 1):8.1f} %  (target <= 5%)")
    net = (busy - args.workers * framework) / trainer - 1
    print(f"framework start-up (import keras) {framework:6.1f} s per worker, timed alone")
    print(f"overhead net of that start-up  {100 * net:8.1f} %")
    print(f"trainer's own eval/build share {100 * (1 - fit / trainer):8.1f} % of its calls")
    _breakdown(trials, records, started_at, wall)


def framework_startup(repeats: int = 2) -> float:
    """Seconds a fresh Python process takes to import Keras and its backend (best of N)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import keras"], check=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))  # fmt: skip
        times.append(time.perf_counter() - start)
    return min(times)


def _breakdown(trials, records, started_at, wall) -> None:
    """Where the engine's time goes, from the trials' start/complete stamps (same clock)."""
    by_worker: dict[int, list] = {}
    for t in trials:
        by_worker.setdefault(t.system_attrs["cnnlab_worker"]["pid"], []).append(t)
    first_inside, inside, gaps = [], [], []
    for ts in by_worker.values():
        ts.sort(key=lambda t: t.datetime_start)
        for i, t in enumerate(ts):
            outside = (t.datetime_complete - t.datetime_start).total_seconds()
            outside -= records[t.user_attrs["key"]].seconds
            (first_inside if i == 0 else inside).append(outside)
            if i:
                gaps.append((t.datetime_start - ts[i - 1].datetime_complete).total_seconds())
    first_start = min(t.datetime_start for t in trials)
    last_end = max(t.datetime_complete for t in trials)
    mean = sum(inside) / max(len(inside), 1)
    gap = sum(gaps) / max(len(gaps), 1)
    print("breakdown (seconds):")
    print(f"  start-up until the first claim    {(first_start - started_at).total_seconds():6.1f}")
    print(f"  first trial per worker: TensorFlow import + data  {max(first_inside):6.1f}")
    print(f"  per later trial: claim/record inside the trial    {mean:6.2f}")
    print(f"  per later trial: between trials                   {gap:6.2f}")
    print(f"  after the last trial (shut-down, final read)      "
          f"{wall - (last_end - started_at).total_seconds():6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
