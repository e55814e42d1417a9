"""The Gradio page: upload images, see top-k, the decision, Grad-CAM and the run's metrics,
with an intended-use note; and its API, ``/classify``, with named inputs (``images``, and
``invert`` for Fashion-MNIST) returning one structured record per file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# Gradio reports usage to its servers unless told not to; a local page has no reason to.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (after the analytics switch, which Gradio reads on import)
from starlette.middleware import Middleware  # noqa: E402

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.origin import AsgiGuard, allowed_hosts  # noqa: E402
from cnnlab.serve.evidence import BORDERLINE_MARGIN, headline, headline_html  # noqa: E402
from cnnlab.serve.page import (  # noqa: E402
    MAX_FILES,
    MAX_UPLOAD_BYTES,
    ImageResult,
    read_metrics,
    results_html,
)

if TYPE_CHECKING:
    from cnnlab.serve.fmnist import FmnistClassifier
    from cnnlab.serve.transfer import TransferClassifier

CSS = """
.cnnlab-results, .cnnlab-metrics { border-collapse: collapse; width: 100%; }
.cnnlab-results th, .cnnlab-results td, .cnnlab-metrics th, .cnnlab-metrics td {
  border: 1px solid #ccc; padding: 4px 8px; }
.cnnlab-results td.error { color: #b00020; }
.cnnlab-results td.flags { color: #8a5300; font-weight: 600; }
.cnnlab-warning, .cnnlab-intended-use { background: #fff4e5; border-left: 4px solid #e08a00;
  padding: 6px 12px; margin: 6px 0; }
.cnnlab-none { color: #666; font-style: italic; }
#cnnlab-cam { max-width: 940px; }
#cnnlab-cam img { max-width: 448px; max-height: 448px; object-fit: contain; }
"""

INTENDED_USE = (
    '<div class="cnnlab-intended-use" id="cnnlab-intended-use"><strong>Intended use: research '
    "and teaching only. This is not a diagnostic device.</strong> It is not cleared or approved "
    "for clinical use; do not use its output to diagnose, treat or triage anyone. Its figures "
    "hold only for images like those it was tested on.</div>"
)


def build_app(classifier: FmnistClassifier | TransferClassifier) -> gr.Blocks:
    run_dir = classifier.run_dir
    metrics = read_metrics(run_dir)
    # Uploads (possibly patient images) are copied to Gradio's cache (a private folder, see
    # cnnlab.serve): delete them after an hour, and all of them when the server stops.
    with gr.Blocks(
        title=f"cnnlab: {run_dir.name}", analytics_enabled=False, delete_cache=(600, 3600)
    ) as page:
        gr.Markdown(f"# cnnlab: `{run_dir.name}`\n\n{classifier.describe()}")
        gr.HTML(INTENDED_USE)
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
                gr.HTML(headline_html(metrics), elem_id="cnnlab-metrics")
        # the outputs' labels name them in the API (gradio_client, /gradio_api/info)
        table = gr.HTML(results_html([]), label="results_table", elem_id="cnnlab-results")
        transfer = classifier.pipeline == "transfer"
        gr.Markdown(
            "**Grad-CAM.** Each image as the model sees it (left) and where the evidence for "
            "its predicted class lies (right; red is strongest). A warning in the caption and "
            "the Flags column when that evidence is at the image border or on a marker.",
            visible=transfer,
        )
        cams = gr.Gallery(
            label="gradcam",
            show_label=False,
            visible=transfer,
            columns=2,
            object_fit="contain",  # the default, "cover", crops the image
            height="auto",
            allow_preview=False,  # a preview blows a 224 px map up to the window's size
            elem_id="cnnlab-cam",
        )
        with gr.Accordion("What the API returns for these images (JSON)", open=False):
            predictions = gr.JSON(label="predictions", elem_id="cnnlab-json")

        # named parameters: gradio_client calls them `images` and `invert`, not `param_1`
        if classifier.pipeline == "fmnist":

            def classify(images: list[str] | None, invert: str = "auto"):
                return classify_uploads(classifier, metrics, images, invert)

        else:

            def classify(images: list[str] | None):
                return classify_uploads(classifier, metrics, images)

        button.click(
            classify,
            inputs=[files, *options],
            outputs=[predictions, table, cams],
            api_name="classify",
        )
    return page


def classify_uploads(
    classifier: FmnistClassifier | TransferClassifier,
    metrics: dict[str, Any] | None,
    uploaded: Any,
    *options: Any,
) -> tuple[dict[str, Any], str, list[tuple[Any, str]]]:
    """The page's handler: a record per file (the API's answer), the table and the Grad-CAM
    gallery. Every user error becomes a message in its row, never a crash."""
    paths = [getattr(f, "name", f) for f in (uploaded or [])]  # paths, or Gradio file objects
    overlays: list[tuple[Any, str]] = []
    if not paths:  # Classify pressed before any upload
        rows: list[ImageResult] = []
    elif len(paths) > MAX_FILES:
        message = f"{len(paths)} files uploaded; classify at most {MAX_FILES} at a time"
        rows = [ImageResult("(upload)", error=message)]
    else:
        try:
            rows, overlays = classifier.classify(paths, *options)
        except CnnlabError as e:
            rows = [ImageResult("(upload)", error=str(e))]
    return answer(classifier, metrics, rows), results_html(rows), overlays


def answer(
    classifier: FmnistClassifier | TransferClassifier,
    metrics: dict[str, Any] | None,
    rows: list[ImageResult],
) -> dict[str, Any]:
    """The API's structured answer: the run's context once, then one record per file."""
    return {
        "run": classifier.run_dir.name,
        "intended_use": "research and teaching only; not a diagnostic device",
        "score_kind": classifier.score_kind,
        "borderline_margin": BORDERLINE_MARGIN,
        "headline": None if metrics is None else headline(metrics).record(),
        "images": [r.record() for r in rows],
    }


def launch(page: gr.Blocks, host: str, port: int, block: bool = True) -> None:
    """Serve until Ctrl-C (``block=False``: return once listening; ``page.close()`` stops);
    the port was checked free just before. Requests naming another host or origin are
    refused (``cnnlab.origin``: DNS rebinding)."""
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
            prevent_thread_lock=not block,
        )
    except OSError as e:  # lost a race for the port between the check and the bind
        raise CnnlabError(f"cannot listen on {host}:{port}: {e}") from None
