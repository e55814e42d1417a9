"""`cnnlab serve` keeps uploads private and answers only its own origin (issue 27, repros 4
and 7): uploads live in a private folder (0700, files 0600) that SIGTERM and Ctrl-C remove,
and a request naming another host or origin is refused. Loopback only."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest

from cnnlab_testing import as_a_background_job

pytestmark = pytest.mark.slow  # a real (tiny) training run, and the server's start-up

START_SECONDS = 240  # importing TensorFlow and loading the model on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(run_dir, tmp_path, background: bool = False):
    """`cnnlab serve` with its temporary files under ``tmp_path/tmp``: (proc, url, tmp);
    ``background``: started as a shell starts `cmd &` without job control, SIGINT ignored."""
    port, tmp = _free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp_path / "shared-gradio"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", str(run_dir), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        preexec_fn=as_a_background_job if background else None,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(url + "/", timeout=5).status_code == 200:
                return proc, url, tmp
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "cnnlab serve did not answer"
        time.sleep(1)  # no event to wait on: a server in another process


def _upload(url: str, content: bytes) -> list[str]:
    r = httpx.post(url + "/gradio_api/upload", files={"files": ("xray.png", content)}, timeout=30)
    r.raise_for_status()
    return r.json()


@pytest.mark.parametrize(
    ("stop", "background"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-background-job"],
)
def test_uploads_are_private_and_removed_when_the_server_stops(
    fmnist_run, tmp_path, stop, background
):
    proc, url, tmp = _serve(fmnist_run, tmp_path, background)
    try:
        (uploaded,) = _upload(url, b"pretend patient image")
        folder = next(tmp.glob("cnnlab-serve-*"))
        assert uploaded.startswith(str(folder))  # not Gradio's shared folder
        assert not (tmp_path / "shared-gradio").exists()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(os.stat(uploaded).st_mode) == 0o600
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=60)
        proc.stdout.close()
    assert not os.path.exists(uploaded)
    assert list(tmp.iterdir()) == []  # the private folder is gone with everything in it


def test_a_foreign_host_or_origin_is_refused(fmnist_run, tmp_path):
    proc, url, _ = _serve(fmnist_run, tmp_path)
    port = url.rsplit(":", 1)[1]
    try:
        own = httpx.get(url + "/", headers={"Host": f"localhost:{port}"}, timeout=30)
        assert own.status_code == 200
        rebound = httpx.get(url + "/", headers={"Host": f"attacker.example:{port}"}, timeout=30)
        assert rebound.status_code == 403
        upload = httpx.post(
            url + "/gradio_api/upload",
            files={"files": ("x.png", b"x")},
            headers={"Origin": "http://attacker.example"},
            timeout=30,
        )
        assert upload.status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proc.stdout.close()
