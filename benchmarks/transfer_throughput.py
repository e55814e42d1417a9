"""`full` fine-tuning throughput through cnnlab vs a bare PyTorch loop, same model and batch.

cnnlab's `fit` (cached decoded images, per-image flip, per-batch normalisation, metrics,
progress) against a minimal inline loop over pre-normalised tensors - the fastest a training
step can be. Runs interleave (bare, cnnlab settings..., bare) so that load from other
processes hits both; the bare figure is the mean of its runs. Target: ratio >= 0.90.

    .venv/bin/python benchmarks/transfer_throughput.py                 # 96 images, 224 px
    .venv/bin/python benchmarks/transfer_throughput.py --images 320 --workers 0 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHEST = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"


def bare_loop(images, labels, arch: str, batch_size: int, seed: int = 0) -> float:
    """Images per second of a plain loop: forward, cross-entropy, backward, Adam step."""
    import numpy as np
    import torch
    from torchvision.models import get_model

    torch.manual_seed(seed)
    model = get_model(arch, num_classes=2)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pixels = torch.from_numpy(np.asarray(images))  # read once from the mapped image cache
    x_all = (pixels.permute(0, 3, 1, 2).float() / 255 - mean) / std
    y_all = torch.from_numpy(labels)
    steps = len(labels) // batch_size

    def step(i):
        x = x_all[i * batch_size : (i + 1) * batch_size]
        y = y_all[i * batch_size : (i + 1) * batch_size]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up, as cnnlab's first epoch is excluded below
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch_size / (time.perf_counter() - start)


def cnnlab_rate(cfg, prepared, device) -> float:
    """Images per second of cnnlab's second epoch (the first pays one-time warm-up)."""
    from cnnlab.console import make_console
    from cnnlab.transfer.training.fit import fit

    result = fit(cfg.replace(epochs=2), prepared, device, make_console(quiet=True))
    n = (len(prepared.splits["train"]) // cfg.batch_size) * cfg.batch_size
    return n / result.history[1]["train_seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=CHEST)
    ap.add_argument("--images", type=int, default=96, help="training images per epoch")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--workers", type=int, nargs="+", default=[0])
    ap.add_argument("--channels-last", choices=["on", "off", "both"], default="both")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/DATA.md)")

    import torch

    from cnnlab.console import make_console
    from cnnlab.machine import environment_info
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.prepare import prepare_data
    from cnnlab.transfer.device import resolve_device

    device, described = resolve_device("cpu")
    env = environment_info()
    print(
        f"machine: {env['processor']}, {env['cpu_count']} cores; torch {torch.__version__}; "
        f"device {described}"
    )
    # a small validation split: validation is not part of the throughput measured
    n_val = 16
    cfg = TransferConfig(
        arch=args.arch,
        weights="none",
        image_size=args.image_size,
        strategy="full",
        batch_size=args.batch_size,
        limit=args.images + n_val,
        val_size=n_val / (args.images + n_val),
    )
    prepared = prepare_data(args.data, cfg, make_console(quiet=True))
    train = prepared.splits["train"]
    print(
        f"{args.arch} from random init, {args.image_size} px, batch {args.batch_size}, "
        f"{len(train)} training images per epoch; Adam; augment basic (flip)"
    )

    layouts = {"on": [True], "off": [False], "both": [True, False]}[args.channels_last]
    bare = [bare_loop(train.images, train.labels, args.arch, args.batch_size)]
    print(f"bare torch loop:                      {bare[0]:6.2f} img/s")
    rates = {}
    for workers in args.workers:
        for cl in layouts:
            rate = cnnlab_rate(cfg.replace(channels_last=cl, workers=workers), prepared, device)
            rates[(cl, workers)] = rate
            print(f"cnnlab channels_last={cl!s:5} workers={workers}: {rate:6.2f} img/s")
    bare.append(bare_loop(train.images, train.labels, args.arch, args.batch_size))
    print(f"bare torch loop (again):              {bare[1]:6.2f} img/s")
    reference = sum(bare) / len(bare)
    (cl, workers), best = max(rates.items(), key=lambda kv: kv[1])
    for (c, w), rate in rates.items():
        print(f"ratio cnnlab/bare channels_last={c!s:5} workers={w}: {rate / reference:.3f}")
    print(
        f"best: channels_last={cl} workers={workers}, ratio {best / reference:.3f} (target >= 0.90)"
    )


if __name__ == "__main__":
    main()
