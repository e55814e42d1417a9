"""``from cnnlab import fmnist``: train returns the model with its metrics, every preset's
``model.keras`` loads in plain Keras, and importing the pipelines loads no framework."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import cnnlab as cnnlab_package
from cnnlab import fmnist
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.artifacts import save_model
from cnnlab.fmnist.backend import seed_everything
from cnnlab.fmnist.training import Splits, compile_model, make_splits

ROOT = Path(__file__).resolve().parents[2]
TINY = {"train_limit": 1000, "val_size": 500, "epochs": 1}  # as in conftest.py
SRC = str(Path(cnnlab_package.__file__).parents[1])


def python(code: str, cwd: Path, with_cnnlab: bool = True) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh process; ``with_cnnlab=False``: cnnlab is not on its path
    (the .venv's editable install aside: the code itself checks it was never imported)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = SRC if with_cnnlab else ""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=300, cwd=cwd, env=env,
    )  # fmt: skip


def test_importing_both_pipelines_loads_no_framework(tmp_path):
    result = python(
        """
        import sys
        import cnnlab
        import cnnlab.fmnist, cnnlab.transfer
        from cnnlab import fmnist, transfer
        entry_points = [fmnist.train, fmnist.evaluate, fmnist.predict, fmnist.predict_proba,
                        transfer.train, transfer.predict, transfer.evaluate, cnnlab.study]
        assert all(callable(f) for f in entry_points[:-1])
        loaded = {"tensorflow", "keras", "torch", "torchvision"} & set(sys.modules)
        assert not loaded, loaded
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_the_api_functions_are_not_shadowed_by_the_modules_behind_them():
    import cnnlab.fmnist.inference  # noqa: F401
    import cnnlab.fmnist.training  # noqa: F401

    assert callable(fmnist.train) and callable(fmnist.evaluate) and callable(fmnist.predict)
    assert "config" in inspect.signature(fmnist.train).parameters
    assert "source" in inspect.signature(fmnist.evaluate).parameters


def test_a_field_that_does_not_exist_is_one_error_before_training():
    with pytest.raises(CnnlabError, match="unknown config field"):
        fmnist.train("tutorial", epoch=3)


@pytest.mark.slow
def test_train_returns_the_trained_model_with_its_metrics(fashion):
    result = fmnist.train("tutorial", progress=False, filters=[8, 16], **TINY)
    assert isinstance(result.model, keras.Model)
    assert result.config.filters == (8, 16) and result.out is None
    # the model is the one whose test metrics were measured: the same probabilities again
    np.testing.assert_allclose(
        fmnist.predict_proba(result, fashion.x_test[:200]), result.test_proba[:200], atol=1e-6
    )
    again = fmnist.evaluate(result)
    assert again["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"], abs=1e-4)


@pytest.fixture(scope="module")
def saved_presets(tmp_path_factory, fashion):
    """Each preset's model, trained one epoch on 256 images, saved as cnnlab saves runs, with
    its predictions on 64 test images."""
    folder = tmp_path_factory.mktemp("models")
    for name in fmnist.PRESETS:
        config = fmnist.preset(name).replace(epochs=1, train_limit=256, val_size=100)
        seed_everything(config.seed)
        s = make_splits(config, fashion)
        model = compile_model(config, steps_per_epoch=int(np.ceil(256 / config.batch_size)))
        model.fit(s.x_train, Splits.one_hot(s.y_train), batch_size=config.batch_size, verbose=0)
        save_model(model, folder / f"{name}.keras")
        np.save(folder / f"{name}.npy", model.predict(s.x_test[:64], verbose=0))
        np.save(folder / f"{name}_steps.npy", int(model.optimizer.iterations.numpy()))
    np.save(folder / "x.npy", s.x_test[:64])
    return folder


@pytest.mark.slow
def test_every_presets_model_loads_in_plain_keras_without_cnnlab(saved_presets):
    result = python(
        f"""
        import sys
        import keras, numpy as np
        x = np.load("x.npy")
        for name in {list(fmnist.PRESETS)!r}:
            model = keras.saving.load_model(name + ".keras")  # compiled, optimizer included
            np.testing.assert_allclose(model.predict(x, verbose=0), np.load(name + ".npy"),
                                       atol=1e-6)
            assert int(model.optimizer.iterations.numpy()) == np.load(name + "_steps.npy")
            print(name, "loaded")
        assert "cnnlab" not in sys.modules
        """,
        saved_presets,
        with_cnnlab=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [w for n in fmnist.PRESETS for w in (n, "loaded")]


def test_the_one_cycle_model_is_saved_with_its_final_rate_and_its_optimizer_state(tmp_path):
    config = fmnist.preset("fast").replace(epochs=1, filters=(4,), dense_units=8)
    model = compile_model(config, steps_per_epoch=3)
    x = np.random.default_rng(0).uniform(0, 255, (24, 28, 28, 1)).astype(np.float32)
    model.fit(x, Splits.one_hot(np.arange(24) % 10), batch_size=8, verbose=0)
    save_model(model, tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    trained_rate = float(model.optimizer.learning_rate)
    assert trained_rate == pytest.approx(3e-3 / 25 / 1e4, rel=1e-3)  # one-cycle's last value
    assert float(loaded.optimizer.learning_rate) == pytest.approx(trained_rate, rel=1e-6)
    for mine, trained in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(mine.numpy(), trained.numpy())
    assert type(model.optimizer.get_config()["learning_rate"]) is dict  # the model trained on
    assert model.optimizer.get_config()["learning_rate"]["class_name"] == "OneCycle"  # untouched


@pytest.mark.slow
def test_the_fmnist_example_runs(tmp_path, fashion):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fmnist_notebook.py"), "--train-limit", "1000",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": SRC, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout and "largest difference 0.0e+00" in result.stdout
    assert (tmp_path / "run" / "model.keras").is_file()
