"""What the serve page shows, without Gradio or a framework: results as HTML and as records,
and the checks on a run directory, a port and each uploaded file (the run's headline metrics
and the rules for trusting them: :mod:`cnnlab.serve.evidence`).

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
from cnnlab.serve.evidence import BORDERLINE_MARGIN

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
    predicted: str = ""  # the most probable class
    probability: float = 0.0  # its score
    top: list[tuple[str, float]] = field(default_factory=list)
    decision: str = ""  # binary transfer models: the class at the run's threshold, with why
    error: str = ""
    decided: str = ""  # that class alone
    threshold: float | None = None
    positive_class: str = ""  # the class whose score is compared with the threshold
    positive_score: float | None = None
    operating_point: str = ""  # "validation-chosen threshold 0.533", or "argmax"
    score_kind: str = ""  # evidence.CALIBRATED or evidence.UNCALIBRATED
    borderline: bool = False  # within evidence.BORDERLINE_MARGIN of the decision boundary
    cam_warning: str = ""  # cam_check: the Grad-CAM evidence looks outside the body
    inference: str = ""  # transfer: the opt-ins in force (ensemble, TTA, adapted BatchNorm)

    def record(self) -> dict[str, Any]:
        """What the page's API returns for this file: the same keys for every file."""
        thresholded = self.threshold is not None and self.positive_score is not None
        ok = not self.error
        return {
            "file": self.name,
            "label": (self.decided or self.predicted) if ok else None,
            "score": (self.positive_score if thresholded else self.probability) if ok else None,
            "score_of": (self.positive_class if thresholded else self.predicted) if ok else None,
            "score_kind": self.score_kind if ok else None,
            "threshold": self.threshold,
            "operating_point": self.operating_point if ok else None,
            "borderline": self.borderline if ok else None,
            "most_probable": self.predicted if ok else None,
            "top": [{"class": c, "score": p} for c, p in self.top],
            "cam_warning": self.cam_warning or None,
            "inference": self.inference or None,
            "error": self.error or None,
        }


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


def flags(r: ImageResult) -> str:
    """What to be careful about with this result, in words ("" when nothing)."""
    shown = []
    if r.borderline:
        where = "the threshold" if r.threshold is not None else "the next class"
        shown.append(f"Borderline: within {BORDERLINE_MARGIN} of {where}; treat as uncertain.")
    if r.cam_warning:
        shown.append(f"Grad-CAM: {r.cam_warning}.")
    return " ".join(shown)


def results_html(results: Sequence[ImageResult]) -> str:
    """A table: one row per file, its class, score, top-k, decision and flags, or the error."""
    if not results:
        return '<p class="cnnlab-note">Upload one or more images, then press Classify.</p>'
    decisions = any(r.decision for r in results)
    kind = next((r.score_kind for r in results if r.score_kind), "score")
    head = ["File", "Predicted", kind.capitalize(), "Top classes"]
    head += ["Decision"] if decisions else []
    head += ["Flags"]
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
            cells.append(f'<td class="flags">{html.escape(flags(r))}</td>')
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
