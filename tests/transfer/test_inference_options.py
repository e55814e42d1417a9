"""Opt-ins at evaluate and predict (issue 24): a threshold re-chosen on the run's stored
validation scores, ensembles, test-time augmentation and BatchNorm adaptation, each recorded
in the outputs; refusals are one line, with nothing written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.metrics import binary_metrics
from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.evaluation.evaluate import evaluate
from cnnlab.transfer.inference.adapt import batchnorm_layers, reestimate_batchnorm
from cnnlab.transfer.inference.predict import predict, predict_proba
from cnnlab.transfer.inference.scoring import views_proba
from cnnlab.transfer.stored import read_scores
from cnnlab.transfer.thresholds import choose
from cnnlab_testing import call_main

TARGET = 0.9


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    return {
        str(p): None if p.is_dir() else p.read_bytes() for root in roots for p in root.rglob("*")
    }


@pytest.fixture
def refused(capsys):
    """``refused(*args, watch=(...))``: ``cnnlab ARGS`` must end in one error line, exit 2,
    with every file under ``watch`` as it was; the line."""

    def run(*args, watch: tuple[Path, ...]) -> str:
        before = snapshot(*watch)
        code, _, err = call_main(capsys, *args)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("cnnlab: error: ") and "Traceback" not in err
        assert snapshot(*watch) == before
        return err

    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_folders):
    """Tiny runs on one folder: a and b share their split (seed 0); a chose its threshold for
    sensitivity >= 0.9. c is b validated on other images (one fewer: another split). Plus a
    held-out folder."""
    from cnnlab.console import make_console
    from cnnlab.transfer.config import TransferConfig
    from cnnlab.transfer.pipeline import train

    base = tmp_path_factory.mktemp("optins")
    data = make_folders(base / "data", {"a": 24, "b": 24}, seed=1)
    held = make_folders(base / "held", {"a": 8, "b": 8}, seed=2)
    tiny = {"weights": "none", "image_size": 32, "epochs": 1, "strategy": "full", "batch_size": 8}
    settings = {"a": {"threshold_policy": f"sensitivity={TARGET}"}, "b": {"lr": 1e-2}}
    out = {"held": held}
    for name, extra in settings.items():
        cfg = TransferConfig(**tiny, **extra)
        out[name], _ = train(data, base / name, cfg, console=make_console(quiet=True))
    out["c"] = Path(shutil.copytree(out["b"], base / "c"))
    lines = (out["c"] / "predictions_val.csv").read_text().splitlines(keepends=True)
    (out["c"] / "predictions_val.csv").write_text("".join(lines[:1] + lines[2:]))
    return out


def _proba(path, classes=("a", "b")):
    return read_scores(path, list(classes))


@pytest.mark.slow
def test_a_target_policy_threshold_meets_its_target_on_the_stored_validation_scores(runs):
    metrics = json.loads((runs["a"] / "metrics.json").read_text())
    _, labels, proba = _proba(runs["a"] / "predictions_val.csv")
    assert metrics["threshold_policy"] == f"sensitivity={TARGET}"
    assert metrics["operating_point"]["policy"] == f"sensitivity={TARGET}"
    assert metrics["threshold"] == choose(f"sensitivity={TARGET}", labels, proba[:, 1])
    assert binary_metrics(labels, proba[:, 1], metrics["threshold"])["sensitivity"] >= TARGET
    assert ckpt_io.load(runs["a"]).extra["threshold_policy"] == f"sensitivity={TARGET}"


@pytest.mark.slow
def test_evaluate_rechooses_the_threshold_on_validation_never_on_the_evaluated_images(
    runs, tmp_path
):
    m, _ = evaluate(
        runs["a"], runs["held"], tmp_path / "e", engine="torch", threshold_policy="specificity=0.9"
    )
    _, labels, proba = _proba(runs["a"] / "predictions_val.csv")
    assert m["threshold"] == choose("specificity=0.9", labels, proba[:, 1])
    assert m["threshold_policy"] == m["operating_point"]["policy"] == "specificity=0.9"
    assert m["operating_point"]["threshold"] == m["threshold"]
    plain, _ = evaluate(runs["a"], runs["held"], tmp_path / "p", engine="torch")
    assert plain["threshold"] == ckpt_io.load(runs["a"]).threshold  # the run's own
    ckpt = ckpt_io.load(runs["a"])
    member = {"run": str(runs["a"]), "arch": "resnet18", "image_size": 32, "contrast": "none"}
    member |= {"mean": pytest.approx(ckpt.mean), "std": pytest.approx(ckpt.std)}
    assert plain["inference"] == {
        "runs": [str(runs["a"])], "members": [member],
        "ensemble": None, "tta": None, "adapted": None, "notes": [],
    }  # fmt: skip


@pytest.mark.slow
def test_an_ensemble_averages_its_members_probabilities(runs, tmp_path):
    single = {}
    for name in ("a", "b"):
        evaluate(runs[name], runs["held"], tmp_path / name, engine="torch")
        single[name] = _proba(tmp_path / name / "predictions.csv")
    m, _ = evaluate([runs["a"], runs["b"]], runs["held"], tmp_path / "ab", engine="torch")
    paths, labels, proba = _proba(tmp_path / "ab" / "predictions.csv")
    assert paths == single["a"][0] == single["b"][0]
    np.testing.assert_allclose(proba, (single["a"][2] + single["b"][2]) / 2, atol=1e-6)
    assert m["inference"]["ensemble"] == "mean of the softmax of 2 runs"
    # a and b share their validation split: the ensemble's threshold is chosen there
    _, val_labels, val_a = _proba(runs["a"] / "predictions_val.csv")
    _, _, val_b = _proba(runs["b"] / "predictions_val.csv")
    youden = choose("youden", val_labels, (val_a[:, 1] + val_b[:, 1]) / 2)  # policies differ
    assert m["threshold"] == pytest.approx(youden) and m["threshold_policy"] == "youden"


@pytest.mark.slow
def test_an_ensemble_validated_on_different_splits_decides_at_the_argmax_and_says_so(
    runs, tmp_path
):
    m, _ = evaluate([runs["a"], runs["c"]], runs["held"], tmp_path / "ac", engine="torch")
    assert m["threshold"] is None and m["threshold_policy"] == "argmax"
    assert "operating_point" not in m  # only the argmax: no table can mix points
    assert any("decides at the argmax" in note for note in m["inference"]["notes"])
    rows, _ = predict([runs["a"], runs["c"]], [runs["held"] / "a"], engine="torch")
    assert "decision" not in rows[0] and "decides at the argmax" in rows[0]["inference"]


def test_tta_averages_the_image_and_its_horizontal_flip(run_dir):
    ckpt = ckpt_io.load(run_dir)
    model = ckpt.build_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    plain = predict_proba(model, images, ckpt.mean, ckpt.std, "cpu", channels_last=False)
    flipped = predict_proba(
        model, images[:, :, ::-1].copy(), ckpt.mean, ckpt.std, "cpu", channels_last=False
    )
    tta = views_proba(model, images, ckpt.mean, ckpt.std, "cpu", tta=True)
    np.testing.assert_allclose(tta, (plain + flipped) / 2, atol=1e-6)
    assert not np.allclose(tta, plain, atol=1e-4)


@pytest.mark.slow
def test_tta_is_recorded_in_every_output(runs, tmp_path):
    m, _ = evaluate(runs["a"], runs["held"], tmp_path / "t", engine="torch", tta=True)
    assert m["inference"]["tta"] == "mean of the softmax of the image and of its horizontal flip"
    rows, _ = predict(runs["a"], [runs["held"] / "b"], tmp_path / "p.csv", tta=True)
    assert all("tta" in row["inference"] for row in rows)


def test_bn_adaptation_replaces_the_running_statistics_by_the_new_images(run_dir):
    ckpt = ckpt_io.load(run_dir)
    model = ckpt.build_model()
    before = [layer.running_mean.clone() for layer in batchnorm_layers(model)]
    rng = np.random.default_rng(0)
    images = rng.integers(150, 256, (33, 32, 32, 3), dtype=np.uint8)  # 33: a last batch of 1
    seen = []
    hook = model.conv1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    reestimate_batchnorm(model, images, ckpt.mean, ckpt.std, "cpu")
    hook.remove()
    assert not model.training
    after = [layer.running_mean for layer in batchnorm_layers(model)]
    assert all(not torch.allclose(b, a) for b, a in zip(before, after, strict=True))
    # bn1 follows conv1: its running mean is now the channel mean over all 33 new images
    expected = torch.cat(seen).mean(dim=(0, 2, 3))
    torch.testing.assert_close(model.bn1.running_mean, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_bn_adaptation_reads_no_labels_and_is_said_in_every_output(runs, tmp_path):
    site = tmp_path / "site"  # no class folders: loose files and a folder named like nothing
    (site / "batch 7").mkdir(parents=True)
    for i, path in enumerate(sorted((runs["held"] / "a").iterdir())[:6]):
        shutil.copy(path, (site if i % 2 else site / "batch 7") / f"scan{i}.png")
    model_bytes = (runs["a"] / "best.pt").read_bytes()
    m, out = evaluate(runs["a"], runs["held"], tmp_path / "e", engine="torch", adapt_bn=site)
    said = f"adapted: BN re-estimated on 6 unlabelled images from {site}"
    assert m["inference"]["adapted"] == said
    assert json.loads((out / "metrics.json").read_text())["inference"]["adapted"] == said
    plain, _ = evaluate(runs["a"], runs["held"], tmp_path / "p", engine="torch")
    assert not np.isclose(m["test_loss"], plain["test_loss"])
    rows, _ = predict(runs["a"], [runs["held"] / "a"], tmp_path / "p.csv", adapt_bn=site)
    with (tmp_path / "p.csv").open() as f:
        assert all(said in row["inference"] for row in csv.DictReader(f))
    assert (runs["a"] / "best.pt").read_bytes() == model_bytes  # best.pt never changes


def _odd_member(run_dir, tmp_path, **change):
    ckpt = ckpt_io.load(run_dir)
    for key, value in change.items():
        setattr(ckpt, key, value)
    ckpt_io.save(ckpt, tmp_path / "odd" / "best.pt")
    return tmp_path / "odd"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"class_names": ["b", "a"]}, "different classes"),
        ({"class_names": ["a", "c"]}, "different classes"),
    ],
)
def test_an_ensemble_of_mismatched_runs_is_one_line_and_writes_nothing(
    run_dir, make_folders, tmp_path, change, says, refused
):
    odd = _odd_member(run_dir, tmp_path, **change)
    held = make_folders(tmp_path / "held", {"a": 3, "b": 3})
    out = tmp_path / "ens"
    watch = (tmp_path, run_dir)
    line = refused("transfer", "evaluate", run_dir, odd, held, "--out", out, watch=watch)
    assert says in line
    line = refused("transfer", "predict", run_dir, held, "--ensemble", odd, watch=watch)
    assert says in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--threshold-policy", "sensitivity=1.2"], "invalid --threshold-policy"),
        (["--threshold-policy", "precision=0.9"], "invalid --threshold-policy"),
        (["--adapt-bn", "{held}", "--engine", "onnxruntime", "--device", "cpu"], "torch"),
        (["--adapt-bn", "{missing}"], "not a folder"),
    ],
)
def test_bad_opt_ins_at_evaluate_are_one_line_and_write_nothing(
    run_dir, make_folders, tmp_path, args, says, refused
):
    held = make_folders(tmp_path / "held", {"a": 3, "b": 3})
    filled = [a.format(held=held, missing=tmp_path / "none") for a in args]
    line = refused(
        "transfer", "evaluate", run_dir, held, "--out", tmp_path / "e", *filled,
        watch=(tmp_path, run_dir),
    )  # fmt: skip
    assert says in line


def test_rechoosing_needs_stored_validation_scores(run_dir, make_folders, tmp_path, refused):
    held = make_folders(tmp_path / "held", {"a": 3, "b": 3})
    line = refused(
        "transfer", "evaluate", run_dir, held, "--out", tmp_path / "e",
        "--threshold-policy", "youden", watch=(tmp_path, run_dir),
    )  # fmt: skip
    assert "no stored validation scores" in line


def test_an_unknown_policy_at_train_is_one_line_and_writes_nothing(tmp_path, make_folders, refused):
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    line = refused(
        "transfer", "train", data, "--out", tmp_path / "run", "--weights", "none",
        "--threshold-policy", "specificity=0", watch=(tmp_path,),
    )  # fmt: skip
    assert "invalid --threshold-policy" in line


@pytest.mark.slow
def test_compare_adds_the_ensemble_at_its_own_named_operating_points(runs):
    from cnnlab.transfer.evaluation.compare import compare

    _, val_labels, val_a = _proba(runs["a"] / "predictions_val.csv")
    _, _, val_b = _proba(runs["b"] / "predictions_val.csv")
    youden = choose("youden", val_labels, (val_a[:, 1] + val_b[:, 1]) / 2)
    text = compare([runs["a"], runs["b"]], ensemble=True)
    chosen = text.split("### Operating point: validation-chosen threshold")[1].split("###")[0]
    assert f"| ensemble(a+b) | {youden:.3f} |" in chosen
    text = compare([runs["a"], runs["c"]], ensemble=True)
    assert (
        "ensemble(a+c): the mean of the runs' probabilities; ensemble decides at the argmax" in text
    )


def test_the_serve_page_with_tta_gives_what_predict_tta_gives(run_dir, make_folders, tmp_path):
    from cnnlab.serve.transfer import TransferClassifier

    files = sorted((make_folders(tmp_path / "up", {"a": 2, "b": 2}) / "b").iterdir())
    page = TransferClassifier(run_dir, device="cpu", tta=True)
    results, _ = page.classify(files)
    rows, _ = predict(run_dir, files, device="cpu", engine="torch", tta=True)
    plain, _ = predict(run_dir, files, device="cpu", engine="torch")
    for got, want, untouched in zip(results, rows, plain, strict=True):
        assert got.probability == pytest.approx(want["probability"], abs=1e-6)
        assert got.predicted == want["predicted"]
        assert want["p_a"] != pytest.approx(untouched["p_a"], abs=1e-6)
    assert "horizontal flip" in page.describe()
