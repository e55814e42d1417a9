"""DICOM files in the transfer pipeline: ``transfer train``, ``predict``, ``evaluate`` and the
serve page read ``.dcm`` files through the one decoder (cnnlab.data.dicom), windowed by the
file's own tags; a file that cannot be used is skipped or listed with its reason, one beyond
the limits refused in one line, and a missing pydicom named in one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab_testing import CliResult
from cnnlab_testing import run_main as cnnlab  # in this process, as a child would see it
from dicom_files import dicom_bytes, ramp, write_dicom

TINY = ["--weights", "none", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]


def write_dicom_folders(root: Path, counts: dict[str, int], make_image, seed: int = 0) -> Path:
    """Class folders of .dcm files holding ``make_image``'s synthetic images (conftest.py) in
    grey, stored as a scanner might: 16-bit with a window, MONOCHROME1, or signed with a
    rescale."""
    rng = np.random.default_rng(seed)
    for label, (name, n) in enumerate(counts.items()):
        for i in range(n):
            grey = make_image(label % 2, rng).mean(-1)  # 0..255
            path = root / name / f"{i:03d}.dcm"
            if i % 3 == 0:
                window = {"WindowCenter": 500 + 128 * 16, "WindowWidth": 256 * 16}
                write_dicom(path, (grey * 16 + 500).astype(np.uint16), **window)
            elif i % 3 == 1:
                write_dicom(path, ((255 - grey) * 16).astype(np.uint16), photometric="MONOCHROME1")
            else:
                rescale = {"RescaleSlope": 0.5, "RescaleIntercept": -10}
                window = {"WindowCenter": 54, "WindowWidth": 256}  # 2 * grey - 256 -> -10..118
                write_dicom(path, (grey * 4 - 512).astype(np.int16), **rescale, **window)
    return root


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {Path(r["path"]).name: r for r in csv.DictReader(f)}


def test_a_dcm_file_becomes_the_rgb_square_of_its_window(tmp_path):
    from cnnlab.transfer.data.images import load_image

    # column x holds 10 x; window 150 +- 50: black to column 9, white from column 20
    path = write_dicom(tmp_path / "ramp.dcm", ramp(32, 32), WindowCenter=150, WindowWidth=101)
    image = load_image(path, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 0] == image[..., 2]).all()
    assert [image[5, x, 0] for x in (9, 10, 15, 20)] == [0, 1, 129, 255]


def test_the_serve_page_classifies_a_dcm_upload_and_names_why_others_fail(run_dir, tmp_path):
    from cnnlab.serve.transfer import TransferClassifier

    good = write_dicom(tmp_path / "chest.dcm", ramp(40, 40), WindowCenter=200, WindowWidth=300)
    empty = write_dicom(tmp_path / "report.dcm", ramp(40, 40), pixel_data=False)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(dicom_bytes(ramp(40, 40))[:-500])
    results, overlays = TransferClassifier(run_dir, device="cpu").classify([good, empty, broken])
    assert [r.name for r in results] == ["chest.dcm", "report.dcm", "broken.dcm"]
    assert (
        results[0].error == "" and results[0].predicted in ("a", "b") and len(overlays) == 2
    )  # the image and its Grad-CAM
    assert "DICOM file without pixel data" in results[1].error
    assert "corrupt DICOM" in results[2].error


def test_predict_lists_an_unusable_dcm_and_predicts_the_rest(run_dir, tmp_path):
    inputs = tmp_path / "in"
    write_dicom(inputs / "chest.dcm", ramp(40, 40), photometric="MONOCHROME1")
    write_dicom(inputs / "report.dcm", ramp(40, 40), pixel_data=False)
    result = cnnlab("transfer", "predict", run_dir, inputs, "--out", tmp_path / "p.csv")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "1 predicted, 1 unreadable" in result.stdout
    rows = read_csv(tmp_path / "p.csv")
    assert rows["chest.dcm"]["predicted"] in ("a", "b") and not rows["chest.dcm"]["error"]
    assert rows["report.dcm"]["error"] == "DICOM file without pixel data"


def one_line(result: CliResult | subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: "), result.stderr[-2000:]
    return lines[0]


def test_predict_refuses_a_dcm_beyond_the_limits_in_one_line_without_decoding(run_dir, tmp_path):
    image = write_dicom(tmp_path / "wide.dcm", ramp(8, 8), Rows=1, Columns=20000)
    result = cnnlab("transfer", "predict", run_dir, image, "--out", tmp_path / "p.csv")
    line = one_line(result)
    assert "wide.dcm" in line and "20000x1 px" in line and "aspect ratio" in line
    assert not (tmp_path / "p.csv").exists()


def without_pydicom(*args) -> CliResult:
    """``cnnlab ARGS`` (in this process) as if pydicom were not installed: ``import pydicom``
    raises the ModuleNotFoundError of a package never installed (tests/shared/test_extras.py
    hides whole extras from a child process the same way)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in [m for m in sys.modules if m.partition(".")[0] == "pydicom"] + ["pydicom"]:
            mp.setitem(sys.modules, name, None)
        return cnnlab(*args)


