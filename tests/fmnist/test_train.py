"""The trainer: deterministic per seed, complete run directories, nothing half written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import preset
from cnnlab.runs import RUN_MARKER

keras = pytest.importorskip("keras")

from cnnlab.fmnist.result import TrainMetrics  # noqa: E402
from cnnlab.fmnist.training import fit_inputs, make_splits, train  # noqa: E402

from .conftest import TINY  # noqa: E402


def _benchmark_probe():
    """The benchmark's held-out accuracy callback (benchmarks/accuracy_probe.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "accuracy_probe.py"
    spec = importlib.util.spec_from_file_location("accuracy_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TestAccuracyProbe


pytestmark = pytest.mark.slow

METRIC_KEYS = {
    "test_accuracy", "test_loss", "balanced_accuracy", "macro_f1", "per_class",
    "confusion_matrix", "ece", "params", "train_seconds", "images_per_second", "epochs_run",
}  # fmt: skip
RUN_FILES = {
    "config.json", "history.csv", "metrics.json", "model.keras", "learning_curves.png",
    "confusion_matrix.png", "misclassified.png", "report.html", "report.md",
}  # fmt: skip


def test_splits_are_stratified_disjoint_and_seeded(fashion):
    config = preset("tutorial").replace(**TINY)
    a, b = make_splits(config, fashion), make_splits(config, fashion)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert len(a.x_train) == 1000 and len(a.x_val) == 500 and len(a.x_test) == 10000
    assert np.bincount(a.y_train).tolist() == [100] * 10
    assert np.bincount(a.y_val).tolist() == [50] * 10
    other = make_splits(config.replace(seed=1), fashion)
    assert not np.array_equal(other.x_val, a.x_val)
    # no validation image is also a training image
    train_rows = {row.tobytes() for row in a.x_train}
    assert not any(row.tobytes() in train_rows for row in a.x_val)


def _epochs(inputs: dict, n: int) -> list[np.ndarray]:
    """The label rows of ``n`` passes over ``fit_inputs`` output, one array per pass."""
    if "y" in inputs:  # not TensorFlow: arrays, shuffled by Keras
        return [inputs["y"]] * n
    return [np.concatenate([y.numpy() for _, y in inputs["x"]]) for _ in range(n)]


def test_fit_inputs_visit_every_image_once_per_epoch_in_a_seeded_order():
    x = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1) * np.ones((1, 28, 28, 1))
    y = np.arange(100, dtype=np.float32)[:, None]  # a "label" that names its row
    first, second = _epochs(fit_inputs(x, y, 32, shuffle=True, seed=3), 2)
    assert sorted(first.ravel()) == sorted(second.ravel()) == list(range(100))
    if keras.backend.backend() == "tensorflow":
        assert not np.array_equal(first, second)  # reshuffled every epoch
        again, _ = _epochs(fit_inputs(x, y, 32, shuffle=True, seed=3), 2)
        np.testing.assert_array_equal(first, again)  # same seed, same order
        (batch_x, batch_y), *_ = fit_inputs(x, y, 32, shuffle=False, seed=0)["x"]
        assert batch_x.shape == (32, 28, 28, 1)
        np.testing.assert_array_equal(batch_x.numpy()[:, 0, 0, 0], batch_y.numpy()[:, 0])
        np.testing.assert_array_equal(batch_y.numpy()[:, 0], np.arange(32))


def test_same_seed_same_result_and_history_contract(fashion):
    config = preset("tutorial").replace(**{**TINY, "epochs": 2})
    first = train(config, fashion, progress=False)
    second = train(config, fashion, progress=False)
    np.testing.assert_array_equal(first.test_proba, second.test_proba)
    assert [r["val_loss"] for r in first.history] == [r["val_loss"] for r in second.history]
    third = train(config.replace(seed=1), fashion, progress=False)
    assert not np.array_equal(first.test_proba, third.test_proba)

    assert [r["epoch"] for r in first.history] == [1, 2]
    for row in first.history:
        assert set(row) == {
            "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds",
        }  # fmt: skip
        assert row["seconds"] > 0 and row["lr"] == pytest.approx(1e-3)
    assert first.test_proba.shape == (10000, 10) and first.test_proba.dtype == np.float32
    assert set(first.metrics) == set(TrainMetrics.__annotations__)  # the typed contract, whole
    assert first.metrics["epochs_run"] == 2
    assert first.metrics["data_source"] == fashion.origin.describe()
    assert first.train_seconds == pytest.approx(sum(r["seconds"] for r in first.history))
    assert first.metrics["images_per_second"] == pytest.approx(2000 / first.train_seconds)
    # it learned something in two tiny epochs (chance is 10%)
    assert first.metrics["test_accuracy"] > 0.4


def test_schedule_is_applied_during_training(fashion):
    config = preset("tutorial").replace(**{**TINY, "epochs": 3}, schedule="cosine", lr=0.01)
    result = train(config, fashion, progress=False)
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] > lrs[1] > lrs[2] and lrs[2] < 1e-4


