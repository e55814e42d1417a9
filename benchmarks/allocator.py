"""Training steps with glibc's default allocator vs cnnlab's setting (cnnlab/allocator.py).

The setting is process-wide and cannot be undone, so each measurement is its own process:
the same training step (forward, cross-entropy, backward, Adam; batch 32 at 224 px,
channels_last, 2 torch threads) repeated, with and without ``keep_freed_memory()``, the two
alternating so that other load hits both. Each process reports images per second over the
steps after its first two, kernel (system) CPU seconds per step, page faults per step and
peak RSS. The last line is ``ratio X``: kept / default images per second (median of the
per-pair ratios). Target: >= 1.2 on EfficientNet-Lite0.

    .venv/bin/python benchmarks/allocator.py                      # efficientnet_lite0, 3 pairs
    .venv/bin/python benchmarks/allocator.py --arch resnet18 --pairs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEP = r"""
import json, resource, sys, time
import torch
from cnnlab.allocator import keep_freed_memory
from cnnlab.transfer.models import build_model

arch, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
applied = keep_freed_memory() if mode == "kept" else False
torch.manual_seed(0)
model = build_model(arch, 2, weights="none", image_size=224).to(memory_format=torch.channels_last)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 2, (32,))
loss_fn = torch.nn.CrossEntropyLoss()

def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()

for _ in range(2):  # warm-up: first-touch of the weights, oneDNN primitive caches
    step()
usage = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
end = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "applied": applied,
    "img_s": 32 * steps / seconds,
    "sys_s_per_step": (end.ru_stime - usage.ru_stime) / steps,
    "faults_per_step": (end.ru_minflt - usage.ru_minflt) / steps,
    "peak_rss_mb": end.ru_maxrss / 1024,
}))
"""


def measure(arch: str, mode: str, steps: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", STEP, arch, mode, str(steps)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process")
    parser.add_argument("--pairs", type=int, default=3, help="default/kept process pairs")
    args = parser.parse_args()
    import platform

    from cnnlab.machine import environment_info

    env = environment_info()
    print(f"machine: {env['processor']}, {env['cpu_count']} CPUs, {platform.platform()}")
    print(f"{args.arch}, batch 32, 224 px, {args.steps} timed steps per process")
    ratios, rows = [], {"default": [], "kept": []}
    for i in range(args.pairs):
        pair = {mode: measure(args.arch, mode, args.steps) for mode in ("default", "kept")}
        for mode, r in pair.items():
            rows[mode].append(r)
            print(
                f"pair {i + 1} {mode:7s}: {r['img_s']:6.2f} img/s, "
                f"{r['sys_s_per_step']:.3f} s kernel CPU/step, "
                f"{r['faults_per_step']:9.0f} page faults/step, peak RSS {r['peak_rss_mb']:.0f} MB"
            )
        ratios.append(pair["kept"]["img_s"] / pair["default"]["img_s"])
    for mode, rs in rows.items():
        speeds = [r["img_s"] for r in rs]
        print(f"{mode}: median {statistics.median(speeds):.2f} img/s over {len(rs)} processes")
    print(f"ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
