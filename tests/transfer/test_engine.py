"""The inference engine: ONNX Runtime gives torch's outputs, is exported once per model, and
torch takes over, with one line, whenever it cannot run."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cli import main
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.inference import engines as engine
from cnnlab.transfer.inference.predict import predict
from cnnlab.transfer.models import build_model, preprocessing
from cnnlab.transfer.training.features import Backbone, FeatureCache

SIZE = 32
PRE = preprocessing("resnet18", SIZE)


def _write_checkpoint(path, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("resnet18", 2, weights="none", image_size=SIZE)
    ckpt = ckpt_io.Checkpoint(
        "resnet18", ["a", "b"], SIZE, list(PRE.mean), list(PRE.std), model.state_dict()
    )
    return ckpt_io.save(ckpt, path)


def _write_images(root, per_class: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _rows(path):
    with open(path, newline="") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def _probabilities(rows):
    return np.array([[float(r["p_a"]), float(r["p_b"])] for _, r in sorted(rows.items())])


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every test starts with an empty export cache of its own (``CNNLAB_CACHE_DIR``)."""
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory holding a random-init resnet18 checkpoint (best.pt), and a folder of
    class folders a/ and b/ to predict and evaluate."""
    base = tmp_path_factory.mktemp("engine")
    _write_checkpoint(base / "run" / "best.pt")
    return base / "run", _write_images(base / "data")


@pytest.fixture
def exports(monkeypatch):
    """The paths exported in this test (the export itself still runs)."""
    done, real = [], engine.export_onnx

    def counting(model, image_size, out, *args, **kwargs):
        done.append(out)
        return real(model, image_size, out, *args, **kwargs)

    monkeypatch.setattr(engine, "export_onnx", counting)
    return done


@pytest.fixture
def broken_exporter(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the exporter cannot trace this\n(a second line of detail)")

    monkeypatch.setattr(engine, "export_onnx", fail)


def _predict_cli(run_dir, data, out, engine_name, *more):
    main(
        ["transfer", "predict", str(run_dir), str(data), "--out", str(out), "--device", "cpu"]
        + ["--engine", engine_name, *more]
    )
    return _rows(out)


# -- same outputs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_onnxruntime_features_match_torch_features_for_every_view():
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none", image_size=SIZE)
    images = np.random.default_rng(1).integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8)
    said = []
    caches = {}
    for name in ("torch", "onnxruntime"):
        backbone = Backbone(model, PRE.mean, PRE.std, "cpu", engine=name, say=said.append)
        caches[name] = FeatureCache.build(backbone, images, "basic", SIZE, max_views=2, seed=0)
        assert backbone.inference.engine == name
    assert caches["torch"].views.shape == caches["onnxruntime"].views.shape == (2, 12, 512)
    diff = (caches["torch"].views - caches["onnxruntime"].views).abs().max().item()
    scale = max(1.0, caches["torch"].views.abs().max().item())
    assert diff <= 1e-4 * scale
    assert len(said) == 1 and said[0].startswith("engine: onnxruntime (max |diff| vs torch")
    assert isinstance(model.fc, nn.Linear)  # the head is back in place


@pytest.mark.slow
def test_predict_and_evaluate_through_onnxruntime_give_torch_probabilities(run, tmp_path, capsys):
    run_dir, data = run
    eager = _predict_cli(run_dir, data, tmp_path / "torch.csv", "torch")
    assert capsys.readouterr().err == ""  # torch asked for: nothing to say
    onnx = _predict_cli(run_dir, data, tmp_path / "onnx.csv", "onnxruntime")
    assert "engine: onnxruntime (max |diff| vs torch" in capsys.readouterr().err
    assert eager.keys() == onnx.keys() and len(eager) == 12
    np.testing.assert_allclose(_probabilities(onnx), _probabilities(eager), atol=1e-5)
    assert [r["predicted"] for r in onnx.values()] == [r["predicted"] for r in eager.values()]

    metrics = {}
    for name in ("torch", "onnxruntime"):
        out = tmp_path / f"eval-{name}"
        main(
            ["transfer", "evaluate", str(run_dir), str(data), "--out", str(out)]
            + ["--device", "cpu", "--engine", name]
        )
        metrics[name] = json.loads((out / "metrics.json").read_text())
        probabilities = _probabilities(_rows(out / "predictions.csv"))
        metrics[name]["probabilities"] = probabilities
    torch_m, onnx_m = metrics["torch"], metrics["onnxruntime"]
    np.testing.assert_allclose(onnx_m["probabilities"], torch_m["probabilities"], atol=1e-5)
    assert onnx_m["confusion_matrix"] == torch_m["confusion_matrix"]
    assert onnx_m["test_loss"] == pytest.approx(torch_m["test_loss"], abs=1e-5)


# -- one export per model ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_export_is_reused_and_redone_when_the_checkpoint_changes(tmp_path, exports, own_cache):
    ckpt = _write_checkpoint(tmp_path / "model.pt", seed=1)
    data = _write_images(tmp_path / "data", per_class=2)
    said = []

    def run(engine_name):
        rows, _ = predict(ckpt, [data], engine=engine_name, say=said.append)
        return np.array([[r["p_a"], r["p_b"]] for r in rows])

    first = run("onnxruntime")
    assert len(exports) == 1 and list(own_cache.glob("*.onnx")) == exports
    np.testing.assert_array_equal(run("onnxruntime"), first)
    # a small job under auto uses an export that already exists
    np.testing.assert_array_equal(run("auto"), first)
    assert len(exports) == 1 and len(said) == 3 and all("onnxruntime" in s for s in said)

    _write_checkpoint(ckpt, seed=2)  # same file name, other weights
    said.clear()
    run("auto")  # 4 images, nothing exported for these weights: torch, silently
    assert len(exports) == 1 and said == []
    changed = run("onnxruntime")
    assert len(exports) == 2 and exports[1] != exports[0]
    assert not np.allclose(changed, first)


# -- torch when ONNX Runtime cannot run -----------------------------------------------------


def test_a_failed_export_falls_back_to_torch_with_one_note(run, tmp_path, capsys, broken_exporter):
    run_dir, data = run
    eager = _predict_cli(run_dir, data, tmp_path / "torch.csv", "torch")
    capsys.readouterr()
    fallback = _predict_cli(run_dir, data, tmp_path / "fallback.csv", "onnxruntime")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("note: ")
    assert "the exporter cannot trace this" in err[0] and err[0].endswith("using torch")
    assert fallback == eager  # the very same rows: torch computed both


def test_a_failed_export_of_the_backbone_gives_torch_features(broken_exporter):
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none", image_size=SIZE)
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    said = []
    fallback = Backbone(model, PRE.mean, PRE.std, "cpu", engine="onnxruntime", say=said.append)
    eager = Backbone(model, PRE.mean, PRE.std, "cpu", engine="torch")
    assert torch.equal(fallback.features(images), eager.features(images))
    assert fallback.inference.engine == "torch" and len(said) == 1 and "note:" in said[0]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_outputs_that_disagree_with_torch_fall_back_and_drop_the_export(monkeypatch, own_cache):
    torch.manual_seed(0)
    model, check = TinyNet().eval(), torch.randn(3, 3, 8, 8)
    real_forward = engine.OnnxNetwork.forward
    monkeypatch.setattr(engine.OnnxNetwork, "forward", lambda self, x: real_forward(self, x) + 1)
    said = []
    chosen = engine.prepare(model, "onnxruntime", torch.device("cpu"), check, 3, say=said.append)
    assert chosen.engine == "torch" and chosen.network is model
    assert len(said) == 1 and said[0].startswith("note: ONNX Runtime differs from torch by 1.0")
    assert list(own_cache.glob("*.onnx")) == []  # not reused by the next run


@pytest.mark.slow
def test_engine_torch_never_imports_onnxruntime(run, tmp_path):
    run_dir, data = run
    script = f"""
