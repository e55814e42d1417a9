"""The Fashion-MNIST page classifier gives what `cnnlab predict` gives, and turns every bad
upload into an error row in its place instead of failing the whole request."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError

pytestmark = pytest.mark.slow  # a real (tiny) training run


@pytest.fixture(scope="module")
def classifier(fmnist_run):
    from cnnlab.serve.fmnist import FmnistClassifier

    return FmnistClassifier(fmnist_run)


def garment_files(fashion_test, folder, label_ids=(1, 7, 9)):
    """A test image of each class in ``label_ids`` as a PNG, and the first as a photo-like
    dark-on-white JPEG of another size."""
    x, y = fashion_test
    paths = []
    for label in label_ids:
        path = folder / f"class{label}.png"
        Image.fromarray(x[int(np.flatnonzero(y == label)[0])]).save(path)
        paths.append(path)
    first = x[int(np.flatnonzero(y == label_ids[0])[0])]
    photo = folder / "photo.jpg"
    Image.fromarray(255 - first).resize((120, 90)).convert("RGB").save(photo)
    return paths + [photo]


@pytest.mark.parametrize("invert", ["auto", "no"])
def test_the_page_gives_what_cnnlab_predict_gives(
    classifier, fmnist_run, fashion_test, tmp_path, invert
):
    from cnnlab.fmnist.inference import predict

    paths = garment_files(fashion_test, tmp_path)
    results, overlays = classifier.classify(paths, invert)
    expected = predict(fmnist_run, paths, invert)
    assert [r.name for r in results] == [p.name for p in paths]
    for got, want in zip(results, expected, strict=True):
        assert got.error == ""
        assert got.predicted == want["predicted"]
        assert got.probability == pytest.approx(want["probability"], abs=1e-6)
        assert [name for name, _ in got.top] == [name for name, _ in want["top_k"]]
    assert overlays == []  # Grad-CAM is offered for transfer runs only


def test_bad_uploads_become_error_rows_in_place(classifier, fashion_test, tmp_path):
    good = garment_files(fashion_test, tmp_path, (1,))[0]
    text = tmp_path / "notes.txt"
    text.write_text("a shopping list, not an image")
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    results, _ = classifier.classify([text, good, truncated, empty])
    assert [r.name for r in results] == ["notes.txt", good.name, "cut.png", "empty.png"]
    assert results[1].error == "" and results[1].predicted
    for bad in (results[0], results[2], results[3]):
        assert bad.error.startswith("cannot read image ") and not bad.predicted
        assert str(tmp_path) not in bad.error  # the server's upload folder is not shown


def test_an_unknown_invert_option_is_a_user_error(classifier, fashion_test, tmp_path):
    with pytest.raises(CnnlabError, match="invert must be auto, yes or no"):
        classifier.classify(garment_files(fashion_test, tmp_path, (1,)), "maybe")


def test_a_corrupt_model_is_refused_before_the_page_is_built(tmp_path):
    from cnnlab.serve.fmnist import FmnistClassifier

    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CnnlabError, match="cannot load model"):
        FmnistClassifier(tmp_path)
