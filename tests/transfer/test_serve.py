"""`cnnlab serve` on a transfer run: the page gives what `cnnlab transfer predict` gives (class,
probabilities, the decision at the run's threshold, the `--cam` overlays), bad uploads become
error rows, and end to end in headless Chromium. Here, not in tests/serve: torch and
TensorFlow are tested in separate processes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab_testing import cnnlab

pytestmark = pytest.mark.slow  # uses the trained run of conftest.py


def load_e2e():
    path = Path(__file__).parents[1] / "serve" / "e2e.py"
    spec = importlib.util.spec_from_file_location("cnnlab_serve_e2e", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def classifier(trained_run):
    from cnnlab.serve.transfer import TransferClassifier

    return TransferClassifier(trained_run, device="cpu")


@pytest.fixture
def uploads(trained_run, tmp_path) -> list[Path]:
    """Two images of each class of the run's data, copied as a user would upload them."""
    data = trained_run.parent / "data"
    paths = []
    for cls in ("a", "b"):
        for name in ("000.png", "003.png"):
            path = tmp_path / f"{cls}{name}"
            path.write_bytes((data / cls / name).read_bytes())
            paths.append(path)
    return paths


def test_the_page_gives_what_transfer_predict_gives(classifier, trained_run, uploads, tmp_path):
    from cnnlab.transfer.inference.predict import predict

    results, overlays = classifier.classify(uploads)
    rows, failed = predict(trained_run, uploads, cam_dir=tmp_path / "cams", device="cpu")
    assert failed == []
    assert [r.name for r in results] == [p.name for p in uploads]
    for got, want in zip(results, rows, strict=True):
        assert got.error == ""
        assert got.predicted == want["predicted"]
        assert got.probability == pytest.approx(want["probability"], abs=1e-6)
        assert [(n, pytest.approx(p, abs=1e-6)) for n, p in got.top] == want["top_k"]
        assert got.decision.startswith(want["predicted_at_threshold"] + " (P(b) ")
    # each image as the model sees it, then its overlay: the PNG `transfer predict --cam`
    # writes, pixel for pixel
    pairs = zip(overlays[0::2], overlays[1::2], uploads, strict=True)
    for (seen, seen_caption), (overlay, caption), path in pairs:
        written = np.asarray(Image.open(tmp_path / "cams" / f"{tmp_path.name}_{path.stem}_cam.png"))
        assert np.array_equal(overlay, written)
        assert seen.shape == overlay.shape and seen_caption == f"{path.name}: as the model sees it"
        assert caption.startswith(path.name + ": Grad-CAM of ")


def test_each_result_names_its_score_kind_operating_point_and_borderline_flag(classifier, uploads):
    from cnnlab.serve.evidence import BORDERLINE_MARGIN

    results, _ = classifier.classify(uploads)
    threshold = classifier.threshold
    for r in results:
        record = r.record()
        assert record["score_kind"] == "uncalibrated model score"  # trained without --calibrate
        assert record["operating_point"] == f"validation-chosen threshold {threshold:.3f}"
        assert record["score_of"] == "b" and record["score"] == pytest.approx(dict(r.top)["b"])
        assert record["label"] == r.decision.split()[0]
        assert record["borderline"] == (abs(record["score"] - threshold) < BORDERLINE_MARGIN)
    assert "uncalibrated model scores" in classifier.describe()


def test_a_calibrated_checkpoint_is_labelled_calibrated(trained_run, tmp_path):
    """A `--calibrate` run folds its temperature into best.pt's head and records it there."""
    import shutil

    from cnnlab.serve.transfer import TransferClassifier
    from cnnlab.transfer import checkpoint as ckpt_io

    run = tmp_path / "calibrated"
    shutil.copytree(trained_run, run)
    ckpt = ckpt_io.load(run)
    ckpt.extra["temperature"] = 1.5
    ckpt_io.save(ckpt, run / "best.pt")
    classifier = TransferClassifier(run, device="cpu")
    assert classifier.score_kind == "calibrated probability"
    assert "calibrated probabilities: temperature scaling (T = 1.50)" in classifier.describe()


