"""Export a checkpoint for deployment: ONNX (any runtime) or safetensors (PyTorch, no pickle),
with its model card beside it (``card.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_text, check_output, staged
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.inference.card import card_path, model_card
from cnnlab.transfer.inference.graph import export_onnx


def export(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``out`` (.onnx or .safetensors) from a checkpoint or run directory, and its model
    card beside it (``card.card_path``); existing files are replaced only with ``overwrite``,
    and never the checkpoint or its run. Both appear together or neither does.

    The ONNX graph takes normalised float32 NCHW images of the training size (any batch) and
    returns logits; class names and preprocessing are stored in its metadata. With ``verify``
    and onnxruntime installed, its outputs are compared with PyTorch's on random images.
    """
    ckpt = ckpt_io.load(checkpoint)
    inputs = [("the model", checkpoint)]
    out = check_output("--out", out, overwrite=overwrite, inputs=inputs)
    if out.suffix not in (".onnx", ".safetensors"):
        raise CnnlabError(f"--out {out}: use a .onnx or .safetensors file name")
    card = check_output("--out", card_path(out), overwrite=overwrite, inputs=inputs)
    text = model_card(ckpt, checkpoint, out)
    with staged(out, overwrite) as stage:  # verified before it replaces anything at ``out``
        written = stage(out)
        if out.suffix == ".safetensors":
            ckpt_io.save(ckpt, written, suffix=out.suffix)  # ``written`` ends .staged
        else:
            model = ckpt.build_model()
            _export_onnx(model, ckpt, written)
            max_diff = verify_onnx(model, ckpt, written) if verify else None
            if max_diff is not None and max_diff > 1e-3:
                raise CnnlabError(f"ONNX export differs from PyTorch (max |diff| {max_diff:.2e})")
        atomic_write_text(stage(card), text)
    return out


def _export_onnx(model: nn.Module, ckpt: ckpt_io.Checkpoint, out: Path) -> None:
    meta = {
        **ckpt.meta(),
        "input": "float32 NCHW, RGB scaled to [0, 1], then (x - mean) / std"
        + ("" if ckpt.contrast == "none" else f", after {ckpt.contrast} contrast on uint8"),
    }
    metadata = {"cnnlab": json.dumps(meta), "class_names": json.dumps(ckpt.class_names)}
    export_onnx(model, ckpt.image_size, out, "logits", metadata)


def verify_onnx(model: nn.Module, ckpt: ckpt_io.Checkpoint, path: Path, n: int = 3) -> float | None:
    """Max |logit difference| between onnxruntime and PyTorch; None without onnxruntime."""
    try:  # a dependency, imported here: torch-only commands never load it
        import onnxruntime as ort
    except ImportError:
        return None

    x = torch.randn(
        n, 3, ckpt.image_size, ckpt.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
