"""`cnnlab transfer export` writes a model card beside the exported file (issue 26): intended
use, the data, every metric with its interval and test size at its named operating point, the
threshold, the preprocessing and the known limits; a refused export leaves no card."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from cnnlab.transfer.checkpoint import load
from cnnlab.transfer.inference.card import card_path
from cnnlab_testing import call_main

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("transfer_faults", HERE / "test_faults.py")
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)

CI = {"accuracy": [0.61, 0.79], "balanced_accuracy": [0.62, 0.8], "macro_f1": [0.6, 0.78],
      "sensitivity": [0.71, 0.93], "specificity": [0.52, 0.74]}  # fmt: skip
POINT = {"threshold": 0.4321, "sensitivity": 0.823, "specificity": 0.634, "ppv": 0.7,
         "npv": 0.75, "balanced_accuracy": 0.729, "accuracy": 0.71, "macro_f1": 0.695,
         "ci": CI}  # fmt: skip
METRICS = {
    "test_accuracy": 0.69, "test_loss": 0.61, "balanced_accuracy": 0.68, "macro_f1": 0.67,
    "roc_auc": 0.812, "pr_auc": 0.774, "ece": 0.224,
    "per_class": [{"class": "a", "precision": 0.7, "recall": 0.6, "f1": 0.65, "support": 41},
                  {"class": "b", "precision": 0.7, "recall": 0.8, "f1": 0.75, "support": 19}],
    "ci": {"test_accuracy": [0.57, 0.8], "roc_auc": [0.701, 0.905], "pr_auc": [0.62, 0.9]},
    "ci_method": "percentile bootstrap, 2000 resamples of the images, seed 0",
    "positive_class": "b", "threshold_dependent_at": "argmax",
    "at_argmax": {**POINT, "name": "argmax", "threshold": 0.5, "sensitivity": 0.555},
    "operating_point": {**POINT, "name": "validation-chosen threshold"},
    "evaluated_on": "test", "class_names": ["a", "b"], "threshold": 0.4321, "calibration": None,
    "n_train": 200, "n_val": 40, "n_test": 60,
}  # fmt: skip
DATA = {"data_dir": "/data/xray", "layout": "train/val/test", "carved": [],
        "classes": ["a", "b"], "counts": {"train": [120, 80], "val": [25, 15], "test": [41, 19]},
        "skipped": [{"path": "x.png", "reason": "truncated"}], "positive_class": "b"}  # fmt: skip
CONFIG = {"arch": "resnet18", "weights": "imagenet", "strategy": "head", "epochs": 8,
          "monitor": "balanced_accuracy"}  # fmt: skip


@pytest.fixture
def run(tmp_path, run_dir) -> Path:
    """The untrained checkpoint (threshold 0.4321) in a run directory with a run's JSON files."""
    import torch

    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(run_dir / "best.pt", weights_only=True)
    torch.save({**state, "threshold": 0.4321}, run / "best.pt")
    for name, doc in (("metrics", METRICS), ("data_report", DATA), ("config", CONFIG)):
        (run / f"{name}.json").write_text(json.dumps(doc))
    return run


def export(capsys, *args) -> str:
    code, out, err = call_main(capsys, "transfer", "export", *args)
    assert code == 0, err
    return out


def test_the_card_beside_an_onnx_model_says_what_a_clinical_reader_needs(run, tmp_path, capsys):
    model = tmp_path / "out" / "model.onnx"
    said = export(capsys, run, "--out", model)
    card = card_path(model)
    assert card == tmp_path / "out" / "model.onnx.card.md" and f"model card: {card}" in said
    text = card.read_text()
    assert "not a diagnostic device" in text
    for line in ("| train | 120 | 80 | 200 |", "| test | 41 | 19 | 60 |", "/data/xray"):
        assert line in text  # the data: folder, classes and counts per split
    assert "60 images (a 41, b 19)" in text
    for row in (
        "| ROC-AUC | 0.812 [0.701, 0.905] | 60 |",
        "| PR-AUC | 0.774 [0.620, 0.900] | 60 |",
        "| sensitivity | 0.823 [0.710, 0.930] | 19 b |",
        "| specificity | 0.634 [0.520, 0.740] | 41 not b |",
        "| balanced accuracy | 0.729 [0.620, 0.800] | 60 |",
        "| sensitivity | 0.555 [0.710, 0.930] | 19 b |",  # the argmax has its own table
    ):
        assert row in text, row
    assert "At the validation-chosen threshold 0.432:" in text and "At the argmax" in text
    assert "b is called when its softmax probability is >= 0.432" in text
    assert "0.4850, 0.4560, 0.4060" not in text  # this checkpoint's own mean, not ImageNet's
    assert "0.5000, 0.5000, 0.5000" in text and "0.2500, 0.2500, 0.2500" in text
    for limit in ("**Site shift.**", "**Calibration.** Held-out ECE 0.224", "**Small test set.**"):
        assert limit in text, limit
    assert "b (19)" in text and "a (41)" not in text  # only the class with too few images