import sys
import numpy as np
from cnnlab.cli import main
from cnnlab.transfer.training.features import Backbone
from cnnlab.transfer.models import build_model
main(["transfer", "predict", {str(run_dir)!r}, {str(data)!r}, "--engine", "torch"])
main(["transfer", "evaluate", {str(run_dir)!r}, {str(data)!r}, "--engine", "torch",
      "--out", {str(tmp_path / "eval")!r}])
images = np.zeros((2, {SIZE}, {SIZE}, 3), np.uint8)
Backbone(build_model("resnet18", 2, "none"), (0.5,) * 3, (0.25,) * 3, "cpu",
         engine="torch").features(images)
print("onnxruntime" in sys.modules, file=sys.stderr)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_onnxruntime_asked_for_but_missing_is_one_line_exit_2(
    run, tmp_path, capsys, monkeypatch, command
):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails
    run_dir, data = run
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(
            ["transfer", command, str(run_dir), str(data), "--engine", "onnxruntime"]
            + ["--out", str(out if command == "evaluate" else tmp_path / "p.csv")]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine onnxruntime: onnxruntime cannot be imported" in err[0]
    assert not out.exists() and not (tmp_path / "p.csv").exists()


def test_train_refuses_a_missing_onnxruntime_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    data, out = _write_images(tmp_path / "data"), tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(
            ["transfer", "train", str(data), "--out", str(out), "--weights", "none"]
            + ["--image-size", str(SIZE), "--engine", "onnxruntime"]
        )
    assert e.value.code == 2 and "onnxruntime cannot be imported" in capsys.readouterr().err
    assert not out.exists()


def test_auto_without_onnxruntime_is_torch_without_a_word(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(engine, "AUTO_MIN_IMAGES", 1)  # a job large enough to export
    run_dir, data = run
    rows = _predict_cli(run_dir, data, tmp_path / "p.csv", "auto")
    assert len(rows) == 12 and capsys.readouterr().err == ""


@pytest.mark.slow
def test_train_head_extracts_features_with_the_engine_it_is_given(
    tmp_path, capsys, broken_exporter
):
    """The config's engine reaches the feature cache and the final evaluation: here its
    export fails, one note each, and the run completes in torch."""
    data, out = _write_images(tmp_path / "data", per_class=8), tmp_path / "run"
    main(
        ["transfer", "train", str(data), "--out", str(out), "--weights", "none"]
        + ["--image-size", str(SIZE), "--epochs", "1", "--engine", "onnxruntime"]
    )
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and all("using torch" in note for note in notes)
    assert json.loads((out / "config.json").read_text())["engine"] == "onnxruntime"
    assert (out / "metrics.json").is_file()


@pytest.mark.slow
def test_a_runs_final_evaluation_through_onnxruntime_is_what_its_checkpoint_gives(tmp_path, capsys):
    """The held-out probabilities of a calibrated ``partial`` run come from ONNX Runtime, with
    the temperature applied to its outputs; the saved checkpoint (temperature folded in) run
    in torch gives the same probabilities."""
    data, out = _write_images(tmp_path / "data", per_class=12), tmp_path / "run"
    main(
        ["transfer", "train", str(data), "--out", str(out), "--weights", "none", "--calibrate"]
        + ["--image-size", str(SIZE), "--epochs", "2", "--strategy", "partial"]
        + ["--engine", "onnxruntime", "--test-size", "0.3", "--device", "cpu"]
    )
    said = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("engine: onnxruntime") for line in said) == 1
    calibration = json.loads((out / "metrics.json").read_text())["calibration"]
    assert calibration["fitted_on"] == "val"
    held = _rows(out / "predictions_test.csv")
    torch_rows = _predict_cli(out, data, tmp_path / "p.csv", "torch")
    assert len(held) >= 6
    for path, row in held.items():
        got = [float(row["p_a"]), float(row["p_b"])]
        want = [float(torch_rows[path]["p_a"]), float(torch_rows[path]["p_b"])]
        assert np.allclose(got, want, atol=1e-4), (path, got, want)


def test_the_help_states_the_job_size_at_which_auto_exports():
    from cnnlab.configs import declarations
    from cnnlab.transfer.cli import ENGINE_HELP
    from cnnlab.transfer.config import TransferConfig

    (declared,) = [d for d in declarations(TransferConfig) if d.name == "engine"]
    for text in (ENGINE_HELP, declared.help):
        assert f"{engine.AUTO_MIN_IMAGES}+ images" in text
