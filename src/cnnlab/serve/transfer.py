"""The serve page's classifier for a transfer run (PyTorch; imports torch and torchvision).

Built from the functions behind ``cnnlab transfer predict`` (the checkpoint loader, each
member's image reader, ``scoring.Scorer`` with ``--tta``, ``--ensemble`` and ``--adapt-bn``,
the operating threshold, ``prediction_rows`` and the Grad-CAM of ``--cam``), so the page and
the command line agree file for file; the checkpoints are loaded (and adapted) once, when the
server starts. A checkpoint trained with ``--calibrate`` has its temperature folded in
(``extra["temperature"]``): its scores are calibrated probabilities, and the page says which
kind it shows. An ensemble's mean, or an adapted model, was never calibrated or measured as
such: its scores are labelled uncalibrated, and the page says the headline metrics are the
first run's alone. Grad-CAM needs one network: an ensemble's is the first member's map of
the ensemble's class, and its caption says so.
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
from cnnlab.transfer.data.images import load_views
from cnnlab.transfer.device import resolve_device
from cnnlab.transfer.inference.member_images import needed, stack, unlabelled_images
from cnnlab.transfer.inference.operating import operating_point
from cnnlab.transfer.inference.predict import grad_cams, prediction_rows
from cnnlab.transfer.inference.scoring import deployed, load_members, prepare_scorer
from cnnlab.transfer.results import ARGMAX, VALIDATION_THRESHOLD, inference_lines, point_label

TOP_K = 3  # as `cnnlab transfer predict` lists by default


class TransferClassifier:
    pipeline = "transfer"

    def __init__(
        self,
        run_dir: str | os.PathLike,
        device: str = "auto",
        tta: bool = False,
        ensemble: Sequence[str | os.PathLike] = (),
        adapt_bn: str | os.PathLike | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.tta = tta  # --tta: scoring.TTA, as `transfer predict --tta` does
        sources = [run_dir, *ensemble]
        ckpts = load_members(sources)  # a corrupt, foreign or mismatched checkpoint fails here
        self.ckpt = ckpts[0]
        self.device, self.device_name = resolve_device(device)
        adapt = unlabelled_images(adapt_bn, ckpts)  # read and applied once, at start-up
        # torch, as `transfer predict --engine torch`: uploads come a few at a time
        self.scorer = prepare_scorer(sources, ckpts, self.device, "torch", None, tta, adapt)
        self.model = self.scorer.networks[0]  # Grad-CAM's network: the (adapted) first run
        op = operating_point(sources, self.ckpt.class_names, deployed(ckpts))
        self.operating_threshold = op.threshold
        self.scorer.notes += [op.note] if op.note else []
        self.inference = inference_lines(self.scorer.record())  # "" for a plain single run
        self.temperature = self.ckpt.extra.get("temperature")  # folded into the weights
        metrics = read_metrics(run_dir) or {}
        self.ece = metrics.get("ece") if isinstance(metrics.get("ece"), float) else None
        self.combined = len(ckpts) > 1 or adapt is not None  # not the run that was measured
        if self.combined:
            self.temperature = self.ece = None
        self.score_kind = UNCALIBRATED if self.temperature is None else CALIBRATED

    def describe(self) -> str:
        ckpt = self.ckpt
        many = len(self.scorer.ckpts) > 1
        text = (
            f"{ckpt.arch} fine-tuned on {len(ckpt.class_names)} classes "
            f"({', '.join(ckpt.class_names)}), {ckpt.image_size}x{ckpt.image_size} px, "
            f"running on {self.device_name}."
        )
        if many:
            text = f"An ensemble of {len(self.scorer.ckpts)} runs; the first: " + text
        if self.threshold is not None:
            text += (
                f" Decision: {ckpt.class_names[1]} when its score is at least "
                f"{self.threshold:.3f}, the operating threshold chosen on validation data."
            )
        text += " " + score_note(self.score_kind, self.ece, self.temperature)
        if self.inference:
            text += " In use: " + "; ".join(self.inference) + "."
        if self.combined:
            text += (
                f" The metrics shown are those of {self.run_dir.name} alone, measured "
                "without " + ("the ensemble" if many else "the adaptation") + "."
            )
        if many:
            text += " Grad-CAM shows the first run's evidence for the ensemble's class."
        return text

    @property
    def threshold(self) -> float | None:
        binary = len(self.ckpt.class_names) == 2
        return self.operating_threshold if binary else None

    def classify(
        self, paths: Sequence[str | os.PathLike]
    ) -> tuple[list[ImageResult], list[tuple[np.ndarray, str]]]:
        """A result per file, in order, and for each image read two gallery items: the image
        as the model saw it and its Grad-CAM overlay, each with a caption."""
        # ValueError: the decoder's reason (unreadable, too small, corrupt)
        views = needed(self.scorer.ckpts)
        results, loaded, where = read_uploads(
            paths, lambda path: load_views(path, views), (ValueError,)
        )
        if not loaded:
            return results, []
        images = stack(loaded, views)
        names, ckpt = self.ckpt.class_names, self.ckpt
        proba = self.scorer.proba(images)
        rows = prediction_rows(
            [results[i].name for i in where], proba, names, TOP_K, self.threshold
        )
        batch = images.of(ckpt)  # the first run's pixels: its Grad-CAM's
        many = len(self.scorer.ckpts) > 1
        targets = proba.argmax(1) if many else None  # the ensemble's class, not the run's
        cams = grad_cams(self.model, ckpt, batch, targets=targets)
        seen = f"as {self.run_dir.name} (the first run) sees it" if many else "as the model sees it"
        whose = f" in {self.run_dir.name}" if many else ""
        gallery = []
        for i, p, row, image, cam in zip(where, proba, rows, batch, cams, strict=True):
            results[i] = self._result(results[i].name, p, row, evidence_warning(image, cam))
            warned = f" (warning: {results[i].cam_warning})" if results[i].cam_warning else ""
            gallery += [
                (image, f"{results[i].name}: {seen}"),
                (
                    plots.gradcam_overlay(image, cam),
                    f"{results[i].name}: Grad-CAM of {results[i].predicted}{whose}{warned}",
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
            inference="; ".join(self.inference),
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
