"""Seconds of training until test accuracy first reaches 91/92/93/94%, per preset and seed.

Test accuracy is checked once per epoch by a callback whose time is not counted (nor is
validation): the clock counts training steps only. Each preset runs its full epoch budget,
because its learning-rate schedule is planned over that budget. Presets are tuned on the
validation split; this benchmark is the only place their test accuracy is watched per epoch.

    python benchmarks/time_to_accuracy.py [--presets tutorial,fast,strong] [--seeds 3]
        [--epochs fast=8,strong=30] [--targets 0.91,0.92,0.93,0.94] [--json results.json]
        [--tta-from-epoch strong=13]

With --tta-from-epoch, earlier epochs of that preset are scored on one view per image (the
10 views of strong's TTA cost about 50 s of evaluation per epoch); a target first reached in
such an epoch might have been reached earlier with TTA, so its time is an upper bound.
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def per_preset(text: str | None) -> dict[str, int]:
    """``"fast=8,strong=30"`` -> ``{"fast": 8, "strong": 30}`` (epoch numbers per preset)."""
    epochs = {}
    for item in filter(None, (text or "").split(",")):
        name, _, number = item.partition("=")
        epochs[name.strip()] = int(number)
    return epochs


def one_run(config, data, tta_from_epoch: int = 1) -> dict:
    import numpy as np

    from accuracy_probe import TestAccuracyProbe  # beside this script
    from cnnlab.fmnist.training import train

    x_test = data.x_test.reshape(-1, 28, 28, 1).astype(np.float32)
    probe = TestAccuracyProbe(
        x_test, data.y_test, **config.tta_options, tta_from_epoch=tta_from_epoch
    )
    result = train(config, data, progress=False, callbacks=[probe])
    elapsed, total = [], 0.0
    for row in result.history:
        total += row["seconds"]
        elapsed.append(total)
    return {
        "seed": config.seed,
        "seconds": elapsed,  # cumulative training seconds at the end of each epoch
        "test_accuracy": probe.accuracy,  # as the preset evaluates (with its TTA, if any)
        "plain_test_accuracy": probe.plain_accuracy,  # one view per image
        "val_accuracy": [row["val_accuracy"] for row in result.history],
        "tta_from_epoch": tta_from_epoch,
        "images_per_second": result.metrics["images_per_second"],
    }


def time_to(run: dict, target: float) -> float | None:
    for seconds, acc in zip(run["seconds"], run["test_accuracy"], strict=True):
        if acc >= target:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tutorial,fast,strong")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per preset")
    parser.add_argument("--epochs", default="", help="epoch budgets, e.g. fast=8,strong=30")
    parser.add_argument("--targets", default="0.91,0.92,0.93,0.94")
    parser.add_argument(
        "--tta-from-epoch", default="", help="score with TTA from this epoch on, e.g. strong=13"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default all)")
    parser.add_argument("--json", default=None, help="also write every run's curve here")
    args = parser.parse_args()

    from cnnlab.runtime import configure_threads

    configure_threads(args.threads)
    import keras

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.fmnist.config import preset
    from cnnlab.machine import environment_info

    data = load_fashion_mnist()
    targets = [float(t) for t in args.targets.split(",")]
    budgets = per_preset(args.epochs)
    tta_from = per_preset(args.tta_from_epoch)
    env = environment_info()
    print(f"backend {keras.backend.backend()}, {env['processor']}, {env['cpu_count']} cores")

    results: dict[str, list[dict]] = {}
    for name in args.presets.split(","):
        config = preset(name)
        if name in budgets:
            config = config.replace(epochs=budgets[name])
        runs = results[name] = []
        for seed in range(args.seeds):
            run = one_run(config.replace(seed=seed), data, tta_from.get(name, 1))
            runs.append(run)
            print(
                f"{name} seed {seed}: {config.epochs} epochs, {run['seconds'][-1]:.0f} s, "
                f"{run['images_per_second']:.0f} images/s; test accuracy per epoch "
                + " ".join(f"{a:.4f}" for a in run["test_accuracy"])
                + ("; without TTA " + " ".join(f"{a:.4f}" for a in run["plain_test_accuracy"])
                   if config.tta else ""),
                flush=True,
            )  # fmt: skip

    print(f"\n{'preset':<10}{'target':>8}{'reached':>10}  seconds to reach (mean ± sd)")
    for name, runs in results.items():
        for target in targets:
            times = [t for t in (time_to(r, target) for r in runs) if t is not None]
            if times:
                sd = statistics.stdev(times) if len(times) > 1 else 0.0
                shown = f"{statistics.mean(times):.0f} ± {sd:.0f}"
            else:
                shown = "-"
            print(f"{name:<10}{target:>8.2%}{len(times):>6}/{len(runs):<3}  {shown}")
        finals = [r["test_accuracy"][-1] for r in runs]
        sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
        total = statistics.mean(r["seconds"][-1] for r in runs)
        print(f"{name:<10}  final test accuracy {statistics.mean(finals):.4f} ± {sd:.4f} "
              f"after {total:.0f} s of training")  # fmt: skip
        if preset(name).tta:
            plain = [r["plain_test_accuracy"][-1] for r in runs]
            sd = statistics.stdev(plain) if len(plain) > 1 else 0.0
            print(f"{name:<10}  without test-time augmentation {statistics.mean(plain):.4f} "
                  f"± {sd:.4f}")  # fmt: skip
    if args.json:
        from cnnlab.files import write_json

        write_json(args.json, {"environment": env, "targets": targets, "runs": results})
        print(f"curves: {args.json}")


if __name__ == "__main__":
    main()
