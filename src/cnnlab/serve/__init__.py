"""``cnnlab serve RUN_DIR``: a local web page that classifies uploaded images with a run.

Gradio rather than Streamlit: Gradio turns Python functions into a page and serves it from
this process with one ``launch()`` call; Streamlit re-runs a separate script on every click
under its own server command. Gradio is also what medical-imaging demos are published in.

The run directory decides which framework loads (``best.pt``: torch; ``model.keras``: Keras),
and only that one is imported: TensorFlow and torchvision in one process segfault.

Uploads (possibly patient images) and Grad-CAM overlays live in a private temporary folder
(0700, files 0600) that is removed when the server stops, by Ctrl-C, SIGTERM or a normal exit;
Gradio's own folder is shared by every user and process of the machine. The page answers only
its own origin (``cnnlab.origin``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator

from cnnlab.errors import CnnlabError
from cnnlab.serve.page import check_port, pipeline_of

__all__ = ["serve"]


def serve(
    run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860, tta: bool = False
) -> None:
    """Check the run and the port, load the model once, then serve the page until Ctrl-C.
    ``tta``: a transfer run's test-time augmentation (``cnnlab.transfer.inference.scoring``)."""
    pipeline = pipeline_of(run_dir)
    if tta and pipeline != "transfer":
        raise CnnlabError("--tta is for transfer runs (cnnlab transfer train)")
    check_port(host, port)
    if importlib.util.find_spec("gradio") is None:
        raise CnnlabError("cnnlab serve needs Gradio: pip install 'cnnlab[serve]'")
    if pipeline == "fmnist":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
        from cnnlab.serve.fmnist import FmnistClassifier as Classifier
    else:
        from cnnlab.serve.transfer import TransferClassifier as Classifier
    classifier = Classifier(run_dir, tta=True) if tta else Classifier(run_dir)
    with private_uploads(), _sigterm_as_interrupt():
        from cnnlab.serve.app import build_app, launch

        page = build_app(classifier)
        _announce(run_dir, pipeline, host, port)
        launch(page, host, port)


@contextlib.contextmanager
def private_uploads() -> Iterator[str]:
    """A private folder for Gradio's uploads and outputs (``GRADIO_TEMP_DIR``, read when the
    page is built), files created 0600; removed with everything in it on the way out."""
    folder = tempfile.mkdtemp(prefix="cnnlab-serve-")  # 0700, whatever the umask
    saved_env, saved_umask = os.environ.get("GRADIO_TEMP_DIR"), os.umask(0o077)
    os.environ["GRADIO_TEMP_DIR"] = folder
    try:
        yield folder
    finally:
        os.umask(saved_umask)
        if saved_env is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a service manager) stops the page as Ctrl-C does, so the cleanup of
    :func:`private_uploads` runs; Python's default would end the process without it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _announce(run_dir: str | os.PathLike, pipeline: str, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {run_dir} ({pipeline}) at http://{shown}:{port}  (Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: --host {host} makes the page reachable from other machines, "
            "with no password",
            file=sys.stderr,
            flush=True,
        )
