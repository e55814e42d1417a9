"""Prediction, Grad-CAM and evaluation with a saved checkpoint."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import plots
from cnnlab.bootstrap import METHOD, N_RESAMPLES, bootstrap_ci, decision_ci
from cnnlab.errors import CnnlabError
from cnnlab.files import check_output, staged, write_csv
from cnnlab.metrics import binary_metrics, contract_intervals, metrics_contract, pr_auc
from cnnlab.predictions import csv_rows, prediction_row, unreadable_row
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.data.images import check_max_pixels
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.inference.engines import Say, require_engine, stderr_note
from cnnlab.transfer.inference.member_images import list_images, load_files, unlabelled_images
from cnnlab.transfer.inference.operating import operating_point
from cnnlab.transfer.inference.scoring import deployed, load_members, prepare_scorer
from cnnlab.transfer.models import cam_layer
from cnnlab.transfer.results import ARGMAX, VALIDATION_THRESHOLD, inference_lines
from cnnlab.transfer.training.batches import image_batches
from cnnlab.transfer.training.loop import probabilities
from cnnlab.transfer.training.transforms import normalize, to_tensor_batch

if TYPE_CHECKING:
    from cnnlab.console import Advance
    from cnnlab.transfer.results import BinaryMetrics, HeldOutMetrics


def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
    batch_size: int = 64,
    channels_last: bool = True,
    progress: Advance | None = None,
) -> np.ndarray:
    """Class probabilities (N x classes) of uint8 NHWC ``images``, model in eval mode."""
    batches = image_batches(images, mean, std, device, channels_last, batch_size)
    return probabilities(model, batches, progress)


def grad_cam(
    model: nn.Module,
    layer: nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    target: Sequence[int] | None = None,
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) heat maps, N x H x W in [0, 1], for uint8 NHWC images.

    The activations of ``layer`` are weighted by the spatial mean of the gradient of the
    target class score (default: the predicted class), summed over channels and rectified:
    what in that layer's map raised the score. Written with hooks, no extra dependency.
    """
    saved: dict[str, Any] = {}

    def keep(module, inputs, output):
        saved["act"] = output
        output.register_hook(lambda grad: saved.__setitem__("grad", grad))

    model.eval()  # BatchNorm in eval mode keeps each image's gradient its own
    device = next(model.parameters()).device
    x = normalize(to_tensor_batch(images).to(device), mean, std, channels_last=False)
    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            x.requires_grad_(True)  # gradients flow even through frozen layers
            logits = model(x)
            cls = logits.argmax(1) if target is None else torch.as_tensor(target, device=device)
            model.zero_grad(set_to_none=True)
            logits.gather(1, cls.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
    act, grad = saved["act"].detach(), saved["grad"].detach()
    if act.ndim != 4:
        raise CnnlabError("Grad-CAM needs a convolutional layer (this backbone's is not)")
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).cpu().numpy()


# -- predict ------------------------------------------------------------------------------


