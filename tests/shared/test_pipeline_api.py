"""The two pipelines' Python APIs take and return the same shapes (issue 25): a notebook that
trains one can train the other by changing the package name and the config."""

from __future__ import annotations

import dataclasses
import inspect

from cnnlab import fmnist, transfer


def _shape(function) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_both_trains_take_the_same_arguments_in_the_same_order():
    assert _shape(fmnist.train) == _shape(transfer.train)
    assert [name for name, _ in _shape(fmnist.train)] == [
        "config", "out", "data_dir", "overwrite", "progress", "threads", "tensorboard",
        "mlflow", "fields",
    ]  # fmt: skip


def test_both_results_hold_the_model_its_metrics_and_history():
    for result in (fmnist.TrainResult, transfer.TransferResult):
        names = {f.name for f in dataclasses.fields(result)}
        assert {"model", "metrics", "history", "out"} <= names, result


def test_both_predicts_take_a_source_and_images_first():
    for predict in (fmnist.predict, transfer.predict):
        assert [name for name, _ in _shape(predict)][:2] == ["source", "images"]
        assert inspect.signature(predict).parameters["top_k"].default == 3
