"""Training throughput of the `tutorial` network: cnnlab's `train` vs a plain inline `model.fit`.

Both train the same Keras `mnist_convnet` on the same images, in the same process and backend,
alternating (plain, cnnlab, cnnlab, plain, ...) so drifting machine load hits both alike. Both
are timed the same way: seconds per epoch from epoch start to the start of validation, and the
first epoch (graph tracing) is left out. Prints images/s of each and the ratio cnnlab/plain;
target >= 0.97 (cnnlab adds no overhead). On a machine shared with other work, the
fastest-epoch ratio is the steadier figure.

    python benchmarks/throughput.py [--rounds 3] [--epochs 3] [--train-limit 20000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def plain_fit(x_train, y_train, x_val, y_val, epochs: int, seed: int) -> list[float]:
    """The keras-io mnist_convnet example, written out; returns training seconds per epoch."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x_train = x_train.astype("float32") / 255
    x_val = x_val.astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train, 10)
    y_val = keras.utils.to_categorical(y_val, 10)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):  # the same interval cnnlab's EpochClock measures
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.stop = time.perf_counter(), None

        def on_test_begin(self, logs=None):
            self.stop = self.stop or time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append((self.stop or time.perf_counter()) - self.start)

    timer = Timer()
    timer.seconds = []
    model.fit(
        x_train, y_train, batch_size=128, epochs=epochs, validation_data=(x_val, y_val),
        verbose=0, callbacks=[timer],
    )  # fmt: skip
    return timer.seconds


def cnnlab_fit(config, data, progress: bool) -> list[float]:
    from cnnlab.fmnist.training import train

    result = train(config, data, progress=progress)
    return [row["seconds"] for row in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; first is warm-up")
    parser.add_argument("--train-limit", type=int, default=20000, help="training images")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default all)")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True,
        help="cnnlab with its Rich progress bars, as users see it (default on)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")

    from cnnlab.runtime import configure_threads

    configure_threads(args.threads)
    import keras

    from cnnlab.data.fashion_mnist import load_fashion_mnist
    from cnnlab.fmnist.config import preset
    from cnnlab.fmnist.training import make_splits
    from cnnlab.machine import environment_info

    data = load_fashion_mnist()
    config = preset("tutorial").replace(epochs=args.epochs, train_limit=args.train_limit)
    splits = make_splits(config, data)
    n = len(splits.x_train)
    env = environment_info()
    print(
        f"backend {keras.backend.backend()}, {env['processor']}, {env['cpu_count']} cores, "
        f"{n} training images, {args.epochs} epochs per run (first = warm-up, excluded)"
    )

    rates: dict[str, list[float]] = {"plain": [], "cnnlab": []}
    fastest: dict[str, float] = {"plain": float("inf"), "cnnlab": float("inf")}
    for r in range(args.rounds):
        order = ("plain", "cnnlab") if r % 2 == 0 else ("cnnlab", "plain")
        for who in order:
            if who == "plain":
                seconds = plain_fit(
                    splits.x_train, splits.y_train, splits.x_val, splits.y_val, args.epochs, r
                )
            else:
                seconds = cnnlab_fit(config.replace(seed=r), data, args.progress)
            rate = n * (len(seconds) - 1) / sum(seconds[1:])
            rates[who].append(rate)
            fastest[who] = min(fastest[who], *seconds[1:])
            print(f"round {r + 1} {who:<6} {rate:7.0f} images/s  (epochs: "
                  + ", ".join(f"{s:.1f}s" for s in seconds) + ")", flush=True)  # fmt: skip

    ratios = [c / p for c, p in zip(rates["cnnlab"], rates["plain"], strict=True)]
    for who in ("plain", "cnnlab"):
        v = rates[who]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        print(f"{who:<6}: {statistics.mean(v):7.0f} ± {sd:.0f} images/s (mean ± sd, {len(v)} runs)")
    # Other processes only ever slow an epoch down, so the fastest epoch of each side is the
    # estimate least disturbed by a shared machine.
    best = {who: n / s for who, s in fastest.items()}
    print(f"fastest epoch: plain {best['plain']:.0f}, cnnlab {best['cnnlab']:.0f} images/s; "
          f"ratio {best['cnnlab'] / best['plain']:.3f}")  # fmt: skip
    ratio = statistics.median(ratios)
    verdict = "OK" if ratio >= 0.97 else "BELOW TARGET"
    print(f"ratio cnnlab/plain: median {ratio:.3f} per round "
          f"({', '.join(f'{x:.3f}' for x in ratios)}); target >= 0.97: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
