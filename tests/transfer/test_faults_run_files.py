"""Fault injection, issue 27 repros 10 to 12: hand-edited run files and checkpoints, a CSV
renamed best.pt, a full disk under the image cache, and the calibration and threshold
messages. Each command ends in one line, exit 2, no traceback, every file as it was."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.transfer import checkpoint as C
from cnnlab.transfer.models import build_model
from cnnlab_testing import CliResult, run_main

CLASSES = ["NORMAL", "PNEUMONIA"]


def full_cache_disk():
    """An image-cache writer whose disk fills halfway through the 4th image it writes (a real
    full disk writes part of a row, then fails)."""
    from cnnlab.transfer.data import cache_store

    append, written = cache_store.Writer.append, []

    def append_until_full(self, digest, image, wh, dh):
        if len(written) == 3:
            self.file.write(image.tobytes()[: image.size // 2])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(digest)
        return append(self, digest, image, wh, dh)

    return {"cnnlab.transfer.data.cache_store.Writer.append": append_until_full}


def cnnlab(*args, patches=None) -> CliResult:
    """``cnnlab ARGS`` in this process, as a child would see it (``run_main``)."""
    return run_main(*args, patches=patches)


def snapshot(*roots: Path) -> dict[str, bytes | None]:
    return {
        str(p): None if p.is_dir() else p.read_bytes()
        for root in roots
        for p in sorted(root.rglob("*"))
    }


def refused(*args, watch: tuple[Path, ...], fragments=(), patches=None) -> str:
    before = snapshot(*watch)
    result = cnnlab(*args, patches=patches)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0]
    assert snapshot(*watch) == before
    return lines[0]


def write_run(root: Path, name: str, classes=CLASSES, edit=None) -> Path:
    """A run directory as far as ``transfer compare`` reads it; ``edit(metrics, config,
    rows)`` changes it as a hand edit would."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    proba = np.clip(np.eye(2)[labels] * 0.4 + rng.random((40, 2)), 1e-3, None)
    proba /= proba.sum(1, keepdims=True)
    rows = [
        {
            "path": f"/data/test/{i}.png",
            **{f"p_{c}": proba[i, k] for k, c in enumerate(CLASSES)},
            "error": "",
            "true": CLASSES[labels[i]],
        }  # fmt: skip
        for i in range(40)
    ]
    metrics = {"test_accuracy": 0.7, "class_names": classes, "threshold": 0.5,
               "operating_point": {"threshold": 0.5, "sensitivity": 0.7, "specificity": 0.6},
               "ci": {"test_accuracy": [0.5, 0.8]}, "ece": 0.05}  # fmt: skip
    config: object = {"arch": "resnet18", "weights": "none", "strategy": "full"}
    if edit and (replaced := edit(metrics, config, rows)) is not None:
        config = replaced
    run = root / name
    run.mkdir(parents=True)
    with (run / "predictions_test.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps(config))
    return run


def _set(key, value):
    return lambda metrics, config, rows: metrics.__setitem__(key, value)


def _proba(value):
    return lambda metrics, config, rows: rows[3].__setitem__("p_NORMAL", value)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda metrics, config, rows: [], ["config.json", "must hold a JSON object"]),
        (_set("threshold", "0.5"), ["threshold must be a number in [0, 1]", "'0.5'"]),
        (_set("test_accuracy", "high"), ["test_accuracy must be a number", "'high'"]),
        (_set("ci", {"test_accuracy": "wide"}), ["ci.test_accuracy must be [low, high]"]),
        (_set("class_names", "NP"), ["class_names must be a list"]),
        (_proba("nan"), ["predictions_test.csv", "finite numbers in [0, 1]"]),
        (_proba("inf"), ["predictions_test.csv", "finite numbers in [0, 1]"]),
    ],
    ids=["config-list", "threshold-str", "accuracy-str", "ci-str", "classes-str", "nan", "inf"],
)
def test_compare_names_a_hand_edited_run_file_in_one_line(tmp_path, edit, fragments):
    good, edited = write_run(tmp_path, "good"), write_run(tmp_path, "edited", edit=edit)
    out = tmp_path / "comparison.md"
    refused("transfer", "compare", good, edited, "--out", out, watch=(tmp_path,),
            fragments=fragments)  # fmt: skip
    assert not out.exists()


def test_compare_says_when_only_the_order_of_the_classes_differs(tmp_path):
    good, swapped = write_run(tmp_path, "good"), write_run(tmp_path, "swapped", CLASSES[::-1])
    line = refused("transfer", "compare", good, swapped, watch=(tmp_path,))
    assert "same classes in a different order" in line and "different classes" not in line


