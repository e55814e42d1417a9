"""`cnnlab serve` end to end: the real command, a real upload in headless Chromium, and the
class read from the page equals what `cnnlab predict` prints for the same file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from cnnlab_testing import cnnlab


def cli_predict(run_dir, image) -> tuple[str, str]:
    """(class, probability text) from `cnnlab predict RUN IMAGE`: "PATH: Trouser (91.2%; ...)"."""
    proc = cnnlab("predict", run_dir, image)
    assert proc.returncode == 0, proc.stderr
    match = re.fullmatch(
        rf"{re.escape(str(image))}: (.+) \((\d+\.\d%); then .+\)", proc.stdout.strip()
    )
    assert match, proc.stdout
    return match.group(1), match.group(2)


@pytest.mark.slow
@pytest.mark.browser
def test_an_uploaded_garment_is_classified_on_the_page_as_on_the_command_line(
    fmnist_run, fashion_test, e2e, chromium, tmp_path
):
    x, y = fashion_test
    image = tmp_path / "ankle_boot.png"
    Image.fromarray(x[int(np.flatnonzero(y == 9)[0])]).save(image)
    junk = tmp_path / "notes.png"
    junk.write_text("a text file with an image's name")
    expected = cli_predict(fmnist_run, image)
    oversized = tmp_path / "scan.png"
    oversized.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 2**20))  # over the 20 MiB limit
    driver = chromium
    with e2e.served(fmnist_run, tmp_path / "serve.log") as url:
        rows = e2e.classify_on_page(driver, url, [image, junk])
        headline = driver.find_element("id", "cnnlab-metrics").text
        refused = e2e.upload_refusal(driver, oversized)
        again = e2e.classify_on_page(driver, url, [image])  # the server is still serving
    print("page rows:", rows, "| refused upload:", refused)  # with -s: what the browser saw
    assert rows[0]["file"] == "ankle_boot.png"
    assert (rows[0]["predicted"], rows[0]["probability"]) == expected
    assert rows[1]["file"] == "notes.png" and "cannot read image" in rows[1]["error"]
    assert "Accuracy" in headline and "Macro F1" in headline
    assert "exceed the maximum allowed size" in refused and "scan.png" in refused
    assert again == rows[:1]
