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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runtime import interruptible
from cnnlab.serve.page import check_port, pipeline_of

__all__ = ["serve"]


def serve(
    run_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 7860,
    tta: bool = False,
    ensemble: Sequence[str | os.PathLike] = (),
    adapt_bn: str | os.PathLike | None = None,
) -> None:
    """Check the run and the port, load the model once, then serve the page until Ctrl-C.
    Transfer runs only, as at ``cnnlab transfer predict`` (``cnnlab.transfer.inference
    .scoring``): ``tta``, test-time augmentation; ``ensemble``, more runs whose probabilities
    are averaged with ``run_dir``'s; ``adapt_bn``, a folder of a new site's unlabelled images
    on which every run's BatchNorm statistics are re-estimated."""
    pipeline = pipeline_of(run_dir)
    opted = (("--tta", tta), ("--ensemble", ensemble), ("--adapt-bn", adapt_bn is not None))
    given = [name for name, on in opted if on]
    if given and pipeline != "transfer":
        raise CnnlabError(f"{given[0]} is for transfer runs (cnnlab transfer train)")
    for member in ensemble:
        try:
            kind = pipeline_of(member)
        except CnnlabError as e:
            raise CnnlabError(f"--ensemble: {e}") from None
        if kind != "transfer":
            raise CnnlabError(
                f"--ensemble {member} is a Fashion-MNIST run (model.keras): an ensemble "
                "averages transfer runs (best.pt)"
            )
    if adapt_bn is not None and not Path(adapt_bn).is_dir():
        raise CnnlabError(f"--adapt-bn: not a folder: {adapt_bn}")
    check_port(host, port)
    if importlib.util.find_spec("gradio") is None:
        raise CnnlabError("cnnlab serve needs Gradio: pip install 'cnnlab[serve]'")
    classifier: Any
    if pipeline == "fmnist":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
        from cnnlab.serve.fmnist import FmnistClassifier

        classifier = FmnistClassifier(run_dir)
    else:
        from cnnlab.serve.transfer import TransferClassifier

        classifier = TransferClassifier(run_dir, tta=tta, ensemble=ensemble, adapt_bn=adapt_bn)
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
    :func:`private_uploads` runs; Python's default would end the process without it. SIGINT
    too when it arrives ignored, as in a background job (``runtime.interruptible``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        with interruptible():
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
