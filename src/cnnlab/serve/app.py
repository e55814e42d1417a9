"""The Gradio page: upload images, see top-k, the decision, Grad-CAM and the run's metrics."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Gradio reports usage to its servers unless told not to; a local page has no reason to.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (after the analytics switch, which Gradio reads on import)
from starlette.middleware import Middleware  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.origin import AsgiGuard, allowed_hosts  # noqa: E402
from cnnlab.serve.page import (  # noqa: E402
    MAX_FILES,
    MAX_UPLOAD_BYTES,
    ImageResult,
    metrics_markdown,
    read_metrics,
    results_html,
)

if TYPE_CHECKING:
    from cnnlab.serve.fmnist import FmnistClassifier
    from cnnlab.serve.transfer import TransferClassifier

CSS = """
.cnnlab-results { border-collapse: collapse; width: 100%; }
.cnnlab-results th, .cnnlab-results td { border: 1px solid #ccc; padding: 4px 8px; }
.cnnlab-results td.error { color: #b00020; }
"""


def build_app(classifier: FmnistClassifier | TransferClassifier) -> gr.Blocks:
    run_dir = classifier.run_dir
    # Uploads (possibly patient images) are copied to Gradio's cache (a private folder, see
    # cnnlab.serve): delete them after an hour, and all of them when the server stops.
    with gr.Blocks(
        title=f"cnnlab: {run_dir.name}", analytics_enabled=False, delete_cache=(600, 3600)
    ) as page:
        gr.Markdown(f"# cnnlab: `{run_dir.name}`\n\n{classifier.describe()}")
        with gr.Row():
            with gr.Column():
                files = gr.File(
                    file_count="multiple",
                    label=f"Images (up to {MAX_FILES}, {MAX_UPLOAD_BYTES // 2**20} MiB each)",
                    elem_id="cnnlab-upload",
                )
                options: list[Any] = []
                if classifier.pipeline == "fmnist":
                    options.append(
                        gr.Radio(
                            ["auto", "yes", "no"],
                            value="auto",
                            label="Invert dark-on-light photos (Fashion-MNIST is light on black)",
                        )
                    )
                button = gr.Button("Classify", variant="primary", elem_id="cnnlab-classify")
            with gr.Column():
                gr.Markdown(metrics_markdown(read_metrics(run_dir)), elem_id="cnnlab-metrics")
        results = gr.HTML(results_html([]), elem_id="cnnlab-results")
        cams = gr.Gallery(
            label="Grad-CAM: where the predicted class's evidence lies",
            visible=classifier.pipeline == "transfer",
            columns=4,
            elem_id="cnnlab-cam",
        )

        def classify(uploaded, *chosen):
            return classify_uploads(classifier, uploaded, *chosen)

        button.click(classify, inputs=[files, *options], outputs=[results, cams])
    return page


def classify_uploads(
    classifier: FmnistClassifier | TransferClassifier, uploaded: Any, *options: Any
) -> tuple[str, list[tuple[Any, str]]]:
    """The page's handler: every user error becomes a message in the table, never a crash."""
    paths = [getattr(f, "name", f) for f in (uploaded or [])]  # paths, or Gradio file objects
    if not paths:  # Classify pressed before any upload
        return results_html([]), []
    if len(paths) > MAX_FILES:
        message = f"{len(paths)} files uploaded; classify at most {MAX_FILES} at a time"
        return results_html([ImageResult("(upload)", error=message)]), []
    try:
        rows, overlays = classifier.classify(paths, *options)
    except CnnlabError as e:
        return results_html([ImageResult("(upload)", error=str(e))]), []
    return results_html(rows), overlays


def launch(page: gr.Blocks, host: str, port: int) -> None:
    """Serve until Ctrl-C; the port was checked free just before. Requests naming another
    host or origin are refused (``cnnlab.origin``: DNS rebinding)."""
    guard = Middleware(AsgiGuard, allowed=allowed_hosts(host, port))
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=False,  # never a public tunnel: medical images stay on this machine
            inbrowser=False,
            show_error=True,
            quiet=True,
            max_file_size=MAX_UPLOAD_BYTES,
            footer_links=[],
            css=CSS,
            app_kwargs={"middleware": [guard]},
        )
    except OSError as e:  # lost a race for the port between the check and the bind
        raise CnnlabError(f"cannot listen on {host}:{port}: {e}") from None
