"""predict, Grad-CAM, evaluate and export on a trained run; real data on a small subset."""

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.transfer.inference.predict import grad_cam


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class TinyNet(nn.Module):
    """conv (brightness detector) -> global average pool -> linear: class 1 = brightness."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        nn.init.constant_(self.conv.weight, 1.0)
        nn.init.constant_(self.conv.bias, 0.0)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_grad_cam_points_at_the_evidence():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 2:10, 20:30] = 255  # a bright patch, top right
    net = TinyNet()
    cam = grad_cam(net, net.conv, img, (0.0,) * 3, (1.0,) * 3, target=[1])[0]
    assert cam.shape == (32, 32) and cam.max() == pytest.approx(1.0)
    assert cam[2:10, 20:30].mean() > 0.9 and cam[20:, :10].mean() < 0.05


@pytest.mark.slow
def test_predict_lists_unreadable_files_and_writes_cams(trained_run, tmp_path, capsys):
    data = trained_run.parent / "data"
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("000.png", "001.png"):
        (inputs / f"a{name}").write_bytes((data / "a" / name).read_bytes())
        (inputs / f"b{name}").write_bytes((data / "b" / name).read_bytes())
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out, cams = tmp_path / "preds.csv", tmp_path / "cams"
    main(
        [
            "transfer",
            "predict",
            str(trained_run),
            str(inputs),
            "--out",
            str(out),
            "--cam",
            str(cams),
        ]
    )
    rows = {r["path"].rsplit("/", 1)[1]: r for r in _read_csv(out)}
    assert len(rows) == 5 and "corrupt" in rows["broken.jpg"]["error"]
    for name in ("a000.png", "a001.png", "b000.png", "b001.png"):
        r = rows[name]
        assert float(r["p_a"]) + float(r["p_b"]) == pytest.approx(1.0, abs=1e-5)
        assert r["predicted"] in ("a", "b") and r["top_k"].startswith(r["predicted"])
    assert sorted(p.name for p in cams.iterdir()) == [
        "in_a000_cam.png",
        "in_a001_cam.png",
        "in_b000_cam.png",
        "in_b001_cam.png",
    ]
    assert "4 predicted, 1 unreadable" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_test_metrics(trained_run, tmp_path):
    test_rows = [r for r in _read_csv(trained_run / "splits.csv") if r["split"] == "test"]
    held = tmp_path / "held"
    for r in test_rows:
        (held / r["class"]).mkdir(parents=True, exist_ok=True)
        src = trained_run.parent / "data" / r["class"] / r["path"].rsplit("/", 1)[1]
        (held / r["class"] / src.name).write_bytes(src.read_bytes())
    main(["transfer", "evaluate", str(trained_run), str(held)])
    got = json.loads((trained_run / "evaluations" / "held" / "metrics.json").read_text())
    run = json.loads((trained_run / "metrics.json").read_text())
    assert got["n_images"] == 16
    assert got["confusion_matrix"] == run["confusion_matrix"]
    assert got["test_accuracy"] == pytest.approx(run["test_accuracy"])
    assert got["test_loss"] == pytest.approx(run["test_loss"], rel=1e-4)


@pytest.mark.slow
def test_onnx_export_matches_pytorch_in_onnxruntime(trained_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from cnnlab.transfer import checkpoint as C

    out = tmp_path / "model.onnx"
    main(["transfer", "export", str(trained_run), "--out", str(out), "--no-verify"])
    ckpt = C.load(trained_run)
    x = np.random.default_rng(0).normal(size=(5, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = ckpt.build_model()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert got.shape == (5, 2) and np.abs(got - expected).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["a", "b"]


@pytest.mark.slow
def test_real_chest_xrays_pretrained_offline_backbone_beats_chance(chest, tmp_path):
    """EfficientNet-Lite0 (ImageNet, offline) `head` on 160 real X-rays at 64 px."""
    from cnnlab.console import make_console
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.pipeline import train

    cfg = TransferConfig(
        arch="efficientnet_lite0", image_size=64, limit=160, epochs=8, lr=3e-3, balance="weights"
    )
    run_dir, m = train(chest, tmp_path / "run", cfg, console=make_console(quiet=True))
    assert m["evaluated_on"] == "test" and m["n_test"] == 160
    assert m["roc_auc"] > 0.75  # random features give ~0.5
    assert {"sensitivity", "specificity"} <= set(m["operating_point"])
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["duplicates_across_splits"] == 0  # DATA.md: none across train/test
