import csv

import numpy as np
import pytest

from cnnlab.data.splits import stratified_split, stratified_subset
from cnnlab.errors import CnnlabError
from cnnlab.files import read_json, write_csv
from cnnlab.runs import require_run_dir


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


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


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1+cmd", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_text_that_a_spreadsheet_would_run_gets_a_leading_quote(tmp_path, text):
    write_csv(tmp_path / "p.csv", [{"class": text, text: 0.25}])  # a class name as a column too
    assert read_csv(tmp_path / "p.csv") == [{"class": f"'{text}", f"'{text}": "0.25"}]


def test_csv_numbers_stay_numbers(tmp_path):
    write_csv(
        tmp_path / "n.csv",
        [{"a": -0.5, "b": "-0.5", "c": "-1e-3", "d": "+2", "e": -3, "f": "-", "g": "T-shirt/top"}],
    )
    assert read_csv(tmp_path / "n.csv") == [
        {
            "a": "-0.5",
            "b": "-0.5",
            "c": "-1e-3",
            "d": "+2",
            "e": "-3",
            "f": "'-",
            "g": "T-shirt/top",
        }
    ]


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


ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: something else
"""


def test_the_cpu_is_named_with_its_family_model_and_widest_vector_unit():
    from cnnlab.machine import cpu_description

    assert cpu_description(ZEN4) == "AMD EPYC (family 25 model 17, AVX-512, BF16)"
    zen1 = ZEN4.replace("25", "23").replace("17", "1").replace(" avx512f avx512_bf16", "")
    assert cpu_description(zen1.replace("AMD EPYC", "AMD EPYC 7551")) == (
        "AMD EPYC 7551 (family 23 model 1, AVX2)"
    )
    assert cpu_description("model name\t: Some ARM core\n") == "Some ARM core"
    assert cpu_description("") != ""  # the platform's name, or "unknown"