def test_the_decision_follows_the_run_threshold_not_the_argmax(classifier, uploads):
    threshold = classifier.threshold
    assert threshold is not None  # a binary run chooses one on validation data
    results, _ = classifier.classify(uploads)
    for r in results:
        p_b = dict(r.top)["b"]
        assert r.decision.split()[0] == ("b" if p_b >= threshold else "a")
        assert f"threshold {threshold:.3f}" in r.decision


def test_bad_uploads_become_error_rows_in_place(classifier, uploads, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    icon = tmp_path / "icon.png"
    Image.new("RGB", (4, 4)).save(icon)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    results, overlays = classifier.classify([text, uploads[0], icon, broken])
    assert [r.name for r in results] == ["notes.txt", uploads[0].name, "icon.png", "broken.jpg"]
    assert results[0].error == "not an image Pillow can read"
    assert results[1].error == "" and results[1].predicted in ("a", "b")
    assert results[2].error.startswith("too small (4x4 px")
    assert results[3].error  # corrupt or unreadable, in the decoder's words
    assert len(overlays) == 2  # only the readable image is shown, beside its Grad-CAM


def test_only_unreadable_uploads_give_rows_and_no_overlays(classifier, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    results, overlays = classifier.classify([tmp_path / "notes.txt"])
    assert [r.error for r in results] == ["not an image Pillow can read"] and overlays == []


# the gallery's images: the size the browser draws them at, and how they are fitted
DRAWN = """return Array.from(document.querySelectorAll('#cnnlab-cam img'))
  .filter(i => i.complete && i.naturalWidth > 0)
  .map(i => { const r = i.getBoundingClientRect();
              return [r.width, r.height, getComputedStyle(i).objectFit]; })"""


@pytest.mark.browser
def test_an_uploaded_image_is_classified_on_the_page_as_on_the_command_line(
    trained_run, uploads, chromium, tmp_path
):
    from gradio_client import Client, handle_file
    from selenium.webdriver.support.ui import WebDriverWait

    e2e = load_e2e()
    image = uploads[-1]
    proc = cnnlab("transfer", "predict", trained_run, image)
    assert proc.returncode == 0, proc.stderr
    # "PATH  CLASS  PROBABILITY  TOP-K" (Rich prints the tabs as spaces)
    path, predicted, probability, _ = proc.stdout.splitlines()[0].split(maxsplit=3)
    assert path == str(image)
    driver = chromium
    with e2e.served(trained_run, tmp_path / "serve.log") as url:
        rows = e2e.classify_on_page(driver, url, [image])
        WebDriverWait(driver, 60).until(lambda d: len(d.execute_script(DRAWN)) == 2)
        drawn = driver.execute_script(DRAWN)
        headline = driver.find_element("id", "cnnlab-metrics").text
        intended = driver.find_element("id", "cnnlab-intended-use").text
        api = Client(url, verbose=False).predict(
            images=[handle_file(str(image))], api_name="/classify"
        )
    print("page rows:", rows, "| drawn:", drawn)  # shown with -s: what the browser saw
    assert rows[0]["file"] == image.name
    assert rows[0]["predicted"] == predicted
    assert float(rows[0]["probability"].rstrip("%")) / 100 == pytest.approx(
        float(probability), abs=6e-4
    )
    assert rows[0]["decision"].split()[0] in ("a", "b")
    assert "not a diagnostic device" in intended.lower()
    # the image and its Grad-CAM side by side, neither above 448 px nor cropped
    assert [fit for _, _, fit in drawn] == ["contain", "contain"]
    assert all(0 < w <= 448.5 and 0 < h <= 448.5 for w, h, _ in drawn)
    # 16 test images (8 a class): every metric with its size, and the warning
    assert "Operating threshold" in headline and "95% interval" in headline
    assert "8 b images" in headline and "Test set too small" in headline
    record = api[0]["images"][0]
    assert record["file"] == image.name and record["label"] == rows[0]["decision"].split()[0]
    assert record["most_probable"] == predicted
