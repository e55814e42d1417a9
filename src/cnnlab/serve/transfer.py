"""The serve page's classifier for a transfer run (PyTorch; imports torch and torchvision).

Built from the functions behind ``cnnlab transfer predict`` (the checkpoint loader, the image
decoder, ``predict_proba``, ``prediction_rows`` with the run's operating threshold, and the
Grad-CAM of ``--cam``), so the page and the command line agree file for file; the
checkpoint is loaded once, when the server starts. A checkpoint trained with ``--calibrate``
has its temperature folded in (``extra["temperature"]``): its scores are calibrated
probabilities, and the page says which kind it shows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab import plots
from cnnlab.serve.cam_check import evidence_warning
from cnnlab.serve.evidence import CALIBRATED, UNCALIBRATED, borderline, score_note
from cnnlab.serve.page import ImageResult, read_metrics, read_uploads
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.data.images import load_image
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.inference.predict import grad_cams, prediction_rows
from cnnlab.transfer.inference.scoring import TTA, views_proba
from cnnlab.transfer.results import ARGMAX, VALIDATION_THRESHOLD, point_label

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
        self.temperature = self.ckpt.extra.get("temperature")  # folded into the weights
        self.score_kind = UNCALIBRATED if self.temperature is None else CALIBRATED
        metrics = read_metrics(run_dir) or {}
        self.ece = metrics.get("ece") if isinstance(metrics.get("ece"), float) else None

    def describe(self) -> str:
        ckpt = self.ckpt
        text = (
            f"{ckpt.arch} fine-tuned on {len(ckpt.class_names)} classes "
            f"({', '.join(ckpt.class_names)}), {ckpt.image_size}x{ckpt.image_size} px, "
            f"running on {self.device_name}."
        )
        if self.threshold is not None:
            text += (
                f" Decision: {ckpt.class_names[1]} when its score is at least "
                f"{self.threshold:.3f}, the operating threshold chosen on validation data."
            )
        text += " " + score_note(self.score_kind, self.ece, self.temperature)
        return text + (f" Test-time augmentation: {TTA}." if self.tta else "")

    @property
    def threshold(self) -> float | None:
        binary = len(self.ckpt.class_names) == 2
        return self.ckpt.threshold if binary else None

    def classify(
        self, paths: Sequence[str | os.PathLike]
    ) -> tuple[list[ImageResult], list[tuple[np.ndarray, str]]]:
        """A result per file, in order, and for each image read two gallery items: the image
        as the model saw it and its Grad-CAM overlay, each with a caption."""
        # ValueError: the decoder's reason (unreadable, too small, corrupt)
        results, images, where = read_uploads(
            paths,
            lambda path: load_image(path, self.ckpt.image_size, contrast=self.ckpt.contrast),
            (ValueError,),
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
        cams = grad_cams(self.model, self.ckpt, batch)
        gallery = []
        for i, p, row, image, cam in zip(where, proba, rows, batch, cams, strict=True):
            results[i] = self._result(results[i].name, p, row, evidence_warning(image, cam))
            warned = f" (warning: {results[i].cam_warning})" if results[i].cam_warning else ""
            gallery += [
                (image, f"{results[i].name}: as the model sees it"),
                (
                    plots.gradcam_overlay(image, cam),
                    f"{results[i].name}: Grad-CAM of {results[i].predicted}{warned}",
                ),
            ]
        return results, gallery

    def _result(self, name: str, p: np.ndarray, row: dict, cam_warning: str) -> ImageResult:
        names = self.ckpt.class_names
        order = np.argsort(-p)[:TOP_K]
        threshold = self.threshold
        point = ARGMAX if threshold is None else point_label(VALIDATION_THRESHOLD, threshold)
        return ImageResult(
            name,
            row["predicted"],
            row["probability"],
            [(names[k], float(p[k])) for k in order],
            self._decision(row, p),
            decided=row.get("predicted_at_threshold", ""),
            threshold=threshold,
            positive_class=names[1] if threshold is not None else "",
            positive_score=float(p[1]) if threshold is not None else None,
            operating_point=point,
            score_kind=self.score_kind,
            borderline=borderline(p, threshold),
            cam_warning=cam_warning,
        )

    def _decision(self, row: dict, p: np.ndarray) -> str:
        if "predicted_at_threshold" not in row or self.threshold is None:
            return ""
        positive = self.ckpt.class_names[1]
        sign = ">=" if p[1] >= self.threshold else "<"
        return (
            f"{row['predicted_at_threshold']} "
            f"(P({positive}) {p[1]:.3f} {sign} threshold {self.threshold:.3f})"
        )
