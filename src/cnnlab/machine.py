"""Facts about the machine and its libraries, saved with every run, study trial and benchmark
so that a result names what produced it."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("numpy", "keras", "tensorflow-cpu", "tensorflow", "torch", "torchvision", "optuna")


def environment_info() -> dict[str, Any]:
    """Machine and library versions, saved with every run so results can be reproduced."""
    versions = {}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_description(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MiB (``getrusage``'s ``ru_maxrss``:
    KiB on Linux, bytes on macOS); None where there is no ``resource`` module (Windows).
    Worker processes (``--workers``) are not counted."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def cpu_description(cpuinfo: str | None = None) -> str:
    """The CPU's model name, with its family, model and vector instructions where
    ``/proc/cpuinfo`` has them: a VM's "AMD EPYC" names neither its generation nor its speed
    (Zen 4 is family 25 model 17; Zen 5 family 26)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block describes them all
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    details += [label for flag, label in _ISA if flag in flags][:1]
    details += [label for flag, label in _ISA_EXTRAS if flag in flags]
    return f"{name} ({', '.join(details)})" if details else name


_ISA = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))  # the widest one is named
_ISA_EXTRAS = (("avx512_bf16", "BF16"), ("amx_tile", "AMX"))
