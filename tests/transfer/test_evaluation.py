"""Evaluation you can trust, without training: held-out splits, groups, folds, the positive
class, the decision at the threshold, temperature folded into a checkpoint."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.transfer import checkpoint as C
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.data.prepare import (
    assign_folds,
    group_ids,
    group_key,
    grouped_holdout,
    prepare_data,
)
from cnnlab.transfer.evaluation.assess import CARVED_TEST, fold_temperature, held_out
from cnnlab.transfer.inference.predict import decision, metrics_of, predict
from cnnlab.transfer.models import build_model

CFG = TransferConfig(weights="none", image_size=32)


# -- the held-out split -------------------------------------------------------------------


def test_a_test_split_is_carved_by_default(folder):
    prepared = prepare_data(folder, CFG)
    assert CFG.test_size == 0.15
    assert prepared.report["carved"] == ["test", "val"]
    assert len(prepared.splits["test"]) == 6  # 15% of 40, stratified
    assert held_out(prepared) == ("test", CARVED_TEST)


def test_a_test_folder_is_used_as_given_and_test_size_0_leaves_validation(tmp_path, make_folders):
    make_folders(tmp_path / "train", {"x": 12, "y": 12})
    make_folders(tmp_path / "test", {"x": 4, "y": 4}, seed=3)
    assert held_out(prepare_data(tmp_path, CFG)) == ("test", "test")
    flat = make_folders(tmp_path / "flat", {"x": 12, "y": 12})
    assert held_out(prepare_data(flat, CFG.replace(test_size=0.0))) == ("val", "val")


# -- the positive class -------------------------------------------------------------------


def test_positive_class_is_last_so_class_1_is_positive(folder):
    default = prepare_data(folder, CFG)
    assert default.classes == ["a", "b"] and default.report["positive_class"] == "b"
    flipped = prepare_data(folder, CFG.replace(positive="a"))
    assert flipped.classes == ["b", "a"] and flipped.report["positive_class"] == "a"
    for split in flipped.splits.values():
        for path, label in zip(split.paths, split.labels, strict=True):
            assert label == (1 if path.parent.name == "a" else 0)


def test_decision_at_the_threshold_names_class_probability_and_threshold():
    names = ["NORMAL", "PNEUMONIA"]
    assert decision(np.array([0.29, 0.71]), names, 0.43) == (
        "PNEUMONIA (P(PNEUMONIA)=0.710 >= threshold 0.430)"
    )
    assert decision(np.array([0.6, 0.4]), names, 0.43) == (
        "NORMAL (P(PNEUMONIA)=0.400 < threshold 0.430)"
    )


# -- groups -------------------------------------------------------------------------------


def test_group_key_is_the_first_group_or_the_whole_match():
    assert group_key("person12_bacteria_3.jpeg", re.compile(r"person(\d+)_")) == "12"
    assert group_key("person12_bacteria_3.jpeg", re.compile(r"person\d+")) == "person12"
    assert group_key("IM-0001-0001.jpeg", re.compile(r"person(\d+)_")) is None
    assert group_key("x.png", re.compile(r"z*")) is None  # an empty match is no group


groupings = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 5)),  # (class, images) of each group
    min_size=6,
    max_size=40,
)


def _expand(groups):
    labels = np.concatenate([[label] * size for label, size in groups])
    ids = np.concatenate([[f"g{i}"] * size for i, (_, size) in enumerate(groups)])
    return labels, ids


@settings(max_examples=60, deadline=None)
@given(groupings, st.floats(0.05, 0.5), st.integers(0, 2**32 - 1))
def test_a_grouped_holdout_never_cuts_a_group(groups, fraction, seed):
    labels, ids = _expand(groups)
    keep, held = grouped_holdout(labels, ids, fraction, seed)
    assert sorted(np.r_[keep, held].tolist()) == list(range(len(labels)))
    assert len(held) and len(keep)
    assert not set(ids[keep]) & set(ids[held])


@settings(max_examples=60, deadline=None)
@given(groupings, st.integers(2, 5), st.integers(0, 2**32 - 1))
def test_group_aware_folds_keep_each_group_in_one_fold(groups, k, seed):
    labels, ids = _expand(groups)
    try:
        folds = assign_folds(labels, ids, k, seed)
    except CnnlabError:  # too few groups or images of a class for k folds
        assert k > len(set(ids)) or np.bincount(labels).min() < k
        return
    assert set(folds.tolist()) == set(range(k))
    for g in set(ids):
        assert len(set(folds[ids == g].tolist())) == 1


def test_stratified_folds_test_every_image_once_in_class_proportion():
    labels = np.repeat([0, 1], [60, 30])
    folds = assign_folds(labels, None, 3, seed=0)
    for f in range(3):
        assert np.bincount(labels[folds == f]).tolist() == [20, 10]


def test_patients_stay_in_one_split_and_the_report_counts_groups(tmp_path, make_patients):
    ids = [p for p in range(30) for _ in range(2)]  # 30 patients, two images each
    data = make_patients(tmp_path / "d", {"a": ids[:30], "b": ids[30:]})
    prepared = prepare_data(data, CFG.replace(group_regex=r"person(\d+)_"))
    where = {}
    for name, split in prepared.splits.items():
        for g in group_ids(split.paths, re.compile(r"person(\d+)_")):
            assert where.setdefault(g, name) == name, f"{g} in {where[g]} and {name}"
    groups = prepared.report["groups"]
    assert groups["groups"] == 30 and groups["files_without_group"] == 0
    assert sum(groups["per_split"].values()) == 30 and groups["across_splits"] == 0


# -- bad evaluation options: one line, exit 2, nothing written ------------------------------


def _one_line_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("cnnlab: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--group-regex", "person(\\d+"],
            "invalid --group-regex: 'person(\\\\d+' is not a regular",
        ),
        (["--group-regex", "patient(\\d+)"], "invalid --group-regex: 'patient(\\\\d+)' matches no"),
        (["--positive", "c"], "invalid --positive: 'c' is not a class of"),
        (["--folds", "1"], "invalid --folds: must be >= 2"),
    ],
)
def test_bad_evaluation_options_are_one_line(flags, message, folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["transfer", "train", str(folder), "--out", str(out), "--weights", "none", *flags]
    assert _one_line_error(args, capsys).startswith(f"cnnlab: error: {message}")
    assert not out.exists()


def test_positive_needs_two_classes_and_folds_need_a_pool(tmp_path, capsys, make_folders):
    three = make_folders(tmp_path / "three", {"x": 6, "y": 6, "z": 6})
    args = ["transfer", "train", str(three), "--out", str(tmp_path / "r"), "--weights", "none"]
    assert "applies to two classes" in _one_line_error([*args, "--positive", "x"], capsys)
    make_folders(tmp_path / "split" / "train", {"x": 9, "y": 9})
    make_folders(tmp_path / "split" / "test", {"x": 3, "y": 3})
    args[2] = str(tmp_path / "split")
    line = _one_line_error([*args, "--folds", "3"], capsys)
    assert "has a test/ folder" in line and str(tmp_path / "split" / "train") in line
    assert not (tmp_path / "r").exists()


# -- temperature in the checkpoint --------------------------------------------------------


def test_a_temperature_folded_into_the_checkpoint_is_applied_by_predict(tmp_path, folder):
    torch.manual_seed(0)
    model = build_model("resnet18", 2, "none", 32).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc.weight"] *= 50  # confident logits, far from uniform
    ckpt = C.Checkpoint("resnet18", ["a", "b"], 32, [0.5] * 3, [0.25] * 3, state)
    C.save(ckpt, tmp_path / "plain.pt")
    before, _ = predict(tmp_path / "plain.pt", [folder / "a"], device="cpu")

    model.load_state_dict(state)
    fold_temperature(ckpt, model, 3.0)
    C.save(ckpt, tmp_path / "scaled.pt")
    assert C.load(tmp_path / "scaled.pt").extra["temperature"] == 3.0
    after, _ = predict(tmp_path / "scaled.pt", [folder / "a"], device="cpu")

    p = np.array([[r["p_a"], r["p_b"]] for r in before])
    q = np.array([[r["p_a"], r["p_b"]] for r in after])
    expected = np.exp(np.log(p) / 3) / np.exp(np.log(p) / 3).sum(1, keepdims=True)
    assert np.abs(p - q).max() > 0.05  # the temperature changed the probabilities ...
    assert q == pytest.approx(expected, abs=1e-4)  # ... exactly as softmax(logits / T)
    assert [r["predicted"] for r in before] == [r["predicted"] for r in after]


def test_naming_the_other_class_positive_swaps_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)  # 1 = "b", positive by default
    p_b = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.01, 0.99)
    proba = np.stack([1 - p_b, p_b], axis=1)
    b_positive = metrics_of(labels, proba, ["a", "b"], 0.5)["operating_point"]
    # --positive a: classes become [b, a], so labels and columns swap (splits.positive_last)
    a_positive = metrics_of(1 - labels, proba[:, ::-1], ["b", "a"], 0.5)["operating_point"]
    assert a_positive["sensitivity"] == pytest.approx(b_positive["specificity"])
    assert a_positive["specificity"] == pytest.approx(b_positive["sensitivity"])
    assert a_positive["sensitivity"] != pytest.approx(b_positive["sensitivity"])