NO_PYDICOM = "cnnlab: error: reading DICOM files needs pydicom: pip install 'cnnlab[dicom]'"


def test_without_pydicom_predict_names_the_dicom_extra_in_one_line(run_dir, tmp_path):
    image = write_dicom(tmp_path / "chest.dcm", ramp(40, 40))
    result = without_pydicom("transfer", "predict", run_dir, image, "--out", tmp_path / "p.csv")
    assert one_line(result) == NO_PYDICOM
    assert not (tmp_path / "p.csv").exists()


def test_without_pydicom_train_stops_in_one_line_instead_of_skipping_every_file(tmp_path):
    for name in ("a", "b"):
        for i in range(4):
            write_dicom(tmp_path / "data" / name / f"{i}.dcm", ramp(40, 40) + i)
    data, run = tmp_path / "data", tmp_path / "run"
    result = without_pydicom("transfer", "train", data, "--out", run, *TINY)
    assert one_line(result) == NO_PYDICOM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no run, not even half


@pytest.mark.slow
def test_train_predict_and_evaluate_on_a_folder_of_dcm_files(tmp_path, make_image):
    data = write_dicom_folders(tmp_path / "data", {"a": 12, "b": 12}, make_image)
    (data / "a" / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)))
    write_dicom(data / "b" / "report.dcm", ramp(40, 40), pixel_data=False)
    run = tmp_path / "run"
    trained = cnnlab("transfer", "train", data, "--out", run, *TINY)
    assert trained.returncode == 0, trained.stderr[-3000:]
    said = trained.stdout + trained.stderr
    assert "Traceback" not in said
    assert f"skipped {data / 'a' / 'corrupt.dcm'}: corrupt DICOM file" in said
    assert f"skipped {data / 'b' / 'report.dcm'}: DICOM file without pixel data" in said
    report = json.loads((run / "data_report.json").read_text())
    assert len(report["skipped"]) == 2, report["skipped"]

    held = write_dicom_folders(tmp_path / "held", {"a": 4, "b": 4}, make_image, seed=7)
    write_dicom(held / "a" / "report.dcm", ramp(40, 40), pixel_data=False)
    predicted = cnnlab("transfer", "predict", run, held, "--out", tmp_path / "p.csv")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "8 predicted, 1 unreadable" in predicted.stdout
    rows = read_csv(tmp_path / "p.csv")
    assert {r["predicted"] for n, r in rows.items() if n != "report.dcm"} <= {"a", "b"}

    evaluated = cnnlab("transfer", "evaluate", run, held, "--out", tmp_path / "eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_images"] == 8
    assert [s["reason"] for s in metrics["skipped"]] == ["DICOM file without pixel data"]
