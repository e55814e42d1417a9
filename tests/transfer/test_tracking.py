"""`cnnlab transfer train --mlflow`: the config, each epoch's history row as it ends, the final
metrics and the run files, read back with MLflow's own client from the default store (the
``mlruns`` folder of the current directory); a tracking failure leaves the run complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnlab.cli import main
from cnnlab_testing import assert_epochs_tracked

EPOCHS = 2
OPTIONS = ["--weights", "none", "--image-size", "32", "--epochs", str(EPOCHS), "--quiet"]


def only_run(store: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnlab-transfer")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run.info.run_id


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, make_patients) -> tuple[Path, Path]:
    """A tiny run with ``--mlflow`` started in its own folder: (run directory, store)."""
    base = tmp_path_factory.mktemp("tracked")
    data = make_patients(base / "data", {"a": list(range(24)), "b": list(range(16))})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        main(["transfer", "train", "data", "--out", "run", "--mlflow", *OPTIONS])
    assert data.is_dir()
    return base / "run", base / "mlruns"


def test_the_config_is_the_params_and_each_epoch_is_one_step(tracked):
    run_dir, store = tracked
    client, run_id = only_run(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    config = json.loads((run_dir / "config.json").read_text())
    assert run.data.params["epochs"] == str(EPOCHS) and set(run.data.params) == set(config)
    assert run.data.tags["cnnlab.run_dir"] == str(run_dir.resolve())
    assert_epochs_tracked(client, run_id, run_dir, EPOCHS)


def test_the_final_metrics_carry_their_intervals_at_the_named_operating_point(tracked):
    run_dir, store = tracked
    client, run_id = only_run(store)
    logged = client.get_run(run_id).data.metrics
    metrics = json.loads((run_dir / "metrics.json").read_text())
    point = metrics["operating_point"]
    assert logged["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
    assert logged["operating_point.threshold"] == pytest.approx(point["threshold"])
    low, high = point["ci"]["sensitivity"]
    assert logged["operating_point.ci.sensitivity.low"] == pytest.approx(low)
    assert logged["operating_point.ci.sensitivity.high"] == pytest.approx(high)
    assert logged["n_test"] == metrics["n_test"]


def test_the_run_files_are_artifacts_and_the_checkpoints_are_not(tracked):
    run_dir, store = tracked
    client, run_id = only_run(store)
    logged = {entry.path for entry in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.json", "history.csv", "report.html", "roc.png"} <= logged
    assert not logged & {"best.pt", "last.pt"}
    assert (store / "cnnlab-transfer" / run_id / "artifacts" / "metrics.json").read_bytes() == (
        run_dir / "metrics.json"
    ).read_bytes()


@pytest.mark.slow
def test_a_store_failing_mid_run_stops_the_tracking_not_the_run(tmp_path, make_folders, capsys,
                                                               monkeypatch):  # fmt: skip
    from cnnlab.tracking import Tracker

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Tracker, "_log_metrics", full_disk)
    data = make_folders(tmp_path / "data", {"a": 24, "b": 16})
    run = tmp_path / "run"
    main(["transfer", "train", str(data), "--out", str(run),
          "--mlflow-uri", str(tmp_path / "store"), *OPTIONS])  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("warning: MLflow tracking stopped") == 1, err
    assert {"best.pt", "metrics.json", "report.html"} <= {p.name for p in run.iterdir()}
    client, run_id = only_run(tmp_path / "store")
    assert client.list_artifacts(run_id) == []  # nothing after the failure, not even a file
    assert client.get_run(run_id).info.status == "FAILED"  # not left RUNNING
