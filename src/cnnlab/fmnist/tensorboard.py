"""``cnnlab train --tensorboard DIR``: Keras' own ``TensorBoard`` callback, once per epoch,
and the test set's most confident mistakes at the end (layout: :mod:`cnnlab.tensorboard`).

The callback adds the optimizer's learning rate (``epoch_learning_rate``, schedules evaluated
at the epoch's last step, as in history.csv) to the epoch's loss and accuracy itself.
"""

from __future__ import annotations

import os

import keras
import numpy as np

# tf.summary writes through it: when it is missing, `train` fails here, not after an epoch
import tensorboard  # noqa: F401

from cnnlab.data.fashion_mnist import CLASS_NAMES
from cnnlab.tensorboard import mistakes_image, prepare_log_dir


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' callback at ``update_freq="epoch"``, without the graph (Keras writes it from a
    batch hook, which is off here; the run's report describes the model)."""

    # Keras waits for every training step's logs when a callback has a batch hook and is not
    # async_safe; at update_freq="epoch" this one's hook does nothing (below), so none wait.
    async_safe = True

    def __init__(self, log_dir: str | os.PathLike, out: str | os.PathLike | None = None):
        log_dir = str(prepare_log_dir(log_dir, out))
        super().__init__(log_dir, write_graph=False, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        pass  # Keras' own writes per-step scalars, which update_freq="epoch" turns off anyway

    def write_mistakes(
        self, images: np.ndarray, labels: np.ndarray, proba: np.ndarray, step: int
    ) -> None:
        """The image ``mistakes`` under DIR/test, at ``step`` (the last epoch)."""
        picture = mistakes_image(images, labels, proba, CLASS_NAMES)
        if picture is None:
            return
        import tensorflow as tf  # tf.summary: the writer Keras' callback writes with

        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "test"))
        with writer.as_default():
            tf.summary.image("mistakes", picture[np.newaxis], step=step)
        writer.close()
