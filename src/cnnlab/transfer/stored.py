"""A run's stored predictions (``predictions_*.csv``) read back: paths, labels, probabilities.

One reader for ``transfer compare`` (the held-out split) and for re-choosing a threshold or an
ensemble's threshold on the validation split (``predictions_val.csv``), so both read the
columns ``prediction_rows`` writes the same way. Rows with an ``error`` (unreadable images)
carry no probabilities and are left out.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

VALIDATION_SCORES = "predictions_val.csv"


def read_scores(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, N x classes probabilities); OSError, KeyError or ValueError on a file
    that is not such a CSV (the caller names the file in one line)."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if not r.get("error")]
    labels = np.asarray([classes.index(r["true"]) for r in rows], dtype=np.int64)
    proba = np.asarray([[float(r[f"p_{c}"]) for c in classes] for r in rows], dtype=float)
    return [r["path"] for r in rows], labels, proba.reshape(len(rows), len(classes))
