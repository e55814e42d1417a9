"""The serve page's classifier for a Fashion-MNIST run (Keras; imports TensorFlow).

Built from the functions behind ``cnnlab predict`` (``load_image``, ``run_tta``,
``predict_proba``), so a file gets the same class and probabilities on the page as on the
command line; the model is loaded once, when the server starts, instead of per request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnnlab.data.fashion_mnist import CLASS_NAMES
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.inference import Invert, load_image, load_model, run_tta
from cnnlab.fmnist.model import predict_proba, tta_views
from cnnlab.serve.evidence import UNCALIBRATED, borderline, score_note
from cnnlab.serve.page import ImageResult, read_metrics, read_uploads

TOP_K = 3  # as `cnnlab predict` prints


class FmnistClassifier:
    pipeline = "fmnist"
    score_kind = UNCALIBRATED  # Fashion-MNIST runs are never calibrated

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.model = load_model(run_dir)  # a corrupt or foreign model fails here, before serving
        self.tta = run_tta(run_dir)
        metrics = read_metrics(run_dir) or {}
        self.ece = metrics.get("ece") if isinstance(metrics.get("ece"), float) else None

    def describe(self) -> str:
        views = len(tta_views(np.zeros((1, 28, 28, 1), np.float32), **self.tta))
        return (
            f"Fashion-MNIST classifier: {len(CLASS_NAMES)} garment classes, 28x28 grayscale, "
            f"{views} test-time view{'s' if views > 1 else ''}. Each image is padded to a "
            "square, resized, and inverted when dark on light, as `cnnlab predict` does. "
            + score_note(UNCALIBRATED, self.ece)
        )

    def classify(
        self, paths: Sequence[str | os.PathLike], invert: Invert = "auto"
    ) -> tuple[list[ImageResult], list[tuple[np.ndarray, str]]]:
        """A result per file, in order, and no overlays (Grad-CAM is a transfer feature)."""
        if invert not in ("auto", "yes", "no"):
            raise CnnlabError(f"invert must be auto, yes or no, got {invert!r}")
        results, images, where = read_uploads(
            paths, lambda path: load_image(path, invert), (CnnlabError,)
        )
        if images:
            proba = predict_proba(
                self.model, np.stack(images)[..., None], **self.tta, batch_size=256
            )
            for i, p in zip(where, proba, strict=True):
                order = np.argsort(-p)[:TOP_K]
                top = [(CLASS_NAMES[k], float(p[k])) for k in order]
                results[i] = ImageResult(
                    results[i].name,
                    top[0][0],
                    top[0][1],
                    top,
                    operating_point="argmax",
                    score_kind=self.score_kind,
                    borderline=borderline(p, None),
                )
        return results, []
