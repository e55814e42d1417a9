"""``cnnlab serve RUN_DIR``: a local web page that classifies uploaded images with a run.

Gradio rather than Streamlit: Gradio turns Python functions into a page and serves it from
this process with one ``launch()`` call; Streamlit re-runs a separate script on every click
under its own server command. Gradio is also what medical-imaging demos are published in.

The run directory decides which framework loads (``best.pt``: torch; ``model.keras``: Keras),
and only that one is imported: TensorFlow and torchvision in one process segfault.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from cnnlab.errors import CnnlabError
from cnnlab.serve.page import check_port, pipeline_of

__all__ = ["serve"]


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Check the run and the port, load the model once, then serve the page until Ctrl-C."""
    pipeline = pipeline_of(run_dir)
    check_port(host, port)
    if importlib.util.find_spec("gradio") is None:
        raise CnnlabError("cnnlab serve needs Gradio: pip install 'cnnlab[serve]'")
    if pipeline == "fmnist":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
        from cnnlab.serve.fmnist import FmnistClassifier as Classifier
    else:
        from cnnlab.serve.transfer import TransferClassifier as Classifier
    classifier = Classifier(run_dir)
    from cnnlab.serve.app import build_app, launch

    page = build_app(classifier)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {run_dir} ({pipeline}) at http://{shown}:{port}  (Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: --host {host} makes the page reachable from other machines, "
            "with no password",
            file=sys.stderr,
            flush=True,
        )
    launch(page, host, port)
