"""What the serve page shows, without Gradio or a framework: results as HTML, the run's
headline metrics, and the checks on a run directory, a port and each uploaded file.

Kept free of TensorFlow, torch and Gradio so every rule here is tested in milliseconds.
"""

from __future__ import annotations

import html
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cnnlab.errors import CnnlabError

Pipeline = Literal["fmnist", "transfer"]

# An upload is a photo or a scan, not a data set: larger files are refused before decoding.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# A 20 MB PNG of one colour can declare 100+ megapixels (a decompression bomb); 40 MP is more
# than any camera or X-ray detector in use writes.
MAX_PIXELS = 40_000_000
MAX_FILES = 64


@dataclass(frozen=True)
class ImageResult:
    """One uploaded file: its prediction, or the reason it could not be classified."""

    name: str
    predicted: str = ""
    probability: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    decision: str = ""  # binary transfer models: the class at the run's operating threshold
    error: str = ""


def pipeline_of(run_dir: str | os.PathLike) -> Pipeline:
    """Which pipeline wrote ``run_dir``, from its files alone (no framework is imported)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise CnnlabError(f"run directory not found: {path}")
    if (path / "best.pt").is_file():
        return "transfer"
    if (path / "model.keras").is_file():
        return "fmnist"
    raise CnnlabError(
        f"{path} is not a cnnlab run (no model.keras from `cnnlab train`, "
        f"no best.pt from `cnnlab transfer train`)"
    )


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1..65535, a host that does not resolve, or a port already taken.

    Checked before any model loads, so a busy port costs the user one line, not a wait.
    """
    if not 1 <= port <= 65535:
        raise CnnlabError(f"--port must be between 1 and 65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise CnnlabError(f"--host {host}: cannot resolve ({e})") from None
    with socket.socket(family, kind, proto) as probe:
        # the server sets SO_REUSEADDR too: a port left in TIME_WAIT is free, a listener is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def upload_problem(path: str | os.PathLike) -> str | None:
    """Why an uploaded file is refused before decoding (too large in bytes, or in its
    header's pixels, sides or aspect ratio), or None.

    The checks are those of both pipelines (``cnnlab.data.image_files``), with the page's
    tighter byte and pixel limits. Decoding itself is left to the pipeline's own loader, so
    the page refuses exactly what ``predict`` refuses, in the same words.
    """
    from cnnlab.data.image_files import ImageTooLarge, open_header, read_limited

    try:
        data = read_limited(path, MAX_UPLOAD_BYTES)
    except ImageTooLarge as e:  # its bytes are never read, let alone decoded
        return str(e)
    except CnnlabError as e:  # empty or unreadable: in the words the loaders use
        return f"cannot read image {upload_name(path)}: {e}"
    try:
        open_header(data, MAX_PIXELS).close()
    except ImageTooLarge as e:
        return str(e)
    except CnnlabError:
        return None  # not an image, or unreadable: the pipeline's loader says so in its words
    return None


def upload_name(path: str | os.PathLike) -> str:
    """The name the user gave the file (Gradio keeps it as the last part of the path)."""
    return Path(path).name


def read_uploads(
    paths: Sequence[str | os.PathLike],
    load: Callable[[Path], Any],
    unreadable: tuple[type[Exception], ...],
) -> tuple[list[ImageResult], list[Any], list[int]]:
    """A result per upload (its error where it is refused or ``load`` raises ``unreadable``),
    the decoded images, and each image's index in the results."""
    results: list[ImageResult] = []
    images, where = [], []
    for path in map(Path, paths):
        problem = upload_problem(path)
        if problem is None:
            try:
                images.append(load(path))
                where.append(len(results))
            except unreadable as e:
                # the loader names the server's temporary copy; the page names the file
                problem = str(e).replace(str(path), path.name)
        results.append(ImageResult(upload_name(path), error=problem or ""))
    return results, images, where


def results_html(results: Sequence[ImageResult]) -> str:
    """A table: one row per file, its class, top-k and decision, or the error."""
    if not results:
        return '<p class="cnnlab-note">Upload one or more images, then press Classify.</p>'
    decisions = any(r.decision for r in results)
    head = ["File", "Predicted", "Probability", "Top classes"] + (["Decision"] if decisions else [])
    rows = []
    for r in results:
        cells = [f'<td class="file">{html.escape(r.name)}</td>']
        if r.error:
            span = len(head) - 1
            cells.append(f'<td class="error" colspan="{span}">{html.escape(r.error)}</td>')
        else:
            top = ", ".join(f"{html.escape(name)} {p:.1%}" for name, p in r.top)
            cells += [
                f'<td class="predicted">{html.escape(r.predicted)}</td>',
                f'<td class="probability">{r.probability:.1%}</td>',
                f'<td class="top">{top}</td>',
            ]
            if decisions:
                cells.append(f'<td class="decision">{html.escape(r.decision)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return (
        f'<table class="cnnlab-results"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or None when it is absent or unreadable (the page says so)."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _number(value: Any, percent: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.1%}" if percent else f"{value:.3f}"


# (label, key path in metrics.json, shown as a percentage); rows whose key is absent are left out
HEADLINE: list[tuple[str, tuple[str, ...], bool]] = [
    ("Accuracy", ("test_accuracy",), True),
    ("Balanced accuracy", ("balanced_accuracy",), True),
    ("Macro F1", ("macro_f1",), False),
    ("ROC AUC", ("roc_auc",), False),
    ("ECE (calibration error)", ("ece",), False),
    ("Operating threshold", ("threshold",), False),
    ("Sensitivity at threshold", ("operating_point", "sensitivity"), True),
    ("Specificity at threshold", ("operating_point", "specificity"), True),
]


def metrics_markdown(metrics: dict[str, Any] | None) -> str:
    """The run's headline metrics as a Markdown table, naming the split they were measured on."""
    if metrics is None:
        return "_No readable metrics.json in this run directory._"
    split = metrics.get("evaluated_on", "test")
    lines = [
        f"**Headline metrics** (held-out `{split}` split)",
        "",
        "| Metric | Value |",
        "|---|---|",
    ]
    for label, keys, percent in HEADLINE:
        value: Any = metrics
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        shown = _number(value, percent)
        if shown is not None:
            lines.append(f"| {label} | {shown} |")
    extra = [
        f"{metrics[k]} {what}{'' if metrics[k] == 1 else 's'}"
        for k, what in (
            ("epochs_run", "epoch"),
            ("train_images", "training image"),  # Fashion-MNIST
            ("n_train", "training image"),  # transfer
        )
        if isinstance(metrics.get(k), int)
    ]
    if extra:
        lines += ["", "Trained for " + ", ".join(extra) + "."]
    return "\n".join(lines)
