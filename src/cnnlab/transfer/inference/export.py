"""Export a checkpoint for deployment: ONNX (any runtime) or safetensors (PyTorch, no pickle)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write_bytes, check_output, output_errors, staged
from cnnlab.transfer import checkpoint as ckpt_io


def export(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    verify: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``out`` (.onnx or .safetensors) from a checkpoint or run directory; an existing
    ``out`` is replaced only with ``overwrite``, and never the checkpoint or its run.

    The ONNX graph takes normalised float32 NCHW images of the training size (any batch) and
    returns logits; class names and preprocessing are stored in its metadata. With ``verify``
    and onnxruntime installed, its outputs are compared with PyTorch's on random images.
    """
    ckpt = ckpt_io.load(checkpoint)
    out = check_output("--out", out, overwrite=overwrite, inputs=[("the model", checkpoint)])
    if out.suffix == ".safetensors":
        with output_errors(out):
            return ckpt_io.save(ckpt, out, overwrite)
    if out.suffix != ".onnx":
        raise CnnlabError(f"--out {out}: use a .onnx or .safetensors file name")
    model = ckpt.build_model()
    with staged(out, overwrite) as stage:  # verified before it replaces anything at ``out``
        written = stage(out)
        _export_onnx(model, ckpt, written)
        max_diff = verify_onnx(model, ckpt, written) if verify else None
        if max_diff is not None and max_diff > 1e-3:
            raise CnnlabError(f"ONNX export differs from PyTorch (max |diff| {max_diff:.2e})")
    return out


def _export_onnx(model: nn.Module, ckpt: ckpt_io.Checkpoint, out: Path) -> None:
    meta = {
        **ckpt.meta(),
        "input": "float32 NCHW, RGB scaled to [0, 1], then (x - mean) / std"
        + ("" if ckpt.contrast == "none" else f", after {ckpt.contrast} contrast on uint8"),
    }
    metadata = {"cnnlab": json.dumps(meta), "class_names": json.dumps(ckpt.class_names)}
    export_onnx(model, ckpt.image_size, out, "logits", metadata)


def export_onnx(
    model: nn.Module,
    image_size: int,
    out: Path,
    output_name: str = "logits",
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX taking float32 NCHW images of ``image_size``
    (any batch) to ``out``, atomically; ``metadata`` goes into the file's metadata_props."""
    x = torch.randn(2, 3, image_size, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["image"],
            output_names=[output_name],
            dynamo=True,
            external_data=False,
            verbose=False,
            # positional, not by argument name: EfficientNet-Lite's forward names it ``inputs``
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
        )
        proto = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write_bytes(out, proto.SerializeToString())


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
