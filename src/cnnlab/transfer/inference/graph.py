"""A torch module as an ONNX file: what ``transfer export`` writes and what the ONNX Runtime
engine (``engines.py``) caches, in one place. Apart from ``export.py`` so that the engines, and
the reports above them, need not import the export and its model card."""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import torch
from torch import nn

from cnnlab.files import atomic_write_bytes


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
