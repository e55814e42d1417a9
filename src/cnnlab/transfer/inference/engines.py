"""Inference engines: PyTorch eager, or the same network exported to ONNX Runtime.

Measured in one process on a 2-core AMD EPYC (Zen 5), batch 32 at 224 px (issue 14):
EfficientNet-Lite0 runs at 31 img/s in torch eager and 318 img/s in ONNX Runtime, whose
outputs agree within 5e-6; ResNet18 at 60 vs 139 img/s. ONNX Runtime fuses convolution,
BatchNorm and activation into one kernel and lays tensors out for the CPU once per graph;
eager torch dispatches one op at a time. So on a CPU the frozen backbone of ``head``
(its feature cache), ``predict`` and ``evaluate`` run through ONNX Runtime: the network is
exported once, its outputs are checked against torch on real images, and anything that fails
falls back to torch with one line saying so. On CUDA or MPS torch stays: the onnxruntime
wheel is the CPU build. Training and Grad-CAM need gradients, and stay in torch.

Exports are cached by a hash of the weights and the input size (``~/.cache/cnnlab/onnx``):
an ImageNet backbone or a checkpoint is exported once per machine, a changed checkpoint gets
a new export. A first export is slow (torch.export traces the model), which a small job does
not repay, so ``auto`` exports only for ``AUTO_MIN_IMAGES`` images or more
(``benchmarks/transfer_inference.py`` measures both).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.caches import cache_root
from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import ENGINES
from cnnlab.transfer.inference.graph import export_onnx
from cnnlab.transfer.training.transforms import normalize, to_tensor_batch

Say = Callable[[str], None]

# The check passes when max |onnxruntime - torch| <= TOLERANCE * max(1, max |torch|): float32
# sums in another order differ in proportion to the values summed (features reach tens).
TOLERANCE = 1e-4
CHECK_IMAGES = 8  # images of the job itself that both engines run before the session is used
# Export + check of one network took 15-30 s on 2 loaded cores and saved 55-230 ms per image
# there (9.5-29 ms idle, issue 14): below a few hundred images a first export costs more than
# it saves. Once exported (cached), any job size uses it.
AUTO_MIN_IMAGES = 256
CACHE_KEEP = 16  # exported models kept in the cache, most recently used first
FORMAT = "cnnlab-onnx-1"  # part of the cache key: bump when the export itself changes


def stderr_note(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass(frozen=True)
class Inference:
    """The network that runs inference: the torch model itself, or an ONNX Runtime session."""

    network: nn.Module
    engine: str  # "torch" or "onnxruntime"
    channels_last: bool  # the memory format its input batches are given in
    max_diff: float | None = None  # max |onnxruntime - torch| on the check batch


def require_engine(name: str, device: torch.device) -> None:
    """Refuse, before any slow work, an ``--engine`` that cannot run here."""
    if name not in ENGINES:
        raise CnnlabError(f"invalid --engine: {name!r} is not one of {', '.join(ENGINES)}")
    if name != "onnxruntime":
        return
    if device.type != "cpu":
        raise CnnlabError(
            f"--engine onnxruntime runs on the CPU, not {device.type}: "
            f"add --device cpu, or use --engine torch"
        )
    _onnxruntime()


def _onnxruntime() -> Any:
    try:  # imported here: `--engine torch` never loads it
        import onnxruntime
    except ImportError as e:
        raise CnnlabError(
            f"--engine onnxruntime: onnxruntime cannot be imported ({e}); "
            f"install it (pip install onnxruntime) or use --engine torch"
        ) from None
    return onnxruntime


def _importable() -> bool:
    try:
        _onnxruntime()
    except CnnlabError:
        return False
    return True


def prepare(
    model: nn.Module,
    engine: str,
    device: torch.device,
    check: torch.Tensor,
    expected_images: int,
    channels_last: bool = False,
    say: Say = stderr_note,
) -> Inference:
    """The network to run ``model`` (eval mode) with: torch, or ONNX Runtime when ``engine``
    asks for it (``auto``: on a CPU, for a large job or an already exported model).

    ``check`` is a normalised NCHW batch of the job's own images: the session must reproduce
    torch's outputs on it within ``TOLERANCE``. Trying ONNX Runtime always says one line: the
    difference it measured, or why torch runs instead (a failed export, session or check).
    """
    eager = Inference(model, "torch", channels_last)
    require_engine(engine, device)
    if engine == "torch" or device.type != "cpu":
        return eager
    path = cache_dir() / f"{model_key(model, tuple(check.shape[1:]))}.onnx"
    if engine == "auto" and (
        (expected_images < AUTO_MIN_IMAGES and not path.is_file()) or not _importable()
    ):
        return eager
    check = check.contiguous()
    try:
        network = OnnxNetwork(_cached_export(model, path, int(check.shape[-1])))
        diff, limit = _difference(model, network, check)
    except Exception as e:  # any exporter or runtime failure: torch still gives the answer
        _forget(path)  # a cached file that fails to load is re-exported next time
        say(f"note: ONNX Runtime unavailable for this model ({_one_line(e)}); using torch")
        return eager
    if not diff <= limit:  # NaN included
        _forget(path)
        say(
            f"note: ONNX Runtime differs from torch by {diff:.1e} (limit {limit:.1e}) "
            f"on {len(check)} images; using torch"
        )
        return eager
    say(f"engine: onnxruntime (max |diff| vs torch {diff:.1e} on {len(check)} images)")
    return Inference(network, "onnxruntime", False, diff)


def for_images(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    engine: str,
    say: Say = stderr_note,
    expected_images: int | None = None,
) -> Inference:
    """``prepare`` for a job on uint8 NHWC ``images`` (or on ``expected_images`` in all, of
    which ``images`` come first), checked on the first few of them."""
    if not len(images):
        return Inference(model, "torch", False)
    batch = to_tensor_batch(images[:CHECK_IMAGES]).to(device)
    check = normalize(batch, mean, std, channels_last=False)
    return prepare(model, engine, device, check, expected_images or len(images), say=say)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behind ``nn.Module``'s call, so the code that runs a torch
    network (``loop.probabilities``, ``Backbone.features``) runs it unchanged."""

    def __init__(self, path: Path):
        super().__init__()
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # --threads, as torch uses
        options.inter_op_num_threads = 1  # one graph, run node after node
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its warnings would break one-line output
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


