"""The serve page's API through ``gradio_client``, against the real Gradio app on 127.0.0.1:
named inputs and outputs, and one structured record per file. The classifier is a stand-in
(no framework loads), so this runs in seconds; tests/transfer/test_serve.py drives a real run.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.serve.evidence import UNCALIBRATED
from cnnlab.serve.page import ImageResult

pytestmark = pytest.mark.serial  # a server on a port


class StandIn:
    """A binary 'transfer' classifier answering 0.556 against a 0.533 threshold."""

    pipeline = "transfer"
    score_kind = UNCALIBRATED

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def describe(self) -> str:
        return "a stand-in classifier"

    def classify(self, paths):
        rows, gallery = [], []
        for path in map(Path, paths):
            if path.suffix != ".png":
                rows.append(ImageResult(path.name, error="not an image Pillow can read"))
                continue
            top = [("PNEUMONIA", 0.556), ("NORMAL", 0.444)]
            rows.append(
                ImageResult(
                    path.name,
                    "PNEUMONIA",
                    0.556,
                    top,
                    "PNEUMONIA (P(PNEUMONIA) 0.556 >= threshold 0.533)",
                    decided="PNEUMONIA",
                    threshold=0.533,
                    positive_class="PNEUMONIA",
                    positive_score=0.556,
                    operating_point="validation-chosen threshold 0.533",
                    score_kind=UNCALIBRATED,
                    borderline=True,
                    cam_warning="the evidence lies at the border",
                )
            )
            gallery.append((np.zeros((224, 224, 3), np.uint8), f"{path.name}: Grad-CAM"))
        return rows, gallery


class FashionStandIn(StandIn):
    pipeline = "fmnist"


@contextlib.contextmanager
def serving(classifier, e2e):
    """The real page of ``classifier`` on a free port of 127.0.0.1; yields a client of it."""
    from gradio_client import Client

    from cnnlab.serve import private_uploads
    from cnnlab.serve.app import build_app, launch

    port = e2e.free_port()
    with private_uploads():
        page = build_app(classifier)
        launch(page, "127.0.0.1", port, block=False)
        try:
            yield Client(f"http://127.0.0.1:{port}/", verbose=False)
        finally:
            page.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory, e2e):
    run = tmp_path_factory.mktemp("run")
    (run / "metrics.json").write_text(json.dumps(SMALL_RUN))
    with serving(StandIn(run), e2e) as client:
        yield client


SMALL_RUN = {  # the run of issue 26: 6 NORMAL test images, specificity 6 / 6
    "evaluated_on": "test",
    "class_names": ["NORMAL", "PNEUMONIA"],
    "test_accuracy": 0.9,
    "balanced_accuracy": 0.95,
    "ece": 0.224,
    "threshold": 0.533,
    "operating_point": {"sensitivity": 0.875, "specificity": 1.0},
    "per_class": [{"class": "NORMAL", "support": 6}, {"class": "PNEUMONIA", "support": 24}],
    "ci": {"balanced_accuracy": [1.0, 1.0]},
}


def test_the_api_has_named_inputs_and_outputs(client):
    api = client.view_api(print_info=False, return_format="dict")
    endpoint = api["named_endpoints"]["/classify"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["images"]
    assert [r["label"] for r in endpoint["returns"]] == ["predictions", "results_table", "gradcam"]
    assert list(api["named_endpoints"]) == ["/classify"]  # nothing else is exposed


def test_a_fashion_mnist_page_names_its_invert_option(tmp_path, e2e):
    with serving(FashionStandIn(tmp_path), e2e) as client:
        api = client.view_api(print_info=False, return_format="dict")
    parameters = api["named_endpoints"]["/classify"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["images", "invert"]
    assert parameters[1]["parameter_default"] == "auto"


def test_the_api_returns_a_structured_record_per_file(client, tmp_path):
    from gradio_client import handle_file

    image, text = tmp_path / "chest.png", tmp_path / "notes.txt"
    Image.new("RGB", (32, 32)).save(image)
    text.write_text("not an image")
    predictions, table, gallery = client.predict(
        images=[handle_file(str(image)), handle_file(str(text))], api_name="/classify"
    )
    first, second = predictions["images"]
    assert first["file"] == "chest.png" and first["label"] == "PNEUMONIA"
    assert first["score"] == 0.556 and first["score_of"] == "PNEUMONIA"
    assert first["score_kind"] == "uncalibrated model score"
    assert first["threshold"] == 0.533 and first["borderline"] is True
    assert first["operating_point"] == "validation-chosen threshold 0.533"
    assert first["cam_warning"] == "the evidence lies at the border" and first["error"] is None
    assert second["file"] == "notes.txt" and second["error"] == "not an image Pillow can read"
    assert second["label"] is None and second["score"] is None
    assert predictions["intended_use"].endswith("not a diagnostic device")
    specificity = next(
        m for m in predictions["headline"]["metrics"] if m["metric"] == "Specificity at threshold"
    )
    assert specificity["n"] == 6 and specificity["ci95"][0] == pytest.approx(0.61, abs=0.01)
    assert any("Only 6 NORMAL" in w for w in predictions["headline"]["warnings"])
    assert "Borderline" in table and len(gallery) == 1
