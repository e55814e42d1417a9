"""Whole runs of ``transfer train``: the run directory, the strategies end to end, the CLI."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from cnnlab.cli import main
from cnnlab.console import make_console
from cnnlab.transfer import checkpoint as C
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.models import build_model
from cnnlab.transfer.pipeline import train
from cnnlab_testing import cli_error_line

CFG = TransferConfig(weights="none", image_size=32)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_train_writes_a_complete_run(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {
        "config.json",
        "metrics.json",
        "history.csv",
        "splits.csv",
        "best.pt",
        "last.pt",
        "report.html",
        "learning_curves.png",
        "confusion_matrix.png",
        "roc.png",
        "data_report.json",
        "predictions_test.csv",
    } <= names
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in (
        "test_accuracy",
        "test_loss",
        "balanced_accuracy",
        "macro_f1",
        "per_class",
        "confusion_matrix",
        "ece",
        "roc_auc",
        "train_seconds",
        "images_per_second",
        "epochs_run",
        "operating_point",
        "head_dropout",
        "peak_rss_mb",
    ):
        assert key in m, key
    assert m["head_dropout"] == 0.0 and m["peak_rss_mb"] > 50  # resnet18: no dropout; torch
    assert m["evaluated_on"] == "test split carved from train"
    assert sum(map(sum, m["confusion_matrix"])) == 16
    history = _read_csv(trained_run / "history.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4]
    best = min(float(r["val_loss"]) for r in history)  # --monitor loss, the default
    assert float(history[m["best_epoch"] - 1]["val_loss"]) == best
    splits = _read_csv(trained_run / "splits.csv")
    assert len({r["path"] for r in splits}) == len(splits) == 80
    assert sum(r["split"] == "test" for r in splits) == 16
    raw = torch.load(trained_run / "best.pt", weights_only=True)
    assert raw["class_names"] == ["a", "b"] and raw["extra"]["epoch"] == m["best_epoch"]
    html = (trained_run / "report.html").read_text()
    assert "data:image/png;base64" in html and "Grad-CAM" in html


@pytest.mark.slow
def test_model_learns_the_synthetic_task(trained_run):
    # blob left vs right: any working training loop separates it within four epochs
    m = json.loads((trained_run / "metrics.json").read_text())
    assert m["roc_auc"] > 0.8


@pytest.mark.slow
def test_head_strategy_with_a_weights_file_keeps_that_backbone(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"x": 12, "y": 12})
    torch.manual_seed(5)
    source = build_model("resnet18", 1000, weights="none").state_dict()
    torch.save(source, tmp_path / "site-weights.pth")
    cfg = CFG.replace(weights=str(tmp_path / "site-weights.pth"), epochs=2, val_size=0.25)
    run_dir, m = train(data, tmp_path / "run", cfg, console=make_console(quiet=True))
    state = C.load(run_dir).state_dict
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(state[key], source[key]), key  # frozen, BatchNorm stats too
    assert m["feature_cache"] is True and m["evaluated_on"] == "test split carved from train"


@pytest.mark.slow
def test_gradual_strong_mixup_cutmix_and_early_stopping_run(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", {"x": 12, "y": 12})
    cfg = CFG.replace(
        strategy="gradual",
        augment="strong",
        mixup=0.2,
        cutmix=1.0,
        balance="weights",
        schedule="cosine",
        label_smoothing=0.1,
        epochs=4,
        early_stopping=1,
        monitor="loss",
        batch_size=8,
        val_size=0.25,
    )
    run_dir, m = train(data, tmp_path / "run", cfg, console=make_console(quiet=True))
    history = _read_csv(run_dir / "history.csv")
    assert [int(r["stages_trained"]) for r in history] == list(range(len(history)))
    assert m["epochs_run"] == len(history) and m["feature_cache"] is False
    if len(history) < 4:  # stopped early: the last epoch did not improve val loss
        losses = [float(r["val_loss"]) for r in history]
        assert losses[-1] >= min(losses[:-1])


def _cli_error(args, capsys):
    return cli_error_line(capsys, *args)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"train/x": 3, "train/y": 3, "val/x": 2, "val/z": 2}, "classes differ"),
        ({"only": 4}, "single class"),
        ({"x": 4, "y": 0}, "holds no files"),
    ],
)
def test_bad_layouts_fail_with_one_line_and_write_nothing(
    tmp_path, capsys, make_folders, layout, message
):
    for sub, n in layout.items():
        (tmp_path / "data" / sub).mkdir(parents=True)
        if n:
            make_folders(
                tmp_path / "data" / sub.rsplit("/", 1)[0] if "/" in sub else tmp_path / "data",
                {sub.rsplit("/", 1)[-1]: n},
            )
    out = tmp_path / "run"
    line = _cli_error(
        [
            "transfer",
            "train",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--weights",
            "none",
            "--image-size",
            "32",
        ],
        capsys,
    )
    assert message in line
    assert not out.exists()


def test_unknown_flag_and_bad_values_are_one_line_errors(tmp_path, capsys, folder):
    assert "No such option" in _cli_error(
        ["transfer", "train", str(folder), "--out", str(tmp_path / "r"), "--bogus"], capsys
    )
    line = _cli_error(
        [
            "transfer",
            "train",
            str(folder),
            "--out",
            str(tmp_path / "r"),
            "--strategy",
            "everything",
        ],
        capsys,
    )
    assert "invalid --strategy" in line


def test_cli_help_does_not_import_torch():
    code = "import sys, cnnlab.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_max_pixels_lists_and_skips_oversized_training_images(tmp_path, folder):
    from PIL import Image

    Image.new("L", (100, 100), 128).save(folder / "a" / "big.png")  # 10,000 px
    out = tmp_path / "run"
    args = ["transfer", "train", str(folder), "--out", str(out), "--weights", "none"]
    main([*args, "--image-size", "32", "--epochs", "1", "--max-pixels", "5000", "--quiet"])
    report = json.loads((out / "data_report.json").read_text())
    assert [row["path"].rsplit("/", 1)[1] for row in report["skipped"]] == ["big.png"]
    assert "above the limit of 5,000" in report["skipped"][0]["reason"]
    assert json.loads((out / "config.json").read_text())["max_pixels"] == 5000


@pytest.mark.parametrize(("value", "why"), [("10", ">= 64"), ("100000000000", "Pillow")])
def test_a_max_pixels_out_of_range_is_one_line_and_writes_nothing(
    tmp_path, capsys, folder, value, why
):
    out = tmp_path / "run"
    args = ["transfer", "train", str(folder), "--out", str(out), "--max-pixels", value]
    line = _cli_error([*args, "--weights", "none", "--image-size", "32"], capsys)
    assert "invalid --max-pixels" in line and why in line
    assert not out.exists()
