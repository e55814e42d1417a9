"""``cnnlab transfer shift``: the shortcut and site-shift probe (issue 24, the shift evidence)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.transfer.evaluation.shift import FEATURES, analyse, image_statistics
from cnnlab_testing import call_main


def test_statistics_of_known_images():
    black_frame = np.full((1, 100, 100), 200, dtype=np.uint8)
    black_frame[0, :10, :] = 0  # the top 10% band black: a quarter of the whole band
    grey = np.full((1, 100, 100, 3), 51, dtype=np.uint8)  # 0.2 everywhere, RGB
    centre = np.zeros((1, 100, 100), dtype=np.uint8)
    centre[0, 25:75, 25:75] = 255
    f = dict(zip(FEATURES, image_statistics(black_frame)[0], strict=True))
    band = 100 * 100 - 80 * 80
    assert f["dark_border"] == pytest.approx(100 * 10 / band)
    assert f["mean"] == pytest.approx(0.9 * 200 / 255)
    g = dict(zip(FEATURES, image_statistics(grey)[0], strict=True))
    assert (g["mean"], g["std"], g["dark_border"]) == pytest.approx((0.2, 0.0, 0.0), abs=1e-6)
    c = dict(zip(FEATURES, image_statistics(centre)[0], strict=True))
    assert c["centre_mean"] == pytest.approx(1.0)
    assert c["dark_border"] == pytest.approx(1.0)
    assert c["mean"] == pytest.approx(0.25)


def _features(rng, n, brightness, border):
    x = rng.normal(0, 1, (n, 4)) * 0.05
    x[:, 0] += brightness
    x[:, 2] += border
    return x


def test_a_brightness_shortcut_and_a_border_shift_are_found_and_their_absence_is_not():
    rng = np.random.default_rng(0)
    y_tr = np.repeat([0, 1], 150)
    y_te = np.repeat([0, 1], 80)
    # the class shows in the mean grey level; the test site's class-0 images lose their border
    x_tr = np.concatenate([_features(rng, 150, 0.4, 0.3), _features(rng, 150, 0.6, 0.3)])
    x_same = np.concatenate([_features(rng, 80, 0.4, 0.3), _features(rng, 80, 0.6, 0.3)])
    x_moved = np.concatenate([_features(rng, 80, 0.4, 0.1), _features(rng, 80, 0.6, 0.3)])
    same = analyse(["a", "b"], (x_tr, y_tr), (x_same, y_te))
    moved = analyse(["a", "b"], (x_tr, y_tr), (x_moved, y_te))
    assert same.shortcut["train_cv_auc"] > 0.95 and same.shortcut["test_auc"] > 0.95
    assert all(0.3 < row["domain_cv_auc"] < 0.7 for row in same.site)
    a, b = moved.site
    assert a["domain_cv_auc"] > 0.95 and 0.3 < b["domain_cv_auc"] < 0.7
    assert a["standardised_difference"]["dark_border"] < -2
    low, high = same.shortcut["test_auc_ci"]
    assert low <= same.shortcut["test_auc"] <= high


def test_labels_unrelated_to_the_features_give_no_shortcut():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (400, 4))
    y = rng.integers(0, 2, 400)
    report = analyse(["a", "b"], (x[:300], y[:300]), (x[300:], y[300:]))
    assert 0.35 < report.shortcut["train_cv_auc"] < 0.65
    assert 0.3 < report.shortcut["test_auc"] < 0.7


def _site(root, brighten: int, make_folders, seed=0):
    make_folders(root / "train", {"a": 20, "b": 20}, seed=seed)
    make_folders(root / "test", {"a": 10, "b": 10}, seed=seed + 1)
    for p in (root / "test" / "a").iterdir():  # the test site's class a is brighter
        px = np.asarray(Image.open(p), dtype=np.int16) + brighten
        Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(p)
    return root


def test_the_command_writes_markdown_and_json(tmp_path, capsys, make_folders):
    data = _site(tmp_path / "data", 60, make_folders)
    out, js = tmp_path / "shift.md", tmp_path / "shift.json"
    code, stdout, err = call_main(
        capsys, "transfer", "shift", data, "--image-size", 32, "--out", out, "--json", js
    )
    assert code == 0, err
    assert "Shortcut" in stdout and out.read_text() == stdout
    numbers = json.loads(js.read_text())
    assert numbers["counts"] == {"train": [20, 20], "test": [10, 10]}
    a, b = numbers["site"]
    assert a["standardised_difference"]["mean"] > 1  # the brightened class moved up
    assert abs(b["standardised_difference"]["mean"]) < 1


def test_a_separate_test_folder_and_group_regex(tmp_path, capsys, make_folders):
    data = make_folders(tmp_path / "site1", {"a": 12, "b": 12})
    other = make_folders(tmp_path / "site2", {"a": 6, "b": 6}, seed=3)
    code, stdout, err = call_main(
        capsys, "transfer", "shift", data, "--test", other, "--image-size", 32,
        "--group-regex", r"^(\d+)",
    )  # fmt: skip
    assert code == 0, err
    assert "(grouped)" in stdout and "site2" in stdout
    # one patient only: no cross-validation is possible, said as a dash, not a crash
    code, stdout, err = call_main(
        capsys, "transfer", "shift", data, "--test", other, "--image-size", 32,
        "--group-regex", r"^(0)",
    )  # fmt: skip
    assert code == 0, err
    assert "| — (grouped) |" in stdout


@pytest.mark.parametrize(
    "case, needle",
    [
        ("no test folder", "--test"),
        ("missing --test", "not found"),
        ("classes differ", "classes differ"),
        ("existing --out", "exists"),
        ("bad regex", "--group-regex"),
    ],
)
def test_bad_input_is_one_line_and_keeps_files(tmp_path, capsys, make_folders, case, needle):
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    out = tmp_path / "mine.md"
    out.write_text("keep me")
    args = ["transfer", "shift", data, "--image-size", 32]
    if case == "missing --test":
        args += ["--test", tmp_path / "absent"]
    if case == "classes differ":
        args += ["--test", make_folders(tmp_path / "other", {"a": 3, "c": 3})]
    if case == "existing --out":
        args += ["--test", data, "--out", out]
    if case == "bad regex":
        args += ["--test", data, "--group-regex", "("]
    code, _, err = call_main(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error:") and needle in lines[0], err
    assert out.read_text() == "keep me"
