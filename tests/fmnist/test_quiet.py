"""A normal run prints only cnnlab's own lines: TensorFlow's oneDNN, absl and NodeDef notices
stay off the terminal whatever TF_CPP_MIN_LOG_LEVEL says; ``--verbose`` lets them through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab_testing import cnnlab

TINY_TRAIN = ["--preset", "tutorial", "--train-limit", "100", "--val-size", "100",
              "--epochs", "1", "--no-progress"]  # fmt: skip


def quiet_cnnlab(*args: str, log_level: str | None) -> subprocess.CompletedProcess:
    """``cnnlab ARGS`` in a fresh process, ``TF_CPP_MIN_LOG_LEVEL`` as given (None: unset)."""
    level = {"TF_CPP_MIN_LOG_LEVEL": log_level} if log_level is not None else {}
    return cnnlab(*args, env=level, unset=["TF_CPP_MIN_LOG_LEVEL"], timeout=600)


@pytest.fixture(scope="module")
def garment(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("images") / "garment.png"
    image = np.zeros((28, 28), np.uint8)
    image[6:22, 9:19] = 200  # a light block on black, like a Fashion-MNIST garment
    Image.fromarray(image).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("log_level", [None, "2"], ids=["unset", "level-2"])
def test_train_prints_only_cnnlabs_own_lines(log_level, tmp_path, fashion, garment):
    # --threads 1 too: setting the pools imports TensorFlow on a second path
    result = quiet_cnnlab("train", *TINY_TRAIN, "--threads", "1", "--out", str(tmp_path / "run"),
                    log_level=log_level)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["test", "run"], result.stdout
    assert lines[0].startswith("test accuracy ") and lines[1].startswith("run directory: ")

    predicted = quiet_cnnlab("predict", str(tmp_path / "run"), str(garment), log_level=log_level)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stderr == ""
    assert predicted.stdout.startswith(f"{garment}: ") and len(predicted.stdout.splitlines()) == 1

    # --verbose: TensorFlow may speak (how much depends on the machine); cnnlab's output is the same
    verbose = quiet_cnnlab("--verbose", "predict", tmp_path / "run", garment, log_level=None)
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout == predicted.stdout
    assert "cnnlab" not in verbose.stderr


@pytest.mark.parametrize(
    ("given", "verbose", "expected"),
    [(None, False, "3"), ("2", False, "3"), ("0", False, "3"),
     (None, True, None), ("2", True, "2"), ("0", True, "0")],
)  # fmt: skip
def test_tensorflow_log_level_is_quiet_unless_verbose(given, verbose, expected, monkeypatch):
    """What each command finds in TF_CPP_MIN_LOG_LEVEL (TensorFlow reads it once, at import)."""
    if given is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", given)
    # --no-measure: the variable is set as the command starts; measuring the machine's speed
    # (a minute and more of training, cached in cnnlab's cache folder) has nothing to do with it
    main(
        [*(["--verbose"] if verbose else []), "study", "plan", "--profile", "smoke", "--no-measure"]
    )
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == expected


NOTEBOOK = """
import sys
from cnnlab import fmnist
result = fmnist.train("tutorial", out=sys.argv[1], progress=False, train_limit=100,
                      val_size=100, epochs=1)
rows = fmnist.predict(result, [sys.argv[2]])
print("predicted", rows[0]["predicted"])
"""


@pytest.mark.slow
def test_the_python_api_is_as_quiet_as_the_command_line(tmp_path, fashion, garment):
    """A notebook calling fmnist.* sees no absl, oneDNN or E0000 NodeDef line (issue 26)."""
    script = tmp_path / "notebook.py"
    script.write_text(NOTEBOOK)
    from cnnlab_testing import cnnlab_env

    env = cnnlab_env(unset=["TF_CPP_MIN_LOG_LEVEL"])
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), str(garment)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout.startswith("predicted ") and len(result.stdout.splitlines()) == 1
