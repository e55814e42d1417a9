"""MLflow tracking (cnnlab/tracking.py), without a framework: what a run logs, read back with
MLflow's own client from a store in tmp_path; failures that stop the tracking, not the run; the
options refused before training. Each pipeline's real training is tracked in
tests/fmnist/test_tracking.py and tests/transfer/test_tracking.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnlab import tracking
from cnnlab.errors import CnnlabError
from cnnlab.tracking import Mlflow, Tracker, numbers, run_files, tracked
from cnnlab_testing import call_main

HISTORY = [
    {"epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "val_accuracy": 0.5, "val_roc_auc": None},
    {"epoch": 2, "train_loss": 0.6, "val_loss": 0.8, "val_accuracy": 0.7, "val_roc_auc": 0.75},
]
METRICS = {
    "test_accuracy": 0.7,
    "val_accuracy": 0.7,  # also a history column: its curve keeps one point per epoch
    "roc_auc": 0.8,
    "ppv": float("nan"),
    "class_names": ["a", "b"],
    "calibration": None,
    "feature_cache": True,
    "ci": {"test_accuracy": [0.6, 0.8], "roc_auc": None},
    "operating_point": {"threshold": 0.4, "sensitivity": 0.9, "ci": {"sensitivity": [0.7, 1]}},
    "per_class": [{"class": "a", "f1": 0.7}],
}


def run_directory(root: Path) -> Path:
    """The shape of a transfer run: JSON, CSV, a plot, the models, a fold, a hidden marker."""
    run = root / "run"
    (run / "fold_1").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "history.csv").write_text("epoch\n1\n")
    (run / "roc.png").write_bytes(b"png")
    (run / "fold_1" / "metrics.json").write_text("{}")
    for name in ("best.pt", "last.pt", ".cnnlab-run"):
        (run / name).write_bytes(b"x")
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store (a folder) for the module: creating its tables takes seconds."""
    return tmp_path_factory.mktemp("store") / "mlruns"


def track(store: Path, run: Path | None, log_model: bool = False) -> str:
    """A transfer-shaped run tracked in ``store``: params, two epochs, metrics, files."""
    target = Mlflow(uri=str(store), log_model=log_model)
    params = {"lr": 0.001, "filters": [32, 64], "early_stopping": None}
    with tracked(target, "transfer", run_name="run", params=params, tags={"x": None}) as t:
        for row in HISTORY:
            t.log_epoch(row)
        t.finish(METRICS, run)
    return t.run_id


def client(store: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{store / 'mlflow.db'}")


def artifact_paths(c: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for entry in c.list_artifacts(run_id, folder):
        found |= artifact_paths(c, run_id, entry.path) if entry.is_dir else {entry.path}
    return found


# -- what a tracked run holds --------------------------------------------------------------------


def test_params_epochs_metrics_and_files_are_read_back_from_the_store(store, tmp_path):
    run_id = track(store, run_directory(tmp_path))
    c = client(store)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params == {"lr": "0.001", "filters": "32,64", "early_stopping": "None"}
    assert run.data.tags["cnnlab.pipeline"] == "transfer" and "x" not in run.data.tags
    assert c.get_experiment(run.info.experiment_id).name == "cnnlab-transfer"
    for name in ("train_loss", "val_loss", "val_accuracy"):
        history = c.get_metric_history(run_id, name)
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r[name]) for r in HISTORY]
    assert [(m.step, m.value) for m in c.get_metric_history(run_id, "val_roc_auc")] == [(2, 0.75)]
    assert "epoch" not in run.data.metrics
    assert run.data.metrics["ci.test_accuracy.high"] == 0.8
    assert run.data.metrics["operating_point.ci.sensitivity.low"] == 0.7
    assert artifact_paths(c, run_id) == {
        "metrics.json", "history.csv", "roc.png", "fold_1/metrics.json"
    }  # fmt: skip
    # the artifacts sit in the store's folder, not in ./mlruns of wherever the test ran
    assert Path(store / "cnnlab-transfer" / run_id / "artifacts" / "roc.png").is_file()


def test_the_model_file_is_logged_only_when_asked(store, tmp_path):
    run_id = track(store, run_directory(tmp_path), log_model=True)
    assert "best.pt" in artifact_paths(client(store), run_id)
    assert "last.pt" not in artifact_paths(client(store), run_id)


def test_the_final_metrics_are_the_finite_numbers_of_metrics_json_flattened():
    assert numbers(METRICS) == {
        "test_accuracy": 0.7,
        "val_accuracy": 0.7,
        "roc_auc": 0.8,
        "ci.test_accuracy.low": 0.6,
        "ci.test_accuracy.high": 0.8,
        "operating_point.threshold": 0.4,
        "operating_point.sensitivity": 0.9,
        "operating_point.ci.sensitivity.low": 0.7,
        "operating_point.ci.sensitivity.high": 1.0,
    }
    assert all(math.isfinite(v) for v in numbers(METRICS).values())


