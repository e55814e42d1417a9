"""Checkpoints that load without running code: tensors plus plain metadata.

A ``.pt`` checkpoint is a dict of str/int/float/list/None and tensors, readable with
``torch.load(weights_only=True)``; a ``.safetensors`` one keeps the same metadata as JSON in
the file header. Either way no pickle is ever executed, so a checkpoint from a colleague or
the internet cannot run code on load.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes
from cnnlab.preflight import checkpoint_path
from cnnlab.transfer.data.contrast import CONTRASTS
from cnnlab.transfer.models import build_model, head_name, load_plain

FORMAT = "cnnlab-transfer"
# 2: the checkpoint names a contrast normalisation its images need. Written only by such
# checkpoints, so that a cnnlab too old to apply it refuses them rather than predicting on
# pixels the model never saw; a checkpoint without one stays version 1, readable by all.
VERSION = 2
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024  # the range TransferConfig accepts for --image-size


@dataclass
class Checkpoint:
    arch: str
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    threshold: float | None = None  # binary operating point chosen on validation data
    extra: dict[str, Any] = field(default_factory=dict)  # epoch, monitor value, ...
    contrast: str = "none"  # data/contrast.py: applied to every image before mean/std

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": 1 if self.contrast == "none" else VERSION,
            "contrast": self.contrast,
            "arch": self.arch,
            "class_names": list(self.class_names),
            "image_size": int(self.image_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "threshold": None if self.threshold is None else float(self.threshold),
            "extra": self.extra,
        }

    def build_model(self) -> nn.Module:
        """The network with these weights, in eval mode."""
        head = head_name_of(self.state_dict)
        outputs = int(self.state_dict[head + ".weight"].shape[0]) if head else None
        if outputs is not None and outputs != len(self.class_names):
            raise CnnlabError(
                f"checkpoint is inconsistent: it names {len(self.class_names)} classes "
                f"({', '.join(self.class_names)}) but its classifier head has {outputs} outputs"
            )
        model = build_model(self.arch, len(self.class_names), "none", self.image_size)
        expected = head_name(model)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[:2]
            raise CnnlabError(
                f"checkpoint weights do not fit {self.arch} (head {expected}): {' '.join(first)}"
            ) from None
        return model.eval()


def head_name_of(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The last 2-D ``*.weight`` in the state dict: the classifier head's name."""
    heads = [
        k[: -len(".weight")]
        for k, v in state_dict.items()
        if k.endswith(".weight") and getattr(v, "ndim", 0) == 2
    ]
    return heads[-1] if heads else None


def save(
    ckpt: Checkpoint, path: str | os.PathLike, overwrite: bool = True, suffix: str | None = None
) -> Path:
    """Write ``ckpt`` as ``suffix`` (default: ``path``'s own; a staged temporary name has
    another) says: ``.safetensors``, else a ``.pt`` file."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in ckpt.state_dict.items()}
    if (suffix or path.suffix) == ".safetensors":
        data = safetensors.torch.save(state, metadata={"cnnlab": json.dumps(ckpt.meta())})
    else:
        buf = io.BytesIO()
        torch.save({**ckpt.meta(), "state_dict": state}, buf)
        data = buf.getvalue()
    return atomic_write_bytes(path, data, overwrite)


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint; a run directory means its ``best.pt``."""

    path = checkpoint_path(path)
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("cnnlab", "{}"))
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as e:
            raise CnnlabError(f"{path} is not a readable safetensors checkpoint: {e}") from None
    else:
        obj = load_plain(path, "checkpoint")
        if not isinstance(obj, dict):
            raise CnnlabError(f"{path} is not a cnnlab checkpoint")
        meta, state = obj, obj.get("state_dict")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(state, dict):
        raise CnnlabError(
            f"{path} is not a cnnlab transfer checkpoint (a plain state dict can be used "
            f"with `cnnlab transfer train --weights PATH`)"
        )
    version = meta.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CnnlabError(f"{path} was written by a newer cnnlab (format {version!r})")
    names = meta.get("class_names")
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        # a string would give one class per character, a dict its keys: both loaded before
        raise CnnlabError(
            f"checkpoint {path} has an invalid class_names: {names!r:.80} "
            "(must be a list of class names)"
        )
    try:
        ckpt = Checkpoint(
            arch=str(meta["arch"]),
            class_names=[str(c) for c in meta["class_names"]],
            image_size=int(meta["image_size"]),
            mean=[float(v) for v in meta["mean"]],
            std=[float(v) for v in meta["std"]],
            state_dict=state,
            threshold=meta.get("threshold"),
            extra=dict(meta.get("extra") or {}),
            contrast=meta.get("contrast", "none"),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CnnlabError(f"{path} has incomplete checkpoint metadata ({e})") from None
    check(ckpt, path)
    return ckpt


def check(ckpt: Checkpoint, path: str | os.PathLike) -> None:
    """Refuse metadata and weights that would silently give wrong or NaN probabilities.

    A zero std divides by zero (NaN probabilities, exit 0), an absurd image size allocates
    gigabytes per image, a non-finite weight poisons every prediction: each is named here,
    at load, before any image is read.
    """

    def bad(name: str, why: str) -> None:
        raise CnnlabError(f"checkpoint {path} has an invalid {name}: {why}")

    if not MIN_IMAGE_SIZE <= ckpt.image_size <= MAX_IMAGE_SIZE:
        bad("image_size", f"{ckpt.image_size} (must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px)")
    for name in ("mean", "std"):
        values = getattr(ckpt, name)
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            bad(name, f"{values} (must be 3 finite numbers, one per RGB channel)")
    if min(ckpt.std) <= 0:
        bad("std", f"{ckpt.std} (every channel must be > 0: images are divided by it)")
    if ckpt.contrast not in CONTRASTS:
        bad("contrast", f"{ckpt.contrast!r} (must be one of {', '.join(CONTRASTS)})")
    if len(ckpt.class_names) < 2 or len(set(ckpt.class_names)) != len(ckpt.class_names):
        bad("class_names", f"{ckpt.class_names} (must be two or more distinct names)")
    if ckpt.threshold is not None and not (
        isinstance(ckpt.threshold, int | float)
        and not isinstance(ckpt.threshold, bool)  # JSON true is a Python int: not a threshold
        and 0 <= ckpt.threshold <= 1
    ):
        bad("threshold", f"{ckpt.threshold!r} (must be a probability in [0, 1] or null)")
    for key, tensor in ckpt.state_dict.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            bad("state_dict", f"entry {key!r} is not a named tensor")
        if key.endswith((".weight", ".bias")) and not tensor.is_floating_point():
            # load_state_dict casts it back to float silently: the weights were truncated
            bad("state_dict", f"tensor {key} is {tensor.dtype}, not floating point (cast?)")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad("state_dict", f"tensor {key} holds NaN or infinite weights")
