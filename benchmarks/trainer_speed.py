"""Training speed of study trials: today's trainer against the settings that change nothing but
speed (Keras ``steps_per_execution``; XLA ``jit_compile``, which needs TensorFlow's op
determinism off), one process, interleaved rounds.

A study worker trains with one CPU thread (two workers share two cores), so that is the default
here. For each batch size, every variant trains the same `tutorial` network on the same images
and seed; the rounds alternate the order of the variants so drifting load hits all alike. The
first epoch of each run (graph tracing) is left out. Prints images/s per variant, the ratio
against the reference (spe=1, no XLA: the trainer before this benchmark), and whether the final
training accuracy matches the reference's (a speed setting must not change the result).

    python benchmarks/trainer_speed.py [--batch-sizes 32,128,512] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# name -> (steps per execution: None = the trainer's rule, or a number; jit_compile;
# TensorFlow's op determinism). cnnlab trains with op determinism on (a seed reproduces a
# trial), and Keras turns XLA off under it ("Model doesn't support jit_compile=True"): XLA
# only compiles with determinism off, which may change the result.
VARIANTS = {
    "reference (spe 1)": (1, "auto", True),
    "cnnlab (spe rule)": (None, "auto", True),
    "XLA, nondeterministic": (None, True, False),
}


def run(variant, config, splits, y_train):

    from cnnlab.fmnist.backend import seed_everything
    from cnnlab.fmnist.callbacks import EpochClock
    from cnnlab.fmnist.training import compile_model, fit_inputs, steps_per_execution

    spe, jit, deterministic = variant
    seed_everything(config.seed)  # turns op determinism on
    if not deterministic:
        from tensorflow.python.framework.config import disable_op_determinism

        disable_op_determinism()
    steps = -(-len(splits.x_train) // config.batch_size)
    model = compile_model(config, steps, execution_steps=spe, jit_compile=jit)
    clock = EpochClock()
    train_in = fit_inputs(splits.x_train, y_train, config.batch_size, shuffle=True, seed=0)
    model.fit(**train_in, epochs=config.epochs, verbose=0, callbacks=[clock])
    seconds = [row["seconds"] for row in clock.history[1:]]  # the first epoch traces the graph
    used = spe or steps_per_execution(config.batch_size)
    return len(splits.x_train) * len(seconds) / sum(seconds), clock.history[-1]["train_loss"], used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="32,128,512", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every variant")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; first = warm-up")
    parser.add_argument("--train-limit", type=int, default=12000, help="training images")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (a study worker: 1)")
    args = parser.parse_args()

    from cnnlab.runtime import configure_threads

    configure_threads(args.threads)
    import keras

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.fmnist.config import preset
    from cnnlab.fmnist.training import Splits, make_splits
    from cnnlab.machine import environment_info

    env = environment_info()
    print(f"backend {keras.backend.backend()}, {env['processor']}, {args.threads} thread(s), "
          f"{args.train_limit} images, {args.epochs} epochs per run (first excluded)")  # fmt: skip
    data = load_fashion_mnist(progress=False)
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        config = preset("tutorial").replace(
            batch_size=batch, epochs=args.epochs, train_limit=args.train_limit
        )
        splits = make_splits(config, data)
        y_train = Splits.one_hot(splits.y_train)
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        losses: dict[str, float] = {}
        used: dict[str, int] = {}
        for r in range(args.rounds):
            names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in names:
                rate, loss, used[name] = run(VARIANTS[name], config, splits, y_train)
                rates[name].append(rate)
                losses[name] = loss
        ref = statistics.median(rates["reference (spe 1)"])
        for name, v in rates.items():
            same = "same" if abs(losses[name] - losses["reference (spe 1)"]) < 1e-4 else "DIFFERS"
            print(f"batch {batch:>4} {name:<18} spe {used[name]:>2}: "
                  f"{statistics.median(v):6.0f} images/s (median of {len(v)}), ratio "
                  f"{statistics.median(v) / ref:.2f}; final loss {losses[name]:.5f} ({same})",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
