"""The serve page's classifier for a transfer run (PyTorch; imports torch and torchvision).

Built from the functions behind ``cnnlab transfer predict`` (the checkpoint loader, the image
decoder, ``predict_proba``, ``prediction_rows`` with the run's operating threshold, and
``cam_overlays`` for ``--cam``), so the page and the command line agree file for file; the
checkpoint is loaded once, when the server starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab.serve.page import ImageResult, read_uploads
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.data.images import load_image
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.inference.predict import cam_overlays, prediction_rows
from cnnlab.transfer.inference.scoring import TTA, views_proba

TOP_K = 3  # as `cnnlab transfer predict` lists by default


class TransferClassifier:
    pipeline = "transfer"

    def __init__(self, run_dir: str | os.PathLike, device: str = "auto", tta: bool = False):
        self.run_dir = Path(run_dir)
        self.tta = tta  # --tta: scoring.TTA, as `transfer predict --tta` does
        self.ckpt = ckpt_io.load(run_dir)  # a corrupt or foreign checkpoint fails here
        self.model = self.ckpt.build_model()
        self.device, self.device_name = resolve_device(device)
        self.model.to(self.device)

    def describe(self) -> str:
        ckpt = self.ckpt
        text = (
            f"{ckpt.arch} fine-tuned on {len(ckpt.class_names)} classes "
            f"({', '.join(ckpt.class_names)}), {ckpt.image_size}x{ckpt.image_size} px, "
            f"running on {self.device_name}."
        )
        if self.threshold is not None:
            text += (
                f" Decision: {ckpt.class_names[1]} when its probability is at least "
                f"{self.threshold:.3f}, the operating threshold chosen on validation data."
            )
        return text + (f" Test-time augmentation: {TTA}." if self.tta else "")

    @property
    def threshold(self) -> float | None:
        binary = len(self.ckpt.class_names) == 2
        return self.ckpt.threshold if binary else None

    def classify(
        self, paths: Sequence[str | os.PathLike]
    ) -> tuple[list[ImageResult], list[tuple[np.ndarray, str]]]:
        """A result per file, in order, and a Grad-CAM overlay (with a caption) per image read."""
        # ValueError: the decoder's reason (unreadable, too small, corrupt)
        results, images, where = read_uploads(
            paths, lambda path: load_image(path, self.ckpt.image_size), (ValueError,)
        )
        if not images:
            return results, []
        batch = np.stack(images)
        names = self.ckpt.class_names
        ckpt = self.ckpt
        proba = views_proba(self.model, batch, ckpt.mean, ckpt.std, self.device, self.tta)
        rows = prediction_rows(
            [results[i].name for i in where], proba, names, TOP_K, self.ckpt.threshold
        )
        for i, p, row in zip(where, proba, rows, strict=True):
            order = np.argsort(-p)[:TOP_K]
            top = [(names[k], float(p[k])) for k in order]
            results[i] = ImageResult(
                results[i].name, row["predicted"], row["probability"], top, self._decision(row, p)
            )
        overlays = cam_overlays(self.model, self.ckpt, batch)
        captions = [f"{results[i].name}: Grad-CAM of {results[i].predicted}" for i in where]
        return results, list(zip(overlays, captions, strict=True))

    def _decision(self, row: dict, p: np.ndarray) -> str:
        if "predicted_at_threshold" not in row or self.threshold is None:
            return ""
        positive = self.ckpt.class_names[1]
        sign = ">=" if p[1] >= self.threshold else "<"
        return (
            f"{row['predicted_at_threshold']} "
            f"(P({positive}) {p[1]:.3f} {sign} threshold {self.threshold:.3f})"
        )
