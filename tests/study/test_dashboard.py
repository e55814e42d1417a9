"""``cnnlab study dashboard``: optuna-dashboard on 127.0.0.1, refused in one line when the
storage is missing or the port is taken. Loopback only, every wait bounded."""

import contextlib
import http.client
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnlab.origin import allowed_hosts, refusal
from cnnlab.study import load_spec
from cnnlab.study import storage as st
from cnnlab.study.dashboard import is_loopback
from cnnlab_testing import as_a_background_job, cnnlab_env

HERE = Path(__file__).parent
START_TIMEOUT = 90.0  # seconds for the command to print its address (imports under load)


@pytest.fixture
def study_url(tmp_path, small_spec):
    """A storage holding one queued study (nothing trained: the dashboard only reads)."""
    url = f"sqlite:///{tmp_path}/studies.db"
    st.prepare_study(url, st.open_storage(url), "small", load_spec(small_spec))
    return url


@dataclass
class Served:
    port: int
    line: str  # the first line the command printed (its address)
    proc: subprocess.Popen


@pytest.fixture
def dashboard():
    """``with dashboard(url, cwd, *options, background=False) as served:`` runs the dashboard
    command on a free loopback port until the block ends, then stops it as Ctrl-C does.
    ``background``: started as a shell's ``cmd &`` is, with SIGINT ignored."""

    @contextlib.contextmanager
    def serve(url: str, cwd: Path, *options: str, background: bool = False):
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "study", "dashboard", "--storage", url,
             "--port", "0", *options],
            cwd=cwd, env=cnnlab_env(path=[HERE]), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            preexec_fn=as_a_background_job if background else None,
        )  # fmt: skip
        try:
            line = _first_line(proc, START_TIMEOUT)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            assert match, (line, proc.poll())
            yield Served(int(match.group(1)), line, proc)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

    return serve


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    return ""


def test_the_dashboard_serves_the_storage_on_loopback(dashboard, study_url, tmp_path):
    # Started as a background job would be, SIGINT ignored: Ctrl-C/`kill -INT` must still stop it.
    with dashboard(study_url, tmp_path, background=True) as served:
        base = f"http://127.0.0.1:{served.port}"
        with urllib.request.urlopen(f"{base}/", timeout=30) as page:
            assert page.status == 200
            assert b"<html" in page.read().lower()
        with urllib.request.urlopen(f"{base}/api/studies", timeout=30) as api:
            assert '"small"' in api.read().decode()  # the study in the storage it was given
    assert served.proc.returncode == 0  # Ctrl-C: the command stops cleanly


def test_a_missing_storage_file_is_one_line_and_nothing_is_created(run_cli, tmp_path):
    r = run_cli("study", "dashboard", "--storage", "sqlite:///nope.db", "--port", "0")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("cnnlab: error: ")
    assert "nope.db" in r.stderr
    assert not (tmp_path / "nope.db").exists()


def test_a_port_in_use_is_one_line(run_cli, study_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("study", "dashboard", "--storage", study_url, "--port", str(port))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert f"127.0.0.1:{port}" in r.stderr


def test_only_loopback_addresses_count_as_private():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.5", "::", "example.org"]))


def _request(port: int, method: str, path: str, **headers: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
def test_a_foreign_host_or_origin_is_refused_and_the_dashboard_is_read_only(
    dashboard, study_url, tmp_path
):
    """Issue 27, repro 4: DNS rebinding (a page of attacker.example resolving to 127.0.0.1)
    deleted a study. Now foreign Host/Origin get 403, and writes need --allow-writes."""
    db = Path(study_url.removeprefix("sqlite:///"))
    with dashboard(study_url, tmp_path) as served:
        port = served.port
        assert "read-only" in served.line
        own = f"127.0.0.1:{port}"
        assert _request(port, "GET", "/api/studies", Host=f"attacker.example:{port}") == 403
        assert _request(port, "DELETE", "/api/studies/1", Host=f"attacker.example:{port}") == 403
        assert _request(port, "GET", "/api/studies", Host=f"localhost:{port}") == 200
        assert _request(port, "GET", "/api/studies", Host=own, Origin="http://evil.test") == 403
        assert _request(port, "GET", "/api/studies", Host=own, Origin=f"http://{own}") == 200
        assert _request(port, "DELETE", "/api/studies/1", Host=own) == 405  # read-only
    assert st.study_names(st.open_storage(study_url)) == ["small"]
    with dashboard(study_url, tmp_path, "--allow-writes") as served:
        port = served.port
        assert _request(port, "DELETE", "/api/studies/1", Host=f"evil.test:{port}") == 403
        assert st.study_names(st.open_storage(study_url)) == ["small"]
        assert _request(port, "DELETE", "/api/studies/1", Host=f"127.0.0.1:{port}") == 204
    assert st.study_names(st.open_storage(study_url)) == []
    assert db.is_file()


def test_the_allow_list_names_this_server_with_its_port():
    allowed = allowed_hosts("127.0.0.1", 8080)
    assert refusal("127.0.0.1:8080", None, allowed) is None
    assert refusal("[::1]:8080", "http://localhost:8080", allowed) is None
    assert refusal("127.0.0.1:8081", None, allowed)  # another port: another origin
    assert refusal("attacker.example:8080", None, allowed)
    assert refusal(None, None, allowed)
    assert refusal("localhost:8080", "http://attacker.example", allowed)
    assert refusal("10.0.0.5:8080", None, allowed_hosts("10.0.0.5", 8080)) is None
