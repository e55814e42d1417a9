"""Optional MLflow tracking of either pipeline's training: ``--mlflow`` (issue 26).

A tracked run holds the same things for both pipelines, so their runs read alike in MLflow:

- **params**: the run's resolved config (the fields of its ``config.json``);
- **metrics per epoch**, logged as each epoch ends: every number of the epoch's ``history.csv``
  row, named as its column, step = the epoch (1-based, as ``history.csv`` counts);
- **final metrics**, logged once the run directory is complete: the numbers of
  ``metrics.json``, nested blocks as ``operating_point.sensitivity``, intervals as
  ``ci.roc_auc.low`` and ``ci.roc_auc.high``;
- **artifacts**: the run directory's files (config, history, metrics, plots, reports) except
  the model; the model file (``model.keras``, ``best.pt``) only with ``log_model``
  (``--mlflow-log-model``): it is most of a run's size and the run directory keeps it anyway;
- **tags**: ``cnnlab.pipeline``, ``cnnlab.run_dir``, ``cnnlab.data_dir``, ``cnnlab.version``.

**Where.** MLflow 3 keeps its file store (``./mlruns`` of YAML files) in maintenance mode and
refuses to open one unless ``MLFLOW_ALLOW_FILE_STORE=true``; its own default is
``sqlite:///mlflow.db``. A folder (the default ``mlruns``) therefore means a SQLite database in
it, ``mlruns/mlflow.db``, with the artifacts beside it (``mlruns/<experiment>/<run id>/``): one
folder, no server, offline. Any tracking URI MLflow takes works too (``sqlite:///...``,
``http://host:5000``, ``postgresql://...``), and ``file:...`` opens a file store: whoever names
one has chosen it, so the opt-out is set for them.

**Failures.** MLflow missing, or a store that cannot be opened, is one line before training
(``preflight``, then :func:`start`). A failure while the run trains or is logged (a server
gone, a full disk) prints one warning and stops the tracking; the run goes on and its run
directory is complete: that directory is the record, MLflow a copy.

mlflow is imported when tracking starts, never by a run without ``--mlflow``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import typer

from cnnlab import __version__
from cnnlab.errors import CnnlabError

if TYPE_CHECKING:
    from cnnlab.files import Inputs

DEFAULT_STORE = "mlruns"  # a folder in the current directory, as MLflow's own tools default to
EXPERIMENTS = {"fmnist": "cnnlab-fmnist", "transfer": "cnnlab-transfer"}
MODEL_FILES = {"fmnist": "model.keras", "transfer": "best.pt"}
MODEL_SUFFIXES = (".keras", ".pt", ".safetensors", ".onnx")  # never logged unless asked
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two letters at least: C:\ is a path
_BATCH = 100  # MLflow's limit on params per log_batch call
Say = Callable[[str], object] | None  # where the run's MLflow id is printed

# The options of both `train` commands, declared once.
MLFLOW_OPTION = typer.Option(
    False, "--mlflow", help="Track the run in MLflow: config, metrics per epoch, run files."
)
MLFLOW_URI_OPTION = typer.Option(
    None,
    "--mlflow-uri",
    metavar="URI",
    help="MLflow store: a folder (default mlruns, or $MLFLOW_TRACKING_URI) or a tracking URI "
    "(sqlite:///..., http://...); implies --mlflow.",
)
MLFLOW_LOG_MODEL_OPTION = typer.Option(
    False, "--mlflow-log-model", help="Also log the model file to MLflow; implies --mlflow."
)


@dataclass(frozen=True)
class Mlflow:
    """Where and what to track. ``uri``: a folder or an MLflow tracking URI (None:
    ``$MLFLOW_TRACKING_URI``, else ``mlruns``); ``experiment`` (None: ``$MLFLOW_EXPERIMENT_NAME``,
    else ``cnnlab-fmnist`` or ``cnnlab-transfer``); ``log_model``: the model file too."""

    uri: str | None = None
    experiment: str | None = None
    log_model: bool = False

    @property
    def given(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_STORE

    @property
    def tracking_uri(self) -> str:
        folder = self.plain_folder()
        return f"sqlite:///{folder / 'mlflow.db'}" if folder else self.given

    @property
    def database(self) -> Path | None:
        """The SQLite file of a local store (None: a file store, a server, a database
        elsewhere)."""
        if folder := self.plain_folder():
            return folder / "mlflow.db"
        uri = self.given
        if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
            return Path(uri.removeprefix("sqlite:///")).absolute()
        return None

    @property
    def folder(self) -> Path | None:
        """The local folder the store writes into (None: a server or database elsewhere)."""
        if database := self.database:
            return database.parent
        uri = self.given
        return Path(url2pathname(urlparse(uri).path)) if uri.startswith("file:") else None

    def plain_folder(self) -> Path | None:
        """The folder ``uri`` names when it is one, not a URI: a store laid out by cnnlab."""
        uri = self.given
        if _SCHEME.match(uri) or uri == "databricks":
            return None
        return Path(uri).expanduser().absolute()


def options(mlflow: bool, uri: str | None, log_model: bool) -> Mlflow | None:
    """The CLI options as one setting: on when any of them is given."""
    if not (mlflow or uri is not None or log_model):
        return None
    return Mlflow(uri=uri, log_model=log_model)


def setting(value: Mlflow | str | os.PathLike | bool | None) -> Mlflow | None:
    """The ``mlflow`` argument of ``train``: True (the default store), a folder or URI, or an
    :class:`Mlflow`; None or False: no tracking."""
    if value is None or value is False:
        return None
    if value is True:
        return Mlflow()
    if isinstance(value, Mlflow):
        return value
    if isinstance(value, str | os.PathLike):
        return Mlflow(uri=os.fspath(value))
    raise CnnlabError(f"mlflow must be True, a folder or tracking URI, got {value!r}")


def check(
    target: Mlflow | None,
    out: str | os.PathLike | None,
    inputs: Inputs = {},  # noqa: B006  (read only)
) -> None:
    """Before any framework loads: MLflow is installed, and a local store can be written,
    never inside the run directory ``out`` nor an input (``{label: path}``, the data folder).
    A SQLite store is checked as its database file: beside ``out`` in the current directory,
    as ``sqlite:///mlflow.db`` (MLflow's own default) puts it, is fine."""
    if target is None:
        return
    from cnnlab.files import check_output
    from cnnlab.runs import log_folder
    from cnnlab.runtime import require

    require("tracking")
    named = {"the run directory --out": out, **inputs}
    if target.database is not None:
        check_output("--mlflow-uri", target.database, overwrite=True, inputs=named)
    elif target.folder is not None:  # a file store writes everywhere in its folder
        log_folder("--mlflow-uri", target.folder, out)


