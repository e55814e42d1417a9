"""Which accelerator runs the model: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


def resolve_device(name: str = "auto") -> tuple[torch.device, str]:
    """(device, description): CUDA, then Apple MPS, then CPU unless ``name`` says."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is available here (try --device cpu)")
    if name == "mps" and not has_mps:
        raise CnnlabError("--device mps: Apple MPS is not available here (try --device cpu)")
    if name == "cuda":
        return torch.device("cuda"), f"cuda ({torch.cuda.get_device_name(0)})"
    if name == "mps":
        return torch.device("mps"), "mps (Apple GPU)"
    return torch.device("cpu"), f"cpu ({torch.get_num_threads()} threads)"
