"""`cnnlab train --mlflow-uri DIR`: the config, each epoch's history row as it ends, the test
metrics and the run files, read back with MLflow's own client from the store in DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnlab.cli import main
from cnnlab_testing import assert_epochs_tracked

EPOCHS = 2


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, fashion) -> tuple[Path, MlflowClient, str]:
    """A tiny tutorial run tracked with its model file: (run directory, client, run id)."""
    base = tmp_path_factory.mktemp("tracked")
    run, store = base / "run", base / "store"
    main(
        ["train", "--preset", "tutorial", "--train-limit", "1000", "--val-size", "500",
         "--epochs", str(EPOCHS), "--no-progress", "--out", str(run),
         "--mlflow-uri", str(store), "--mlflow-log-model"]
    )  # fmt: skip
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("cnnlab-fmnist").experiment_id])
    return run, client, found.info.run_id


@pytest.mark.slow
def test_the_config_is_the_params_and_each_epoch_is_one_step(tracked):
    run_dir, client, run_id = tracked
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["epochs"] == str(EPOCHS) and run.data.params["train_limit"] == "1000"
    assert_epochs_tracked(client, run_id, run_dir, EPOCHS)


@pytest.mark.slow
def test_the_test_metrics_and_the_run_files_with_the_model_are_logged(tracked):
    run_dir, client, run_id = tracked
    metrics = json.loads((run_dir / "metrics.json").read_text())
    logged = client.get_run(run_id).data.metrics
    assert logged["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert logged["epochs_run"] == EPOCHS
    files = {entry.path for entry in client.list_artifacts(run_id)}
    assert {"metrics.json", "config.json", "history.csv", "report.html", "model.keras"} <= files