class Tracker:
    """One MLflow run, or nothing (``Tracker()``: every call does nothing). After a failure it
    warns once and does nothing more."""

    def __init__(
        self, client: Any = None, run_id: str = "", uri: str = "", model_file: str | None = None
    ):
        self._client, self.run_id, self.uri, self._model_file = client, run_id, uri, model_file
        self._per_epoch: set[str] = set()  # the history's columns, each a curve already

    @property
    def active(self) -> bool:
        return self._client is not None

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """One ``history.csv`` row, at step ``row["epoch"]``."""
        step = int(row["epoch"])
        values = {k: v for k, v in numbers(row).items() if k != "epoch"}
        self._per_epoch |= set(values)
        self._safely("an epoch's metrics", lambda: self._log_metrics(values, step))

    def finish(
        self, metrics: Mapping[str, Any], run_dir: str | os.PathLike | None, say: Say = None
    ) -> None:
        """The final metrics, then the run directory's files (once it is complete). A number
        named as a history column (Fashion-MNIST's ``val_accuracy``: the last epoch's) is left
        to that column's curve, which it would otherwise extend by a point at step 0."""
        final = {k: v for k, v in numbers(metrics).items() if k not in self._per_epoch}
        self._safely("the final metrics", lambda: self._log_metrics(final, 0))
        if run_dir is not None:
            for path in run_files(Path(run_dir), self._model_file):
                self._safely(f"the file {path.name}", lambda p=path: self._artifact(p, run_dir))
        if self.active and say is not None:
            say(f"MLflow run {self.run_id} in {self.uri}")

    def end(self, status: str) -> None:
        self._safely("the run's end", lambda: self._client.set_terminated(self.run_id, status))

    def _log_metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(metrics), _BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[i : i + _BATCH])

    def _artifact(self, path: Path, run_dir: str | os.PathLike) -> None:
        folder = path.parent.relative_to(run_dir).as_posix()
        self._client.log_artifact(self.run_id, str(path), None if folder == "." else folder)

    def _safely(self, what: str, call: Callable[[], object]) -> None:
        if self._client is None:
            return
        try:
            call()
        except Exception as e:  # tracking is a copy: never worth the run
            client, self._client = self._client, None
            with contextlib.suppress(Exception):  # said FAILED if the store still answers
                client.set_terminated(self.run_id, "FAILED")
            print(
                f"warning: MLflow tracking stopped ({what}: {_first_line(e)}); "
                "the run goes on, its run directory keeps everything",
                file=sys.stderr,
                flush=True,
            )


