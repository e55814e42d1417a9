"""One row per predicted image, the same in both pipelines' ``predict``.

``fmnist.predict`` and ``transfer.predict`` hand back a list of these dicts (a notebook reads
the same keys from either): ``path``, ``predicted``, ``probability``, ``p_<class>`` for every
class, ``top_k`` (the likeliest classes as ``(class, probability)`` pairs, likeliest first)
and ``error`` (empty, or why the file could not be read: :func:`unreadable_row`, whose numbers
are None). A pipeline may add keys of its own (``transfer``'s two-class decision at the
operating threshold). In a CSV, ``top_k`` is written as ``class:probability`` pairs joined by
``"; "`` (:func:`csv_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def prediction_row(
    path: Any,
    p: np.ndarray,
    class_names: Sequence[str],
    top_k: int = 3,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The row of one image with class probabilities ``p``; ``extra`` keys follow
    ``probability``."""
    order = np.argsort(-p)[: min(top_k, len(class_names))]
    return {
        "path": str(path),
        "predicted": class_names[int(order[0])],
        "probability": float(p[order[0]]),
        **(extra or {}),
        **{f"p_{name}": float(v) for name, v in zip(class_names, p, strict=True)},
        "top_k": [(class_names[int(i)], float(p[i])) for i in order],
        "error": "",
    }


def unreadable_row(path: Any, error: str, class_names: Sequence[str]) -> dict[str, Any]:
    """The row of an image that could not be read: the same keys, no numbers, and why."""
    return {
        "path": str(path),
        "predicted": None,
        "probability": None,
        **{f"p_{name}": None for name in class_names},
        "top_k": [],
        "error": error,
    }


def format_top(top: Iterable[tuple[str, float]]) -> str:
    """``top_k`` as one text field: ``coat:0.912; shirt:0.051``."""
    return "; ".join(f"{name}:{p:.3f}" for name, p in top)


def csv_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows with ``top_k`` as text, for a CSV file."""
    return [{**r, "top_k": format_top(r["top_k"])} if "top_k" in r else dict(r) for r in rows]
