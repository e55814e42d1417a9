"""The generalization gap is measured on clean training images: the CleanTrainAccuracy
callback evaluates the model in inference mode (no dropout, no augmentation), and the history
records it per epoch."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.fmnist.callbacks import CleanTrainAccuracy, EpochClock  # noqa: E402

from .conftest import TINY  # noqa: E402


def _dropout_heavy_model() -> keras.Model:
    """Correct in inference mode by construction (class = sign of the first input), nearly
    blind in training mode: dropout 0.95 zeroes almost every input."""
    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dropout(0.95, seed=1), keras.layers.Dense(2),
    ])  # fmt: skip
    w = np.zeros((4, 2), np.float32)
    w[0] = [-1.0, 1.0]
    model.layers[-1].set_weights([w, np.zeros(2, np.float32)])
    # learning rate 0: the weights stay as built, only the mode of evaluation differs
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    return model


def _data(n: int = 400):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    x[:, 0] += np.sign(x[:, 0]) * 2.0  # far from the decision boundary
    return x, (x[:, 0] > 0).astype(np.int64)


def test_clean_accuracy_is_measured_in_inference_mode_and_recorded_per_epoch():
    x, y = _data()
    model = _dropout_heavy_model()
    clean, clock = CleanTrainAccuracy.subset(x, y, 300, seed=3), EpochClock()
    history = model.fit(x, y, batch_size=50, epochs=2, verbose=0, validation_data=(x, y),
                        callbacks=[clean, clock])  # fmt: skip
    assert clean.accuracy == [1.0, 1.0]  # dropout off: every image right
    running = history.history["accuracy"]
    assert max(running) < 0.8  # what Keras logs while training, dropout on
    assert [row["clean_train_accuracy"] for row in clock.history] == [1.0, 1.0]
    assert len(clean.x) == 300  # the subset, drawn once


def test_subset_is_fixed_and_seeded():
    x, y = _data(1000)
    a = CleanTrainAccuracy.subset(x, y, 100, seed=7)
    b = CleanTrainAccuracy.subset(x, y, 100, seed=7)
    c = CleanTrainAccuracy.subset(x, y, 100, seed=8)
    assert np.array_equal(a.x, b.x) and not np.array_equal(a.x, c.x)
    assert len(CleanTrainAccuracy.subset(x, y, 5000).x) == 1000  # never more than there are


@pytest.mark.slow
def test_train_records_clean_training_accuracy_when_asked(fashion):
    from cnnlab.fmnist.config import PRESETS
    from cnnlab.fmnist.training import train

    config = PRESETS["tutorial"].replace(**{**TINY, "epochs": 2, "augment": True})
    result = train(config, fashion, progress=False, clean_train_images=500)
    rows = result.history
    assert len(rows) == 2 and all(0.0 < row["clean_train_accuracy"] <= 1.0 for row in rows)
    # without augmentation and dropout the same network scores its own images higher than the
    # running accuracy logged while it was still learning, with both on
    assert rows[-1]["clean_train_accuracy"] > rows[-1]["train_accuracy"]
    plain = train(config, fashion, progress=False)
    assert "clean_train_accuracy" not in plain.history[0]