def start(
    target: Mlflow,
    pipeline: str,
    *,
    run_name: str | None,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
) -> Tracker:
    """Open the store, find or create the experiment, start a run with ``params`` and
    ``tags``: one CnnlabError line when that fails, before training."""
    from cnnlab.runtime import require

    require("tracking")
    uri = target.tracking_uri
    if uri.startswith("file:"):  # the file store was named: MLflow 3 refuses it without this
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    experiment = target.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    experiment = experiment or EXPERIMENTS[pipeline]
    all_tags = {"cnnlab.pipeline": pipeline, "cnnlab.version": __version__, **tags}
    all_tags = {key: str(value) for key, value in all_tags.items() if value is not None}
    with _quiet_mlflow():
        try:  # a broken install (a dependency of mlflow missing) is one line too
            from mlflow import MlflowClient
            from mlflow.entities import Param

            if target.folder is not None:
                target.folder.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment(client, experiment, target)
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
            logged = [Param(k, _param(v)) for k, v in params.items()]
            for i in range(0, len(logged), _BATCH):
                client.log_batch(run.info.run_id, params=logged[i : i + _BATCH])
        except Exception as e:
            why = _first_line(e)
            raise CnnlabError(f"MLflow store {uri}: cannot start a run ({why})") from None
    model_file = MODEL_FILES[pipeline] if target.log_model else None
    return Tracker(client, run.info.run_id, uri, model_file)


@contextlib.contextmanager
def tracked(
    target: Mlflow | None,
    pipeline: str,
    *,
    run_name: str | None,
    params: Mapping[str, Any],
    tags: Mapping[str, Any] = {},  # noqa: B006  (read only)
) -> Iterator[Tracker]:
    """A run for the block (a :class:`Tracker` that does nothing when ``target`` is None),
    ended FINISHED when the block completes, KILLED on Ctrl-C, FAILED otherwise."""
    tracker = (
        start(target, pipeline, run_name=run_name, params=params, tags=tags)
        if target is not None
        else Tracker()
    )
    status = "FAILED"
    try:
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.end(status)


def _experiment(client: Any, name: str, target: Mlflow) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # a folder store keeps its artifacts inside the folder, not in ./mlruns of wherever it ran
    folder = target.plain_folder()
    location = (folder / _safe_name(name)).as_uri() if folder else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:
        found = client.get_experiment_by_name(name)  # another run created it meanwhile
        if found is None:
            raise
        return found.experiment_id


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's INFO lines (creating the database tables, ...) are not about the run."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def numbers(doc: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a JSON document, flat: nested blocks joined with ``.``, the
    ``[low, high]`` pairs of a ``ci`` block as ``.low`` and ``.high``; text, lists, booleans
    and undefined values (None, NaN) left out."""
    out: dict[str, float] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= numbers(value, f"{name}.")
        elif isinstance(value, list | tuple) and prefix.endswith("ci.") and len(value) == 2:
            out |= numbers({"low": value[0], "high": value[1]}, f"{name}.")
        elif _is_number(value):
            out[name] = float(value)
    return out


def run_files(run_dir: Path, model_file: str | None) -> list[Path]:
    """What is logged of a run directory: every file but hidden ones and models, and the
    model file ``model_file`` (a path inside it) when given."""
    keep = []
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix in MODEL_SUFFIXES and relative.as_posix() != model_file:
            continue
        keep.append(path)
    return keep


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _param(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 200 else text[:197] + "..."