def test_a_safetensors_export_gets_its_own_card_in_the_same_folder(run, tmp_path, capsys):
    export(capsys, run, "--out", tmp_path / "m.onnx", "--no-verify")
    export(capsys, run, "--out", tmp_path / "m.safetensors")
    assert {p.name for p in tmp_path.glob("m.*.card.md")} == {
        "m.onnx.card.md", "m.safetensors.card.md"
    }  # fmt: skip
    assert "safetensors" in card_path(tmp_path / "m.safetensors").read_text()
    assert load(tmp_path / "m.safetensors").threshold == 0.4321  # the model itself is intact


def test_a_checkpoint_without_its_run_gets_a_card_that_says_so(run, tmp_path, capsys):
    shutil.copy(run / "best.pt", tmp_path / "copy.pt")
    export(capsys, tmp_path / "copy.pt", "--out", tmp_path / "m.safetensors")
    text = card_path(tmp_path / "m.safetensors").read_text()
    assert "Not known" in text and "cnnlab transfer evaluate" in text
    assert "not a diagnostic device" in text and "0.812" not in text


def test_a_multiclass_card_lists_each_class_at_the_argmax(run, tmp_path, capsys):
    metrics = {k: v for k, v in METRICS.items()
               if k not in ("at_argmax", "operating_point", "positive_class")}  # fmt: skip
    (run / "metrics.json").write_text(json.dumps(metrics))
    export(capsys, run, "--out", tmp_path / "m.safetensors")
    text = card_path(tmp_path / "m.safetensors").read_text()
    assert "| a | 0.700 | 0.600 | 0.650 | 41 |" in text
    assert "| accuracy | 0.690 [0.570, 0.800] | 60 |" in text


# -- a refused export leaves no card -------------------------------------------------------------


def test_an_existing_model_refuses_the_export_and_no_card_appears(run, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"a user's own model")
    line = faults.refused_without_a_trace(
        "export", run, "--out", model, "--no-verify", watch=(tmp_path,)
    )
    assert "exists" in line and not card_path(model).exists()


def test_an_existing_card_refuses_the_export_before_the_model_is_written(run, tmp_path):
    model = tmp_path / "model.safetensors"
    card_path(model).write_text("a user's own notes")
    line = faults.refused_without_a_trace("export", run, "--out", model, watch=(tmp_path,))
    assert "model.safetensors.card.md exists" in line and not model.exists()
    assert faults.cnnlab("export", run, "--out", model, "--overwrite").returncode == 0
    assert "not a diagnostic device" in card_path(model).read_text()


def test_a_disk_full_after_the_model_leaves_neither_model_nor_card(run, tmp_path):
    model = tmp_path / "model.safetensors"
    line = faults.refused_without_a_trace(
        "export", run, "--out", model, full_disk_after=1, watch=(tmp_path,)
    )
    assert "No space left" in line and not model.exists() and not card_path(model).exists()


def test_an_onnx_file_that_differs_from_torch_leaves_no_card(run, tmp_path, capsys, monkeypatch):
    from cnnlab.transfer.inference import export as export_module

    monkeypatch.setattr(export_module, "verify_onnx", lambda *args: 1.0)
    model = tmp_path / "model.onnx"
    code, _, err = call_main(capsys, "transfer", "export", run, "--out", model)
    assert code == 2 and "differs from PyTorch" in err
    assert list(tmp_path.glob("model*")) == []