def prediction_rows(
    paths: Sequence[str | os.PathLike],
    proba: np.ndarray,
    class_names: Sequence[str],
    top_k: int = 3,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """:func:`cnnlab.predictions.prediction_row` of each image, with the two-class decision at
    ``threshold`` (``predicted_at_threshold``, ``decision``)."""
    rows = []
    for path, p in zip(paths, proba, strict=True):
        extra = {}
        if threshold is not None and len(class_names) == 2:
            extra["predicted_at_threshold"] = class_names[int(p[1] >= threshold)]
            extra["decision"] = decision(p, class_names, threshold)
        rows.append(prediction_row(path, p, class_names, top_k, extra))
    return rows


def decision(p: np.ndarray, class_names: Sequence[str], threshold: float) -> str:
    """The two-class decision at the operating threshold, with the reason: class 1 (the
    positive class) when its probability reaches the threshold, e.g.
    ``PNEUMONIA (P(PNEUMONIA)=0.710 >= threshold 0.430)``."""
    positive = float(p[1]) >= threshold
    sign = ">=" if positive else "<"
    return (
        f"{class_names[int(positive)]} "
        f"(P({class_names[1]})={float(p[1]):.3f} {sign} threshold {threshold:.3f})"
    )


def grad_cams(
    model: nn.Module,
    ckpt: ckpt_io.Checkpoint,
    images: np.ndarray,
    batch_size: int = 16,
    targets: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """The Grad-CAM map (H x W in [0, 1]) of each image's ``targets`` class (default: the
    class ``model`` predicts), batch by batch."""
    layer = cam_layer(model)
    cams: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        end = start + batch_size
        chosen = None if targets is None else targets[start:end]
        cams += list(grad_cam(model, layer, images[start:end], ckpt.mean, ckpt.std, chosen))
    return cams


def cam_overlays(
    model: nn.Module, ckpt: ckpt_io.Checkpoint, images: np.ndarray, batch_size: int = 16
) -> list[np.ndarray]:
    cams = grad_cams(model, ckpt, images, batch_size)
    return [plots.gradcam_overlay(img, cam) for img, cam in zip(images, cams, strict=True)]


def predict(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike],
    inputs: Sequence[str | os.PathLike],
    out_csv: str | os.PathLike | None = None,
    cam_dir: str | os.PathLike | None = None,
    top_k: int = 3,
    device: str = "cpu",
    progress: Advance | None = None,
    max_pixels: int | None = None,
    engine: str = "auto",
    say: Say = stderr_note,
    overwrite: bool = False,
    *,
    tta: bool = False,
    adapt_bn: str | os.PathLike | None = None,
    threshold_policy: str | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Predict every image; unreadable files become rows with an ``error``, never a crash.

    The CSV and the Grad-CAM overlays are written together or not at all, never onto the
    model or an image, and replace existing files only with ``overwrite``. Probabilities come
    from ``engine`` (``engines.prepare``); Grad-CAM needs gradients and always runs in torch.
    ``checkpoint`` may list several runs (an ensemble), ``tta``, ``adapt_bn`` and
    ``threshold_policy`` as in ``evaluate``; the opt-ins in force are said (``say``) and are
    each row's ``inference``.
    """
    if top_k < 1:
        raise CnnlabError(f"invalid --top-k: must be >= 1, got {top_k}")
    sources = [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)
    if cam_dir is not None and len(sources) > 1:
        raise CnnlabError("--cam shows one network's evidence: not available for an ensemble")
    max_pixels = check_max_pixels(max_pixels)
    read = [*(("the model", s) for s in sources), *(("an image input", p) for p in inputs)]
    if adapt_bn is not None:
        read.append(("the --adapt-bn folder", adapt_bn))
    if out_csv is not None:
        out_csv = check_output("--out", out_csv, overwrite=overwrite, inputs=read)
    if cam_dir is not None:
        cam_dir = check_output("--cam", cam_dir, directory=True, inputs=read)
    ckpts = load_members(sources)
    ckpt = ckpts[0]
    op = operating_point(sources, ckpt.class_names, deployed(ckpts), threshold_policy)
    dev, _ = resolve_device(device)
    require_engine(engine, dev)
    paths = list_images(inputs)
    images, ok, failed = load_files(paths, ckpts, max_pixels)
    cams = [] if cam_dir is None else [cam_dir / f"{n}_cam.png" for n in _unique_stems(ok)]
    for cam in cams:
        check_output("--cam", cam, overwrite=overwrite, inputs=read)  # before the work
    adapt = unlabelled_images(adapt_bn, ckpts, max_pixels)
    scorer = prepare_scorer(sources, ckpts, dev, engine, images, tta, adapt, say)
    scorer.notes += [op.note] if op.note else []
    proba = scorer.proba(images, progress)
    rows = prediction_rows(ok, proba, ckpt.class_names, top_k, op.threshold)
    lines = inference_lines(scorer.record())
    for line in lines:
        say(line)
    for row in rows if lines else []:
        row["inference"] = "; ".join(lines)
    rows += [unreadable_row(p, why, ckpt.class_names) for p, why in failed]
    overlays = []
    if cam_dir is not None and len(images):
        # an adapted model is the one that predicted: its maps, not best.pt's
        model = scorer.networks[0] if adapt is not None else ckpt.build_model().to(dev)
        overlays = cam_overlays(model, ckpt, images.of(ckpt))
    shown = " and ".join(str(p) for p in (out_csv, cam_dir) if p)
    with staged(shown, overwrite) as stage:
        if out_csv is not None:
            write_csv(stage(out_csv), csv_rows(rows))
        for cam, overlay in zip(cams, overlays, strict=True):
            plots.save_image(overlay, stage(cam))
    return rows, failed


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem
        n = seen.get(stem, 0)
        seen[stem] = n + 1
        names.append(stem if n == 0 else f"{stem}_{n}")
    return names


# -- evaluate -----------------------------------------------------------------------------


def metrics_of(
    labels: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    threshold: float | None,
    ci_seed: int | None = None,
    policy: str | None = None,
) -> HeldOutMetrics:
    """Held-out metrics: threshold-free ones once, every threshold-dependent one at a named
    operating point (two classes: ``at_argmax`` and ``operating_point``, the validation-chosen
    ``threshold``, chosen by ``policy`` (``cnnlab.transfer.thresholds``); the top-level
    accuracy, balanced accuracy, macro-F1 are the argmax's)."""
    metrics = cast("HeldOutMetrics", metrics_contract(labels, proba, class_names))
    metrics["pr_auc"] = pr_auc(labels, proba)
    metrics["threshold_dependent_at"] = ARGMAX
    if ci_seed is not None:
        intervals = bootstrap_ci(labels, proba, None, seed=ci_seed)
        metrics["ci"] = contract_intervals(intervals)
        metrics["ci_method"] = f"{METHOD}, {N_RESAMPLES} resamples of the images, seed {ci_seed}"
    if len(class_names) == 2:
        metrics["positive_class"] = class_names[1]
        metrics["at_argmax"] = _point(labels, proba[:, 1], 0.5, ARGMAX, ci_seed)
        if threshold is not None:
            point = _point(labels, proba[:, 1], threshold, VALIDATION_THRESHOLD, ci_seed)
            if policy is not None:
                point["policy"] = policy
            metrics["operating_point"] = point
    return metrics


def _point(
    labels: np.ndarray, score: np.ndarray, threshold: float, name: str, ci_seed: int | None
) -> BinaryMetrics:
    """Every threshold-dependent metric of ``score >= threshold``, named, with intervals drawn
    on the same resamples as the threshold-free ones."""
    point = cast("BinaryMetrics", {"name": name, **binary_metrics(labels, score, threshold)})
    if ci_seed is not None:
        decided = (score >= threshold).astype(np.int64)
        intervals = decision_ci(labels, decided, seed=ci_seed)  # under the block's own keys
        point["ci"] = {k: None if v is None else [v[0], v[1]] for k, v in intervals.items()}
    return point
