"""Peak memory of `transfer train`'s data path against the number of images (image cache).

Builds a synthetic folder of small JPEGs (two classes, 64 x 64 noise textures, numpy +
Pillow, in a temporary folder), then for each folder size runs, in a fresh process, the data
preparation (`splits.prepare_data`: hashing, decoding into the on-disk image cache, splits,
duplicate search) and one pass over the training and validation batches (`ImageSource`,
augmentation and normalisation included), first on an empty cache ("cold": every image
decoded) and again on the filled one ("warm": none decoded). Each line shows the process's
peak RSS (`getrusage`) next to the size of the cache on disk and of the decoded images, which
runs used to hold in RAM. The last line is the ratio of the relative growth of peak RSS to
the relative growth of the image count between the smallest and largest folder (cold runs):
1 means memory grows with the folder, 0 that it does not.

    .venv/bin/python benchmarks/transfer_cache_memory.py                  # 5,000 and 20,000, 224 px
    .venv/bin/python benchmarks/transfer_cache_memory.py --image-size 128 --sizes 2000,8000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("a", "b")


def make_folder(root: Path, n: int, seed: int = 0) -> None:
    """``n`` 64 x 64 JPEGs, half per class: smooth noise, so no two are near-duplicates."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            img = coarse.resize((64, 64), Image.Resampling.BICUBIC)
            img.save(root / name / f"{i:06d}.jpg", quality=90)


def subset(master: Path, target: Path, n: int) -> None:
    """The first ``n`` images of ``master`` as hard links: a smaller folder, no new bytes."""
    for name in CLASSES:
        (target / name).mkdir(parents=True)
        for f in sorted((master / name).iterdir())[: n // 2]:
            os.link(f, target / name / f.name)


def child(folder: Path, cache: Path, image_size: int) -> None:
    """One measured run: data preparation and one pass over the batches; prints JSON."""
    import torch
    from torch import nn
    from torch.utils.data import RandomSampler

    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.data import cache as image_cache
    from cnnlab.transfer.data.prepare import prepare_data
    from cnnlab.transfer.models import preprocessing
    from cnnlab.transfer.training.batches import ImageSource

    decodes = []
    real = image_cache.decode_sized
    image_cache.decode_sized = lambda *a: decodes.append(1) or real(*a)  # count, then decode
    cfg = TransferConfig(weights="none", image_size=image_size, batch_size=64, cache_dir=str(cache))
    start = time.perf_counter()
    prepared = prepare_data(folder, cfg)
    prepare_s = time.perf_counter() - start
    train, val = prepared.splits["train"], prepared.splits["val"]
    generator = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    sampler = RandomSampler(range(len(train)), generator=generator)
    pre = preprocessing("resnet18", image_size)
    source = ImageSource(nn.Identity(), train, val, cfg, sampler, pre, cpu, channels_last=False)
    checksum, seen = 0.0, 0
    for x, y in source.train_batches():
        checksum, seen = checksum + float(x[:, :, 0, 0].sum()), seen + len(y)
    for x in source.val_batches():
        checksum, seen = checksum + float(x[:, :, 0, 0].sum()), seen + len(x)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "images": len(train) + len(val), "seen": seen, "decodes": len(decodes),
        "prepare_s": prepare_s, "total_s": time.perf_counter() - start,
        "peak_rss": peak_kib * 1024,
    }))  # fmt: skip


def measure(folder: Path, cache: Path, image_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [*cmd, "--image-size", str(image_size)], env=env, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"measured run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000,20000", help="folder sizes, comma-separated")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed after")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.cache, args.image_size)

    from cnnlab.machine import environment_info

    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cnnlab-cache-bench-"))
    env = environment_info()
    print(f"machine: {env['processor']}, {env['cpu_count']} cores, Python {env['python']}")
    try:
        t0 = time.perf_counter()
        make_folder(work / "master", sizes[-1])
        print(f"wrote {sizes[-1]:,} JPEGs of 64 x 64 px in {time.perf_counter() - t0:.0f}s; "
              f"cached at {args.image_size} px")  # fmt: skip
        cold = {}
        for n in sizes:
            folder = work / f"folder-{n}"
            subset(work / "master", folder, n)
            cache = work / f"cache-{n}"
            runs = {"cold": measure(folder, cache, args.image_size)}
            runs["warm"] = measure(folder, cache, args.image_size)
            cold[n] = runs["cold"]["peak_rss"]
            decoded_gb = n * args.image_size**2 * 3 / 1e9
            for kind, r in runs.items():
                print(
                    f"{n:>7,} images {kind}: peak RSS {r['peak_rss'] / 2**20:7.0f} MiB | "
                    f"cache on disk {disk_bytes(cache) / 1e9:5.2f} GB | decoded images "
                    f"{decoded_gb:5.2f} GB | decoded {r['decodes']:>6,} | prepare "
                    f"{r['prepare_s']:6.1f}s, with one pass {r['total_s']:6.1f}s"
                )
        small, big = sizes[0], sizes[-1]
        rss_growth = cold[big] / cold[small] - 1
        count_growth = big / small - 1
        per_image = (cold[big] - cold[small]) / (big - small)
        print(
            f"peak RSS {small:,} -> {big:,} images: +{rss_growth:.1%} for +{count_growth:.0%} "
            f"images; {per_image / 1024:.1f} KiB per added image (a decoded image is "
            f"{args.image_size**2 * 3 / 1024:.0f} KiB)"
        )
        print(f"ratio {rss_growth / count_growth:.3f}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
