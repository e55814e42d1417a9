"""--contrast: stored in the checkpoint, applied by training, evaluate and predict alike."""

import numpy as np
import pytest

from cnnlab.console import make_console
from cnnlab.errors import CnnlabError
from cnnlab.transfer import checkpoint as C
from cnnlab.transfer.config import TransferConfig
from cnnlab.transfer.data.contrast import normalize_contrast
from cnnlab.transfer.data.images import load_image
from cnnlab.transfer.inference.predict import predict, predict_proba
from cnnlab.transfer.pipeline import train

CFG = TransferConfig(
    weights="none", image_size=32, epochs=2, batch_size=8, strategy="full", val_size=0.25
)


@pytest.fixture
def clahe_run(tmp_path, make_folders):
    base = tmp_path
    data = make_folders(base / "data", {"a": 12, "b": 12}, seed=3)
    run_dir, _ = train(
        data, base / "run", CFG.replace(contrast="clahe"), console=make_console(quiet=True)
    )
    return run_dir, data


def test_the_contrast_choice_round_trips_through_the_checkpoint_into_predict(clahe_run):
    run_dir, data = clahe_run
    ckpt = C.load(run_dir)
    assert ckpt.contrast == "clahe" and ckpt.meta()["version"] == 2
    files = sorted((data / "a").glob("*.png"))[:4]
    rows, _ = predict(run_dir, files)
    model = ckpt.build_model()
    raw = np.stack([load_image(f, 32) for f in files])
    expected = predict_proba(
        model, normalize_contrast(raw, "clahe"), ckpt.mean, ckpt.std, "cpu", channels_last=False
    )
    unnormalised = predict_proba(model, raw, ckpt.mean, ckpt.std, "cpu", channels_last=False)
    assert not np.allclose(expected, unnormalised, atol=1e-4)  # the check can tell them apart
    predicted = np.array([r["probability"] for r in rows])
    assert predicted == pytest.approx(expected.max(1), abs=1e-5)
    # and the serve page, through its own image reader
    from cnnlab.serve.transfer import TransferClassifier

    results, _ = TransferClassifier(run_dir, device="cpu").classify(files)
    assert [r.probability for r in results] == pytest.approx(expected.max(1), abs=1e-5)


def test_a_run_without_contrast_writes_a_version_1_checkpoint_as_before(run_dir):
    ckpt = C.load(run_dir)
    assert ckpt.contrast == "none" and ckpt.meta()["version"] == 1
    assert ckpt.meta()["contrast"] == "none"


def test_an_unknown_contrast_in_a_checkpoint_is_refused_at_load(tmp_path, run_dir):
    ckpt = C.load(run_dir)
    ckpt.contrast = "sharpen"
    C.save(ckpt, tmp_path / "best.pt")
    with pytest.raises(CnnlabError, match="invalid contrast: 'sharpen'"):
        C.load(tmp_path / "best.pt")


def test_training_reads_its_splits_with_the_contrast(tmp_path, make_folders):
    from cnnlab.transfer.data.prepare import prepare_data

    data = make_folders(tmp_path / "data", {"a": 8, "b": 8})
    cfg = CFG.replace(contrast="equalize")
    plain = prepare_data(data, CFG).splits["train"].images
    equalized = prepare_data(data, cfg).splits["train"].images
    assert np.array_equal(equalized[0], normalize_contrast(plain[0], "equalize"))
    assert not np.array_equal(equalized[0], plain[0])
    assert equalized.take([1, 0])[1].tolist() == equalized[0].tolist()  # kept by take
