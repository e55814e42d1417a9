"""End-to-end helpers for `cnnlab serve`: the real command as a subprocess, and what a user
does on its page (driven through the shared ``chromium`` fixture, tests/conftest.py).

Shared by tests/serve (Keras runs) and tests/transfer/test_serve.py (torch runs), which load
this file by path: the two frameworks are tested in separate pytest processes.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

START_SECONDS = 240  # importing a framework and loading the model on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(run_dir: Path, log: Path) -> Iterator[str]:
    """`cnnlab serve RUN_DIR --port P` running until the block ends; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "serve", str(run_dir), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"cnnlab serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"cnnlab serve did not answer on {url}:\n{log.read_text()}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def classify_on_page(driver, url: str, files: Sequence[Path]) -> list[dict[str, str]]:
    """Open the page, upload ``files`` as a user would, press Classify, read the result table.

    One dict per table row, keyed by the cell classes (file, predicted, probability, top,
    decision, error).
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    upload = "#cnnlab-upload input[type=file]"
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, upload))
    driver.find_element(By.CSS_SELECTOR, upload).send_keys("\n".join(map(str, files)))
    for f in files:  # the upload has reached the server when the file is listed
        listed = f'#cnnlab-upload td.filename[aria-label="{f.name}"]'
        WebDriverWait(driver, 60).until(lambda d, s=listed: d.find_elements(By.CSS_SELECTOR, s))
    driver.find_element(By.ID, "cnnlab-classify").click()
    rows = "#cnnlab-results tbody tr"
    WebDriverWait(driver, 180).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == len(files)
    )
    return [
        {td.get_attribute("class"): td.text for td in tr.find_elements(By.TAG_NAME, "td")}
        for tr in driver.find_elements(By.CSS_SELECTOR, rows)
    ]


def upload_refusal(driver, file: Path) -> str:
    """Upload a file the page must refuse; the text of the error message the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "#cnnlab-upload input[type=file]").send_keys(str(file))

    def message(d):
        shown = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".toast-body") if e.text]
        return " ".join(shown)

    WebDriverWait(driver, 60).until(message)
    return message(driver)
