"""Frozen-backbone `head` training: cached features vs recomputing the backbone every epoch.

Both runs go through cnnlab's own `fit` on the same decoded chest X-ray subset, same process:
`--cache-features` (backbone once per image and view, then a linear layer on cached vectors)
against `--no-cache-features` (the frozen backbone runs forward on every batch of every epoch).
Target: epochs after the first >= 20x faster with the cache.

    .venv/bin/python benchmarks/transfer_head_cache.py              # 256 images, 224 px
    .venv/bin/python benchmarks/transfer_head_cache.py --images 5216 --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHEST = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=CHEST)
    ap.add_argument("--images", type=int, default=256, help="train-folder images used")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--arch", default="resnet18")
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/DATA.md)")

    import torch

    from cnnlab.console import make_console
    from cnnlab.machine import environment_info
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data.prepare import prepare_data
    from cnnlab.transfer.device import resolve_device
    from cnnlab.transfer.training.fit import fit

    # ImageNet ResNet weights cannot be downloaded here; speed does not depend on the values.
    weights = "imagenet" if args.arch == "efficientnet_lite0" else "none"
    cfg = TransferConfig(
        arch=args.arch,
        weights=weights,
        image_size=args.image_size,
        strategy="head",
        augment="basic",
        epochs=args.epochs,
        limit=args.images,
        val_size=0.125,
    )
    device, described = resolve_device("auto")
    env = environment_info()
    print(
        f"machine: {env['processor']}, {env['cpu_count']} cores; torch "
        f"{torch.__version__}; device {described}"
    )
    quiet = make_console(quiet=True)
    prepared = prepare_data(args.data, cfg, quiet)
    n_train, n_val = len(prepared.splits["train"]), len(prepared.splits["val"])
    print(
        f"{args.arch} ({weights}), {args.image_size} px, {n_train} train + {n_val} val "
        f"images, batch {cfg.batch_size}, augment basic (2 cached views)"
    )

    recompute = fit(cfg.replace(cache_features=False), prepared, device, quiet)
    cached = fit(cfg, prepared, device, quiet)

    per_epoch = [row["seconds"] for row in recompute.history]
    cached_epochs = [row["seconds"] for row in cached.history]
    build = cached.train_seconds - sum(cached_epochs)
    later = statistics.mean(cached_epochs[1:]) if len(cached_epochs) > 1 else cached_epochs[0]
    slow = statistics.mean(per_epoch)
    print(
        f"recompute backbone every epoch: {slow:8.3f} s/epoch (train + val), "
        f"epochs {', '.join(f'{s:.2f}' for s in per_epoch)}"
    )
    print(
        f"feature cache: building {build:8.3f} s once; first epoch {cached_epochs[0]:.4f} s; "
        f"later epochs {later:.4f} s/epoch"
    )
    print(f"speed-up of epochs after the first: {slow / later:,.0f}x (target >= 20x)")
    steps_slow = statistics.mean(r["train_seconds"] for r in recompute.history)
    steps_fast = statistics.mean(r["train_seconds"] for r in cached.history[1:] or cached.history)
    print(
        f"training steps alone (no validation): {steps_slow:.3f} vs {steps_fast:.5f} s/epoch, "
        f"{steps_slow / steps_fast:,.0f}x"
    )
    first_total = build + cached_epochs[0]
    print(
        f"first epoch including the cache build: {first_total:.2f} s "
        f"({first_total / slow:.2f}x one recomputing epoch; 2 views = 2 backbone passes)"
    )
    same = abs(recompute.history[-1]["val_accuracy"] - cached.history[-1]["val_accuracy"])
    print(
        f"val accuracy after {args.epochs} epochs: recompute "
        f"{recompute.history[-1]['val_accuracy']:.3f}, cached "
        f"{cached.history[-1]['val_accuracy']:.3f} (|diff| {same:.3f})"
    )


if __name__ == "__main__":
    main()
