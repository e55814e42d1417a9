"""``cnnlab transfer train --tensorboard DIR``: each epoch's history row and, at the end, the
held-out split's most confident mistakes, written with torch's ``SummaryWriter`` in the layout
of Keras' ``TensorBoard`` callback (:mod:`cnnlab.tensorboard`), so runs of both pipelines read
alike. The validation run also gets the metrics the monitor can choose from (balanced
accuracy, macro F1, ROC AUC, ECE).

``SummaryWriter`` writes through tensorboard's compat layer, which imports TensorFlow whenever
it is installed (as in ``cnnlab[all]``), and TensorFlow and torchvision in one process segfault
(Makefile, ``test``). The module ``tensorboard.compat.notf`` is tensorboard's own switch for its
TensorFlow-free build: registered here before the first write, it makes the layer use its
pure-Python stub (tests/transfer/test_tensorboard.py checks TensorFlow stays out).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.tensorboard import mistakes_image, prepare_log_dir

sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
from torch.utils.tensorboard import SummaryWriter  # noqa: E402  (after the switch: it reads it)

if TYPE_CHECKING:
    from cnnlab.transfer.data.folders import LoadedSplit
    from cnnlab.transfer.results import HistoryRow

# history.csv's validation columns, logged as epoch_<name> under DIR/validation
VALIDATION_METRICS = ("loss", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "ece")
RUN_NAMES = {"val": "validation"}  # Keras' name of the validation run; "test" stays


class TransferBoard:
    """Event files under ``log_dir`` (created and checked when constructed)."""

    def __init__(self, log_dir: str | os.PathLike, out: str | os.PathLike | None = None):
        self.root = prepare_log_dir(log_dir, out)
        self._train = SummaryWriter(str(self.root / "train"))
        self._val = SummaryWriter(str(self.root / "validation"))

    def log_epoch(self, row: HistoryRow) -> None:
        step = row["epoch"] - 1  # Keras counts epochs from 0 in TensorBoard
        self._train.add_scalar("epoch_loss", row["train_loss"], step)
        self._train.add_scalar("epoch_accuracy", row["train_accuracy"], step)
        self._train.add_scalar("epoch_learning_rate", row["lr"], step)
        for name in VALIDATION_METRICS:
            value = row[f"val_{name}"]  # type: ignore[literal-required]
            if value is not None:  # ROC AUC is undefined when a class is absent
                self._val.add_scalar(f"epoch_{name}", value, step)
        # on disk after every epoch: TensorBoard is watched while training runs, and a run
        # that fails later keeps the curves of the epochs it finished
        self._train.flush()
        self._val.flush()

    def finish(
        self,
        split_name: str,
        split: LoadedSplit,
        proba: np.ndarray,
        class_names: Sequence[str],
        step: int,
    ) -> None:
        """Writes the image ``mistakes`` of ``split`` (under DIR/test or DIR/validation) and
        closes the event files."""
        picture = mistakes_image(split.images, split.labels, proba, class_names)
        if picture is not None:
            with SummaryWriter(str(self.root / RUN_NAMES.get(split_name, split_name))) as writer:
                writer.add_image("mistakes", picture, step, dataformats="HWC")
        self._train.close()
        self._val.close()
