"""Use a trained model (a result, a run directory or a ``keras.Model``): re-evaluate it on the
test set, or classify image files. What ``cnnlab evaluate``/``predict`` and ``fmnist.evaluate``/
``predict``/``predict_proba`` run.

Image files are untrusted input: their size and shape are checked against the limits both
pipelines share (``cnnlab.data.image_files``: bytes, pixels, each side, aspect ratio) before
they are decoded, and any failure to decode is one line.
"""

from __future__ import annotations

# First, before Keras: checks KERAS_BACKEND and loads TensorFlow quietly (see framework.py).
from cnnlab.fmnist import framework  # noqa: F401

# isort: split
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from PIL import Image, ImageOps

import cnnlab.fmnist.optim  # noqa: F401  (registers the schedules saved with the optimizer)
from cnnlab.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from cnnlab.data.image_files import ImageRefused, ImageTooLarge, decoding, open_header, read_limited
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.artifacts import load_run_config
from cnnlab.fmnist.config import TrainConfig
from cnnlab.fmnist.model import predict_proba
from cnnlab.fmnist.result import TrainResult
from cnnlab.metrics import metrics_contract
from cnnlab.predictions import prediction_row
from cnnlab.runs import require_run_dir

Source = TrainResult | str | os.PathLike | keras.Model


def load_model(run_dir: str | os.PathLike) -> keras.Model:
    """The run's ``model.keras``, loaded with ``safe_mode=True`` (no arbitrary code runs).

    A missing, corrupt or foreign model file raises CnnlabError.
    """
    run_dir = require_run_dir(run_dir, "model.keras")
    path = run_dir / "model.keras"
    if not zipfile.is_zipfile(path):  # Keras would call a truncated archive "file not found"
        raise CnnlabError(f"cannot load model {path}: not a valid .keras archive (corrupt?)")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive; all mean "unusable"
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CnnlabError(f"cannot load model {path}: corrupt or incompatible ({reason})") from None
    if tuple(model.input_shape[1:]) != (28, 28, 1) or model.output_shape[-1] != len(CLASS_NAMES):
        raise CnnlabError(
            f"{path} is not a Fashion-MNIST model (input {model.input_shape}, "
            f"output {model.output_shape})"
        )
    return model


def run_tta(run_dir: str | os.PathLike) -> dict:
    """The test-time augmentation the run was trained to be evaluated with (``tta`` and
    ``tta_shift`` of its ``config.json``, for :func:`predict_proba`); a run directory without
    one (only ``model.keras``) predicts plainly."""
    if not (Path(run_dir) / "config.json").exists():
        return TrainConfig().tta_options  # the defaults: one view
    return load_run_config(run_dir).tta_options


def evaluate(source: Source, data_dir: str | os.PathLike | None = None) -> dict:
    """Metrics on the 10,000 test images of a :class:`TrainResult`, run directory or
    ``keras.Model``: the keys of ``metrics.json``'s test metrics (``test_accuracy``,
    ``balanced_accuracy``, ``macro_f1``, ``ece``, ``per_class``, ...)."""
    model, tta = model_and_tta(source)  # a bad model fails before the data is read
    data = load_fashion_mnist(data_dir)
    x = data.x_test.reshape(-1, 28, 28, 1).astype(np.float32)
    return metrics_contract(data.y_test, predict_proba(model, x, **tta), CLASS_NAMES)


def probabilities(source: Source, x: Any) -> np.ndarray:
    """Class probabilities (N, 10) of raw images ``x`` (N, 28, 28) or (N, 28, 28, 1), pixel
    values 0..255 as in Fashion-MNIST, with the test-time augmentation of the run or result."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != (28, 28, 1):
        raise CnnlabError(f"images must be (N, 28, 28) or (N, 28, 28, 1), got {x.shape}")
    model, tta = model_and_tta(source)
    return predict_proba(model, x, **tta, batch_size=256)


def model_and_tta(source: Source) -> tuple[keras.Model, dict]:
    """The model of ``source`` and the test-time augmentation it is evaluated with (a
    ``keras.Model`` alone: one view of each image)."""
    if isinstance(source, TrainResult):
        if source.model is None:
            raise CnnlabError("this TrainResult holds no model")
        return source.model, source.config.tta_options
    if isinstance(source, (str, os.PathLike)):
        return load_model(source), run_tta(source)
    return source, {}


Invert = Literal["auto", "yes", "no"]


def load_image(path: str | os.PathLike, invert: Invert = "auto") -> np.ndarray:
    """Any image file as a 28x28 float32 array of raw pixel values (0..255).

    Fashion-MNIST shows light garments on a black background. A photo of a dark garment on a
    white background is inverted when ``invert`` is ``yes``, or with ``auto`` when the image
    border is brighter than mid-grey. The image is padded to a square (with its border colour)
    before resizing, so the garment keeps its proportions.
    """
    path = Path(path)
    if not path.exists():
        raise CnnlabError(f"image not found: {path}")
    try:
        gray = _grayscale(read_limited(path))
    except ImageTooLarge as e:
        raise CnnlabError(f"image {path} is too large to read safely: {e}") from None
    except ImageRefused as e:
        raise CnnlabError(f"cannot read image {path}: {e}") from None
    a = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 127):
        a = 255.0 - a
        border = 255.0 - border
    h, w = a.shape
    side = max(h, w)
    fill = float(np.median(border))
    square = np.full((side, side), fill, dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = a
    small = Image.fromarray(square.clip(0, 255).astype(np.uint8)).resize(
        (28, 28), Image.Resampling.LANCZOS
    )
    return np.asarray(small, dtype=np.float32)


# The padded square is PAD_SIDE^2 float32 (16 MB) at most: a larger image is first shrunk by
# an integer factor (box average), which changes its 28x28 result by well under one grey
# level. Padding the file's full size took 4.2 GB for a 101-byte PNG of 20000 x 1 pixels.
PAD_SIDE = 2048


def _grayscale(data: bytes) -> Image.Image:
    with open_header(data) as img, decoding():
        img.draft(img.mode, (PAD_SIDE, PAD_SIDE))  # JPEG: decoded at a reduced scale if far larger
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA") or "transparency" in img.info:
            # transparent pixels count as background: put them on white
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)
        gray = img.convert("L")
        if max(gray.size) > PAD_SIDE:
            gray = gray.reduce(math.ceil(max(gray.size) / PAD_SIDE))
        gray.load()
    return gray


def predict(
    source: Source,
    paths: Sequence[str | os.PathLike],
    invert: Invert = "auto",
    top_k: int = 3,
) -> list[dict[str, Any]]:
    """One row per image file (:mod:`cnnlab.predictions`: ``predicted``, ``probability``,
    ``p_<class>``, ``top_k``). All files are read first, so a bad one fails before the model
    is loaded."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise CnnlabError("no image files given")
    if top_k < 1:
        raise CnnlabError(f"top_k must be >= 1, got {top_k}")
    images = np.stack([load_image(p, invert) for p in paths])  # read all first
    proba = probabilities(source, images)
    return [
        prediction_row(path, p, CLASS_NAMES, top_k) for path, p in zip(paths, proba, strict=True)
    ]
