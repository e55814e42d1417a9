"""``cnnlab doctor``: what this machine gives cnnlab, in one screen (as fastai's
``show_install``): versions, the CPU and its vector unit (absolute speeds differ up to 4x
between vector units, so every published figure names it), threads, a GPU, the data the
commands would find, and the caches. Reads package metadata and files only: no framework is
imported, so it answers in well under a second and works where a framework is broken."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

from cnnlab import __version__
from cnnlab.caches import cache_root
from cnnlab.data.fashion_mnist import candidate_dirs
from cnnlab.machine import cpu_description
from cnnlab.runtime import EXTRAS, keras_backend_setting

PACKAGES = (
    "numpy", "scipy", "scikit-learn", "optuna", "tensorflow-cpu", "tensorflow", "keras",
    "torch", "torchvision", "onnxruntime", "gradio",
)  # fmt: skip
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "MKL_NUM_THREADS")
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")


def report() -> list[tuple[str, str]]:
    """(what, finding) rows, in the order printed."""
    rows = [("cnnlab", __version__), ("python", f"{sys.version.split()[0]} ({sys.executable})")]
    rows.append(("platform", platform.platform()))
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            rows.append((name, metadata.version(name)))
    rows.append(("extras", _extras()))
    rows.append(("Keras backend", keras_backend_setting()))
    rows.append(("CPU", cpu_description()))
    rows.append(("cores", f"{os.cpu_count()} ({_affinity()} usable by this process)"))
    threads = [f"{v}={os.environ[v]}" for v in THREAD_VARIABLES if v in os.environ]
    rows.append(("threads", ", ".join(threads) or "framework defaults (all cores)"))
    rows.append(("GPU", _gpu()))
    rows.append(("Fashion-MNIST", _fashion_mnist()))
    root = cache_root()
    rows.append(("caches", f"{root} ({_size(root)})" if root.exists() else f"{root} (empty)"))
    return rows


def _extras() -> str:
    """The extras whose headline modules are installed (found, not imported)."""

    def found(extra: str) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in EXTRAS[extra].headline)

    installed = [e for e in EXTRAS if found(e)]
    missing = [e for e in EXTRAS if e not in installed]
    text = ", ".join(installed) or "none"
    return text + (f" (missing: {', '.join(missing)})" if missing else "")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _gpu() -> str:
    """An NVIDIA GPU as its driver reports it (no framework import); else none."""
    devices = sorted(Path("/proc/driver/nvidia/gpus").glob("*")) if sys.platform == "linux" else []
    if devices:
        names = []
        for d in devices:
            with contextlib.suppress(OSError):
                info = (d / "information").read_text()
                names += [line.split(":", 1)[1].strip() for line in info.splitlines()
                          if line.startswith("Model:")]  # fmt: skip
        return ", ".join(names) or f"{len(devices)} NVIDIA device(s)"
    if shutil.which("nvidia-smi"):
        return "nvidia-smi present, no device visible"
    return "none (everything runs on the CPU)"


def _fashion_mnist() -> str:
    for label, folder in candidate_dirs():
        if all((folder / f).is_file() for f in FMNIST_FILES):
            return f"{folder} ({label})"
    places = ", ".join(str(f) for _, f in candidate_dirs())
    return f"not found in {places}: downloaded on first use (online), or --data-dir"


def _size(root: Path) -> str:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return f"{total / 2**20:.1f} MiB"


def format_report(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows) + "\n"