# -- the cache of exported models ---------------------------------------------------------


def cache_dir() -> Path:
    return cache_root() / "onnx"


def model_key(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """SHA-256 of what the exported graph depends on: exporter, class, input size, weights."""
    h = hashlib.sha256()
    header = [FORMAT, torch.__version__, type(model).__qualname__, list(input_shape)]
    h.update(json.dumps(header).encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def _cached_export(model: nn.Module, path: Path, image_size: int) -> Path:
    if path.is_file():
        os.utime(path)  # most recently used: kept when the cache is pruned
        return path
    # a CPU copy in the default layout: the model may sit on the device in channels_last
    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's
        export_onnx(cpu, image_size, path, output_name="output")
    _prune(path.parent)
    return path


def _prune(folder: Path, keep: int = CACHE_KEEP) -> None:
    files = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in files[keep:]:
        _forget(stale)


def _forget(path: Path) -> None:
    # absent, or removed by another process: the aim is met either way
    with contextlib.suppress(OSError):
        path.unlink()


def _difference(model: nn.Module, network: nn.Module, check: torch.Tensor) -> tuple[float, float]:
    """(max |network - model|, the tolerance it must meet) on ``check``."""
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        expected = model(check).float().cpu()
        got = network(check).float()
    model.train(was_training)
    if got.shape != expected.shape:
        raise ValueError(f"output shape {tuple(got.shape)}, torch's {tuple(expected.shape)}")
    diff = float((got - expected).abs().max())
    return diff, TOLERANCE * max(1.0, float(expected.abs().max()))


def _one_line(error: BaseException) -> str:
    lines = [s.strip() for s in str(error).splitlines() if s.strip()]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