def test_the_run_files_leave_out_hidden_files_and_models_but_the_one_asked_for(tmp_path):
    run = run_directory(tmp_path)
    names = {p.relative_to(run).as_posix() for p in run_files(run, None)}
    assert names == {"metrics.json", "history.csv", "roc.png", "fold_1/metrics.json"}
    with_model = {p.relative_to(run).as_posix() for p in run_files(run, "best.pt")}
    assert with_model == names | {"best.pt"}


# -- where -------------------------------------------------------------------------------------


def test_a_folder_is_a_sqlite_store_inside_it_and_uris_pass_through(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    default = Mlflow()
    assert default.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert default.folder == tmp_path / "mlruns"
    assert Mlflow("sqlite:///db/x.db").folder == tmp_path / "db"
    assert Mlflow("file:./old").folder == Path("./old")
    assert Mlflow("http://localhost:5000").tracking_uri == "http://localhost:5000"
    assert Mlflow("http://localhost:5000").folder is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert Mlflow().tracking_uri == "http://tracker:5000"


def test_a_file_store_named_by_the_user_works(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "files").as_uri()
    with tracked(Mlflow(uri), "fmnist", run_name="r", params={"epochs": 2}) as t:
        t.log_epoch({"epoch": 1, "train_loss": 0.5})
    c = MlflowClient(uri)
    assert c.get_run(t.run_id).data.params == {"epochs": "2"}
    assert [m.step for m in c.get_metric_history(t.run_id, "train_loss")] == [1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (False, None), (True, Mlflow()), ("db", Mlflow("db")), (Path("p"), Mlflow("p"))],
)
def test_the_api_argument_names_a_setting(value, expected):
    assert tracking.setting(value) == expected


def test_any_cli_option_turns_tracking_on():
    assert tracking.options(False, None, False) is None
    assert tracking.options(True, None, False) == Mlflow()
    assert tracking.options(False, "x", False) == Mlflow("x")
    assert tracking.options(False, None, True) == Mlflow(log_model=True)


# -- failures ----------------------------------------------------------------------------------


def test_a_failure_while_logging_warns_once_and_stops_the_tracking(store, capsys, monkeypatch):
    with tracked(Mlflow(str(store)), "fmnist", run_name="broken", params={}) as t:

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(t._client, "log_batch", fail)
        t.log_epoch(HISTORY[0])
        t.log_epoch(HISTORY[1])  # nothing more: neither a second warning nor an exception
        t.finish(METRICS, None)
        assert not t.active
    assert client(store).get_run(t.run_id).info.status == "FAILED"  # not left RUNNING
    err = capsys.readouterr().err
    assert err.count("warning: MLflow tracking stopped") == 1, err
    assert "No space left on device" in err and "run directory keeps everything" in err


def test_a_failing_block_ends_the_run_failed_and_ctrl_c_killed(store):
    ends = {}
    for error, name in ((RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "killed")):
        target = Mlflow(str(store))
        with pytest.raises(type(error)), tracked(target, "fmnist", run_name=name, params={}) as t:
            raise error
        ends[name] = client(store).get_run(t.run_id).info.status
    assert ends == {"failed": "FAILED", "killed": "KILLED"}


def test_a_store_that_cannot_be_opened_is_one_error_line(tmp_path):
    with pytest.raises(CnnlabError, match=r"^MLflow store nosuch://x: cannot start a run \("):
        tracking.start(Mlflow("nosuch://x"), "fmnist", run_name=None, params={}, tags={})


def test_tracking_off_does_nothing():
    t = Tracker()
    t.log_epoch(HISTORY[0])
    t.finish(METRICS, None)
    t.end("FINISHED")
    assert not t.active


@pytest.mark.parametrize(
    "command",
    [["train", "--preset", "tutorial"], ["transfer", "train", "{tmp}/data", "--weights", "none"]],
    ids=["fmnist", "transfer"],
)
@pytest.mark.parametrize("where", ["{tmp}/file", "{tmp}/run/mlruns"], ids=["a file", "in --out"])
def test_an_unusable_store_folder_is_one_line_before_training(tmp_path, capsys, command, where):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "data").mkdir()
    args = [a.format(tmp=tmp_path) for a in [*command, "--out", "{tmp}/run", "--mlflow-uri", where]]
    code, _, err = call_main(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"cnnlab: error: --mlflow-uri {where.format(tmp=tmp_path)}")
    assert not (tmp_path / "run").exists()


def test_a_store_inside_the_data_folder_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code, _, err = call_main(
        capsys, "transfer", "train", tmp_path / "data", "--out", tmp_path / "run",
        "--mlflow-uri", tmp_path / "data" / "mlruns",
    )  # fmt: skip
    assert code == 2 and "lies inside the data folder" in err, err
    assert list((tmp_path / "data").iterdir()) == []  # no class folder "mlruns" appeared


def test_mlflows_own_default_beside_the_run_directory_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracking.check(Mlflow("sqlite:///mlflow.db"), "runs/r")  # the database is beside --out
    tracking.check(Mlflow(), "runs/r")
    with pytest.raises(CnnlabError, match="lies inside the run directory --out"):
        tracking.check(Mlflow("sqlite:///runs/r/mlflow.db"), "runs/r")
