"""What both pipelines' ``--tensorboard DIR`` share: the folder check and the mistakes picture.

Both pipelines write the layout of Keras' own ``TensorBoard`` callback, so their runs read
alike side by side in TensorBoard: ``DIR/train`` and ``DIR/validation`` hold one value per epoch
of ``epoch_loss`` and ``epoch_accuracy`` (``train`` also ``epoch_learning_rate``), the step being
the epoch counted from 0 as Keras counts it; after training, ``DIR/<held-out split>`` holds the
image ``mistakes``: the most confident mistakes with their true and predicted class, ranked as
the run's report ranks them.

The event files go to DIR, not into the run directory: a run directory appears only when it is
complete (``runs.run_directory``), while TensorBoard is watched during training, and one DIR
per run under a common parent is how TensorBoard compares runs (``tensorboard --logdir tb``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab import plots
from cnnlab.runs import log_folder

MISTAKES_SHOWN = 24  # three rows of plots.image_grid: enough to see what is confused with what


def prepare_log_dir(path: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """``--tensorboard DIR`` created and checked before training (``runs.log_folder``)."""
    return log_folder("--tensorboard", path, out)


def mistakes_image(
    images: np.ndarray, labels: np.ndarray, proba: np.ndarray, class_names: Sequence[str]
) -> np.ndarray | None:
    """The most confident mistakes as one H x W x 3 uint8 picture, "true X / pred Y (p%)" under
    each image; None when nothing is misclassified."""
    labels = np.asarray(labels)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    if not len(wrong):
        return None
    # the most confident mistakes teach the most about what the network confuses
    wrong = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:MISTAKES_SHOWN]
    titles = [
        f"true {class_names[labels[i]]}\npred {class_names[pred[i]]} ({proba[i, pred[i]]:.0%})"
        for i in wrong
    ]
    # plots.image_grid draws the titles the reports use; it writes a PNG, read back here
    with tempfile.TemporaryDirectory() as tmp:
        png = plots.image_grid([images[i] for i in wrong], titles, Path(tmp) / "mistakes.png")
        with Image.open(png) as picture:
            return np.asarray(picture.convert("RGB"))