# -- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_meta(tmp_path_factory) -> dict:
    torch.manual_seed(0)
    model = build_model("resnet18", 2, weights="none", image_size=32)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    C.save(C.Checkpoint("resnet18", ["a", "b"], 32, [0.5] * 3, [0.25] * 3, model.state_dict()),
           path)  # fmt: skip
    return torch.load(path, weights_only=True)


def _int_head(meta: dict) -> dict:
    state = dict(meta["state_dict"])
    state["fc.weight"] = state["fc.weight"].to(torch.int64)
    return {"state_dict": state}


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda m: {"threshold": True}, ["invalid threshold: True"]),
        (lambda m: {"class_names": "ab"}, ["invalid class_names: 'ab'"]),
        (lambda m: {"class_names": {"a": 0, "b": 1}}, ["invalid class_names: {"]),
        (_int_head, ["fc.weight is torch.int64, not floating point"]),
    ],
    ids=["threshold-true", "classes-str", "classes-dict", "int-head"],
)
def test_a_hand_edited_checkpoint_is_refused_in_one_line(
    tmp_path, checkpoint_meta, make_folders, change, fragments
):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({**checkpoint_meta, **change(checkpoint_meta)}, run / "best.pt")
    images = make_folders(tmp_path / "images", {"a": 1, "b": 1})
    refused("transfer", "predict", run, images, "--out", tmp_path / "p.csv",
            watch=(tmp_path,), fragments=fragments)  # fmt: skip


def test_a_csv_named_best_pt_is_called_what_it_is(tmp_path, make_folders):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_text("path,predicted,probability\n/x.png,a,0.9\n")
    images = make_folders(tmp_path / "images", {"a": 1, "b": 1})
    fragments = ["best.pt is not a checkpoint: a text file", "path,predicted"]
    line = refused("transfer", "predict", run, images, watch=(tmp_path,), fragments=fragments)
    assert "pickle" not in line


# -- the image cache on a full disk -------------------------------------------------------


@pytest.mark.slow
def test_a_full_image_cache_disk_names_the_cache_and_keeps_only_complete_entries(
    tmp_path, make_folders
):
    data = make_folders(tmp_path / "data", {"a": 6, "b": 6})
    cache = tmp_path / "cache"
    args = ["transfer", "train", data, "--out", tmp_path / "run", "--cache-dir", cache,
            "--weights", "none", "--image-size", "32", "--epochs", "1"]  # fmt: skip
    line = refused(*args, watch=(data,), patches=full_cache_disk(),
                   fragments=["disk full while writing the image cache", str(cache)])  # fmt: skip
    assert "the run" not in line and not (tmp_path / "run").exists()
    store = next(cache.rglob("index.npz")).parent
    assert not [p for p in store.iterdir() if p.name.endswith(".tmp")]
    indexed = len(np.load(store / "index.npz")["digest"])
    assert (store / "images.u8").stat().st_size == indexed * 32 * 32 * 3  # no partial row
    again = cnnlab(*args)  # the disk has room again: the cache is usable as it was left
    assert again.returncode == 0, again.stderr[-3000:]


# -- what calibration and the threshold say -----------------------------------------------


def test_a_temperature_at_the_upper_bound_says_the_network_is_uninformative():
    from cnnlab.metrics import MAX_TEMPERATURE
    from cnnlab.transfer.evaluation.report import at_bound

    upper, lower = at_bound(MAX_TEMPERATURE), at_bound(1 / MAX_TEMPERATURE)
    assert "no information" in upper and "perfectly" not in upper
    assert "perfectly" in lower and "no information" not in lower


def test_an_uninformative_network_fits_the_upper_temperature_bound():
    from cnnlab.metrics import at_temperature_bound, fit_temperature

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    proba = np.full((400, 2), 0.5)
    proba[:, 0] = rng.uniform(0.05, 0.95, 400)  # confident, and unrelated to the labels
    proba[:, 1] = 1 - proba[:, 0]
    temperature = fit_temperature(labels, proba)
    assert at_temperature_bound(temperature) and temperature > 1


def test_a_threshold_chosen_with_youdens_j_at_zero_is_said_in_one_warning():
    from cnnlab.metrics import choose_threshold
    from cnnlab.transfer.evaluation.assess import _warn_if_uninformative

    labels = np.array([0, 1, 0, 1, 0, 1])
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])  # anti-correlated: J <= 0 everywhere
    ckpt = C.Checkpoint("resnet18", ["a", "b"], 32, [0.5] * 3, [0.25] * 3, {})
    ckpt.threshold = choose_threshold(labels, score)
    said: list[str] = []
    _warn_if_uninformative(labels, score, ckpt, said.append)
    assert ckpt.threshold == 1.0 and len(said) == 1
    assert "Youden's J <= 0" in said[0] and "1.000" in said[0]
    good: list[str] = []
    ckpt.threshold = choose_threshold(labels, 1 - score)
    _warn_if_uninformative(labels, 1 - score, ckpt, good.append)
    assert good == []
