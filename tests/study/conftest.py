import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab_testing import run_main

HERE = Path(__file__).parent

FAKE_SPEC = """
name: fake
seeds: 3
budget: {train_limit: 1000, epochs: 2, val_size: 500}
baseline: {preset: tutorial, schedule: cosine}
val_target: 0.8
factors:
  kernel_size: [3, 5, 7]
  regularization: [dropout, batch_norm]
  batch_size: [128, 512]
  batch_size_scaled: {kind: batch_size, levels: [128, 512], lr_scaling: linear, warmup_epochs: 1}
  optimizer: {levels: [adam, sgd], lr_sweep: {multipliers: [0.5, 2.0], epochs: 1}}
"""


SMALL_SPEC = """
name: small
seeds: 2
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  kernel_size: [3, 5, 7]
"""


@pytest.fixture
def small_spec(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_SPEC)
    return path


@pytest.fixture(scope="session")
def finished_fake_study(tmp_path_factory):
    """One fake study run to completion with two workers, shared by the read-only tests."""
    from cnnlab.study import load_spec, run_study

    tmp = tmp_path_factory.mktemp("fake_study")  # one run shared by the engine/report tests
    (tmp / "fake.yaml").write_text(FAKE_SPEC)
    url = f"sqlite:///{tmp}/s.db"
    mp = pytest.MonkeyPatch()
    mp.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    )
    try:
        summary = run_study(load_spec(tmp / "fake.yaml"), url, "fake", 2,
                            trainer="fake_trainer:trainer", progress=False)  # fmt: skip
    finally:
        mp.undo()
    return {"url": url, "spec": tmp / "fake.yaml", "summary": summary, "dir": tmp}


@pytest.fixture
def fake_env(monkeypatch):
    """Workers import the fake trainer from this folder."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return monkeypatch


@pytest.fixture
def fake_trainer(fake_env):
    """The fake trainer's module: ``fake_trainer.name(**options)`` is the trainer name that
    gives a run (and its worker processes) the fake with those options."""
    fake_env.syspath_prepend(str(HERE))
    import fake_trainer

    return fake_trainer


@pytest.fixture
def fake_spec(tmp_path):
    path = tmp_path / "fake.yaml"
    path.write_text(FAKE_SPEC)
    return path


@pytest.fixture
def start_fake_run(fake_env):
    """Start ``run_fake.py`` (a study run with the fake trainer) as its own process."""

    def start(spec, storage, name, workers=1, trainer="fake_trainer:trainer", **popen):
        args = [str(spec), storage, name, str(workers), trainer]
        return subprocess.Popen(
            [sys.executable, str(HERE / "run_fake.py"), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
        )  # fmt: skip

    return start


@pytest.fixture
def run_cli(tmp_path, fake_env):
    """``cnnlab ARGS`` run inside ``tmp_path`` (where a default storage would land), in this
    process as a child would see it (``run_main``); the study workers it starts import the
    fake trainer from this folder."""

    def run(*args, env=None):
        return run_main(*args, cwd=tmp_path, env=env)

    return run