def test_run_directory_holds_every_artifact(fashion, tmp_path):
    out = tmp_path / "run"
    result = train(preset("fast").replace(**TINY), fashion, out=out, progress=False)
    assert result.out == out
    assert {p.name for p in out.iterdir()} >= RUN_FILES
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    assert metrics["test_time_augmentation"] is False
    assert [row["class"] for row in metrics["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    assert np.array(metrics["confusion_matrix"]).sum() == 10000
    doc = json.loads((out / "config.json").read_text())
    assert doc["config"] == preset("fast").replace(**TINY).to_dict()
    assert doc["data"] == fashion.origin.to_dict() and doc["data"]["path"] in metrics["data_source"]
    assert f"Data: Fashion-MNIST from {metrics['data_source']}" in (out / "report.md").read_text()
    assert doc["backend"] == keras.backend.backend() and "keras" in doc["environment"]["versions"]
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,train_accuracy")
    assert "Test accuracy" in (out / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
    assert (out / RUN_MARKER).is_file()  # so that --overwrite may replace it


def test_existing_run_is_refused_before_training(fashion, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(CnnlabError, match="already holds files"):
        train(preset("tutorial").replace(**TINY), fashion, out=out, progress=False)
    assert (out / "keep.txt").read_text() == "precious"


def test_failed_run_leaves_nothing_behind(fashion, tmp_path):
    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(
            preset("tutorial").replace(**TINY), fashion, out=tmp_path / "run",
            progress=False, callbacks=[Boom()],
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("tta_shift", "views", "described"),
    [(0, 2, "with their mirror images"), (1, 10, "moved 1 pixel up, down, left and right")],
)
def test_tta_run_is_evaluated_on_every_view(fashion, tmp_path, tta_shift, views, described):

    from cnnlab.fmnist.inference import evaluate, load_model, predict
    from cnnlab.fmnist.model import predict_proba

    x = fashion.x_test.reshape(-1, 28, 28, 1).astype("float32")
    probe = _benchmark_probe()(x, fashion.y_test, tta=True, tta_shift=tta_shift)
    out = tmp_path / "run"
    config = preset("fast").replace(**TINY, tta=True, tta_shift=tta_shift)
    result = train(config, fashion, out=out, progress=False, callbacks=[probe])
    model = load_model(out)
    plain = predict_proba(model, x)
    both = predict_proba(model, x, tta=True, tta_shift=tta_shift)
    np.testing.assert_allclose(result.test_proba, both, atol=1e-5)
    assert not np.allclose(both, plain, atol=1e-3)
    accuracy = float((both.argmax(1) == fashion.y_test).mean())
    assert result.metrics["test_accuracy"] == pytest.approx(accuracy)
    assert evaluate(out)["test_accuracy"] == pytest.approx(accuracy)  # from config.json
    saved = json.loads((out / "metrics.json").read_text())
    assert (saved["test_time_augmentation"], saved["test_time_views"]) == (True, views)
    assert described in (out / "report.md").read_text()
    assert probe.accuracy == [pytest.approx(accuracy)]
    plain_accuracy = float((plain.argmax(1) == fashion.y_test).mean())
    assert probe.plain_accuracy == [pytest.approx(plain_accuracy)]
    from PIL import Image

    Image.fromarray(fashion.x_test[0]).save(tmp_path / "a.png")
    (row,) = predict(out, [tmp_path / "a.png"])
    assert row["probability"] == pytest.approx(float(both[0].max()), abs=1e-4)
    bare = tmp_path / "bare"  # a model file without its config.json predicts on one view
    bare.mkdir()
    shutil.copy(out / "model.keras", bare / "model.keras")
    (row,) = predict(bare, [tmp_path / "a.png"])
    assert row["probability"] == pytest.approx(float(plain[0].max()), abs=1e-4)


def test_probe_scores_one_view_before_its_tta_epoch(fashion, monkeypatch):

    from cnnlab.fmnist import model as model_module

    predicted = []
    real = model_module.view_probabilities

    def counting(model, views, *args, **kwargs):
        predicted.append(len(views))
        return real(model, views, *args, **kwargs)

    monkeypatch.setattr(model_module, "view_probabilities", counting)  # evaluation and probe
    x = fashion.x_test.reshape(-1, 28, 28, 1).astype("float32")
    probe = _benchmark_probe()(x, fashion.y_test, tta=True, tta_shift=1, tta_from_epoch=2)
    config = preset("fast").replace(**{**TINY, "epochs": 2}, tta=True, tta_shift=1)
    train(config, fashion, progress=False, callbacks=[probe])
    assert predicted == [1, 10, 10]  # epochs 1 and 2, then the run's final test evaluation
    assert probe.accuracy[0] == probe.plain_accuracy[0]
    assert len(probe.accuracy) == 2
