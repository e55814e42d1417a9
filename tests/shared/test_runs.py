import json

import numpy as np
import pytest

from cnnlab.data.splits import stratified_split, stratified_subset
from cnnlab.errors import CnnlabError
from cnnlab.runs import read_json, require_run_dir, run_directory, write_csv, write_json


def test_run_directory_appears_only_when_complete(tmp_path):
    out = tmp_path / "run"
    with run_directory(out) as tmp:
        write_json(tmp / "metrics.json", {"a": np.float32(1.5)})
        assert not out.exists()
    assert json.loads((out / "metrics.json").read_text()) == {"a": 1.5}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary left behind


def test_failed_run_leaves_nothing_and_keeps_the_old_run(tmp_path):
    out = tmp_path / "run"
    with run_directory(out) as tmp:
        (tmp / "model.keras").write_text("old")
    with pytest.raises(RuntimeError), run_directory(out, overwrite=True) as tmp:
        (tmp / "model.keras").write_text("new")
        raise RuntimeError("training crashed")
    assert (out / "model.keras").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_existing_run_is_not_overwritten_without_consent(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CnnlabError, match="already holds files"), run_directory(out):
        pass
    with run_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_read_json_errors_are_one_clear_line(tmp_path):
    with pytest.raises(CnnlabError, match="not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CnnlabError, match="corrupt"):
        read_json(tmp_path / "bad.json")


def test_require_run_dir_names_missing_files(tmp_path):
    with pytest.raises(CnnlabError, match="missing model.keras"):
        require_run_dir(tmp_path, "model.keras")


def test_write_csv_takes_the_union_of_keys(tmp_path):
    write_csv(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "acc": 0.9}])
    assert (tmp_path / "h.csv").read_text().splitlines() == ["epoch,loss,acc", "1,0.5,", "2,,0.9"]


def test_stratified_split_keeps_proportions_and_is_seeded():
    labels = np.repeat([0, 1, 2], [600, 300, 100])
    keep, held = stratified_split(labels, 100, seed=3)
    assert len(held) == 100 and len(keep) == 900
    assert np.bincount(labels[held]).tolist() == [60, 30, 10]
    assert not set(keep) & set(held)
    assert np.array_equal(held, stratified_split(labels, 100, seed=3)[1])
    assert not np.array_equal(held, stratified_split(labels, 100, seed=4)[1])
    assert np.bincount(labels[stratified_subset(labels, 500, seed=0)]).tolist() == [300, 150, 50]


def test_stratified_split_rejects_impossible_requests():
    with pytest.raises(CnnlabError):
        stratified_split(np.array([0, 0, 1]), 1.5, seed=0)
    with pytest.raises(CnnlabError):
        stratified_split(np.array([0, 0, 0, 1]), 2, seed=0)  # class 1 has one member
