"""Ensembles whose members preprocess images differently (issue 24: EfficientNet-Lite0 at
224 px with Lite2 at 260): each member sees every image as it would alone, so the ensemble's
probabilities are the mean of the members' own, at evaluate and predict, and every output
names each member with its preprocessing. Only the classes must match."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cnnlab.transfer import checkpoint as ckpt_io
from cnnlab.transfer.data.images import load_image
from cnnlab.transfer.evaluation.evaluate import evaluate
from cnnlab.transfer.inference.predict import predict, predict_proba
from cnnlab.transfer.stored import read_scores
from cnnlab_testing import call_main


def own_proba(run, paths) -> np.ndarray:
    """A member's probabilities on ``paths``, computed as one run alone is: its own decoder
    settings, its own normalisation, torch."""
    ckpt = ckpt_io.load(run)
    images = np.stack([load_image(p, ckpt.image_size, contrast=ckpt.contrast) for p in paths])
    return predict_proba(ckpt.build_model(), images, ckpt.mean, ckpt.std, "cpu")


@pytest.fixture
def held(make_folders, tmp_path):
    return make_folders(tmp_path / "held", {"a": 4, "b": 4}, seed=3, fmt="JPEG")


def test_evaluate_averages_each_members_own_probabilities(run_dir, wide_run, held, tmp_path):
    m, out = evaluate([run_dir, wide_run], held, tmp_path / "ens", engine="torch")
    paths, labels, proba = read_scores(out / "predictions.csv", ["a", "b"])
    expected = (own_proba(run_dir, paths) + own_proba(wide_run, paths)) / 2
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert len(paths) == 8 and list(labels) == [0] * 4 + [1] * 4
    members = json.loads((out / "metrics.json").read_text())["inference"]["members"]
    assert members == m["inference"]["members"]
    assert [(x["run"], x["image_size"], x["contrast"]) for x in members] == [
        (str(run_dir), 32, "none"),
        (str(wide_run), 48, "equalize"),
    ]
    assert members[1]["mean"] == [0.485, 0.456, 0.406] and members[0]["std"] == [0.25] * 3


def test_predict_averages_each_members_own_probabilities_and_names_them(
    run_dir, wide_run, held, tmp_path, capsys
):
    files = sorted((held / "b").iterdir())
    rows, failed = predict([run_dir, wide_run], files, engine="torch", device="cpu")
    assert failed == []
    small, wide = own_proba(run_dir, files), own_proba(wide_run, files)
    assert not np.allclose(small, wide, atol=1e-3)  # two members that disagree
    got = np.asarray([[row["p_a"], row["p_b"]] for row in rows])
    np.testing.assert_allclose(got, (small + wide) / 2, atol=1e-6)
    code, _, err = call_main(
        capsys, "transfer", "predict", run_dir, *files, "--ensemble", wide_run,
        "--engine", "torch", "--device", "cpu", "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert code == 0, err
    first = f"member {run_dir}: resnet18, 32 px, contrast none, mean [0.5, 0.5, 0.5]"
    second = f"member {wide_run}: resnet18, 48 px, contrast equalize, mean [0.485, 0.456, 0.406]"
    assert first in err and second in err
    with (tmp_path / "p.csv").open() as f:
        said = [row["inference"] for row in csv.DictReader(f)]
    assert len(said) == 4 and all(first in cell and second in cell for cell in said)


def test_members_of_one_size_share_a_decode_and_keep_their_own_contrast(run_dir, held, tmp_path):
    """A third member at run_dir's size but with CLAHE: the decode at 32 px is shared, its
    contrast is its own."""
    ckpt = ckpt_io.load(run_dir)
    ckpt.contrast = "clahe"
    ckpt_io.save(ckpt, tmp_path / "clahe" / "best.pt")
    files = sorted((held / "a").iterdir())
    rows, _ = predict([run_dir, tmp_path / "clahe"], files, engine="torch", device="cpu")
    expected = (own_proba(run_dir, files) + own_proba(tmp_path / "clahe", files)) / 2
    np.testing.assert_allclose([[r["p_a"], r["p_b"]] for r in rows], expected, atol=1e-6)


def test_a_file_is_read_once_and_decoded_once_per_distinct_size(held, monkeypatch):
    from cnnlab.transfer.data import images as module

    path = sorted((held / "a").iterdir())[0]
    calls: list[object] = []
    read, decode = module.read_limited, module.decode
    monkeypatch.setattr(module, "read_limited", lambda p: calls.append("read") or read(p))
    monkeypatch.setattr(module, "decode", lambda d, s, m: calls.append(s) or decode(d, s, m))
    views = module.load_views(path, [(32, "none"), (48, "equalize"), (32, "clahe")])
    assert calls == ["read", 32, 48]
    monkeypatch.undo()
    for (size, contrast), pixels in views.items():
        np.testing.assert_array_equal(pixels, load_image(path, size, contrast=contrast))
