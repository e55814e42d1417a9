"""``cnnlab transfer shift``: can four whole-image statistics tell the classes apart, and do
they differ between the training folder and a test folder?

A CNN that scores well on a validation split carved from the training site and worse on a
test site has often learnt something about *how* the images were taken (exposure, field of
view, black borders, markers) rather than what they show. This probe measures that risk
without training a CNN, from four numbers per image (grey level in [0, 1]):

- ``mean`` and ``std`` of the whole image;
- ``dark_border``: the share of the outer band (``BORDER`` of each side) darker than ``DARK``,
  i.e. black padding or collimation;
- ``centre_mean``: the mean of the central half (in each direction).

Two questions, two logistic regressions (standardised features, class-balanced weights):

1. **Shortcut.** Fitted on the training folder to predict the class: its cross-validated
   ROC-AUC on training and its ROC-AUC and balanced accuracy on the test folder. A high value
   says a classifier can do well on these images without looking at anatomy; a CNN should be
   judged against it, not against chance.
2. **Site shift.** Within each class, fitted to tell training images from test images: a
   cross-validated AUC near 0.5 says the two sites look alike on these cues; well above 0.5
   says the test site differs, and the per-feature standardised differences say how.

Nothing here is tuned: the features and the band widths are fixed in advance.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.bootstrap import bootstrap_ci
from cnnlab.errors import CnnlabError
from cnnlab.report.document import markdown_table

FEATURES = ("mean", "std", "dark_border", "centre_mean")
BORDER = 0.10  # the outer band: 10% of the side, on each side
DARK = 0.05  # grey level (0-1) below which a pixel counts as black
FOLDS = 5
CHUNK = 256  # images summarised at a time, so a large folder never sits in memory as floats


def image_statistics(images: np.ndarray) -> np.ndarray:
    """N x S x S (x C) uint8 images -> N x 4 float features (see the module docstring)."""
    grey = np.asarray(images, dtype=np.float32) / 255.0
    if grey.ndim == 4:
        grey = grey.mean(axis=3)
    n, h, w = grey.shape
    bh, bw = max(1, round(h * BORDER)), max(1, round(w * BORDER))
    band = np.ones((h, w), dtype=bool)
    band[bh : h - bh, bw : w - bw] = False
    ch, cw = h // 4, w // 4
    flat = grey.reshape(n, -1)
    return np.stack(
        [
            flat.mean(axis=1),
            flat.std(axis=1),
            (grey[:, band] < DARK).mean(axis=1),
            grey[:, ch : h - ch, cw : w - cw].reshape(n, -1).mean(axis=1),
        ],
        axis=1,
    )


def statistics_of(images: Any, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``image_statistics`` over rows of an image array or the mapped image cache, in chunks."""
    parts = []
    for start in range(0, len(images), CHUNK):
        rows = np.asarray(images[start : start + CHUNK])
        parts.append(image_statistics(rows))
        if progress:
            progress(len(rows))
    return np.concatenate(parts) if parts else np.zeros((0, len(FEATURES)))


def _model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced"))


def _folds(labels: np.ndarray, groups: np.ndarray | None, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    k = int(min(FOLDS, np.bincount(labels).min()))
    if groups is not None:
        k = min(k, len(np.unique(groups)))
    if k < 2:
        return None
    if groups is not None:
        return StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(
            labels, labels, groups
        )
    return StratifiedKFold(k, shuffle=True, random_state=seed).split(labels, labels)


def _auc(labels: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if proba.shape[1] == 2:
        return float(roc_auc_score(labels, proba[:, 1]))
    return float(roc_auc_score(labels, proba, multi_class="ovr", average="macro"))


def cross_validated_proba(
    x: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, seed: int
) -> np.ndarray | None:
    """Out-of-fold probabilities (every image scored by a model that never saw it, nor its
    group); None when a class has fewer than two images or there are fewer than two groups."""
    splits = _folds(labels, groups, seed)
    if splits is None:
        return None
    proba = np.zeros((len(labels), int(labels.max()) + 1))
    for fit_idx, score_idx in splits:
        model = _model().fit(x[fit_idx], labels[fit_idx])
        proba[np.ix_(score_idx, model.classes_)] = model.predict_proba(x[score_idx])
    return proba


@dataclass
class ShiftReport:
    classes: list[str]
    counts: dict[str, list[int]]  # split -> images per class
    shortcut: dict[str, Any]
    site: list[dict[str, Any]] = field(default_factory=list)  # one entry per class
    feature_means: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unreadable files, left out

    def as_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "border": BORDER,
            "dark": DARK,
            "classes": self.classes,
            "counts": self.counts,
            "shortcut": self.shortcut,
            "site": self.site,
            "feature_means": self.feature_means,
            "skipped": self.skipped,
        }


def analyse(
    classes: Sequence[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    train_groups: np.ndarray | None = None,
    seed: int = 0,
) -> ShiftReport:
    """Both questions of the module docstring, from (features, labels) of each folder."""
    (x_tr, y_tr), (x_te, y_te) = train, test
    n = len(classes)
    oof = cross_validated_proba(x_tr, y_tr, train_groups, seed)
    model = _model().fit(x_tr, y_tr)
    proba = np.zeros((len(y_te), n))
    proba[:, model.classes_] = model.predict_proba(x_te)
    ci = bootstrap_ci(y_te, proba, seed=seed)
    from sklearn.metrics import balanced_accuracy_score

    shortcut = {
        "train_cv_auc": None if oof is None else _auc(y_tr, oof),
        "grouped": train_groups is not None,
        "test_auc": _auc(y_te, proba) if len(np.unique(y_te)) == n else None,
        "test_auc_ci": ci.get("roc_auc"),
        "test_balanced_accuracy": float(balanced_accuracy_score(y_te, proba.argmax(axis=1))),
        "test_balanced_accuracy_ci": ci.get("balanced_accuracy"),
        "coefficients": dict(zip(FEATURES, map(float, np.ravel(model[-1].coef_[0])), strict=True)),
    }
    report = ShiftReport(
        list(classes),
        {
            "train": np.bincount(y_tr, minlength=n).tolist(),
            "test": np.bincount(y_te, minlength=n).tolist(),
        },
        shortcut,
    )
    for c, name in enumerate(classes):
        a, b = x_tr[y_tr == c], x_te[y_te == c]
        report.feature_means[name] = {"train": a.mean(0).tolist(), "test": b.mean(0).tolist()}
        report.site.append(_site_shift(name, a, b, seed))
    return report


def _site_shift(name: str, train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, Any]:
    """Train-vs-test AUC within one class, and each feature's standardised difference."""
    from scipy.stats import ks_2samp

    domain = np.r_[np.zeros(len(train), dtype=np.int64), np.ones(len(test), dtype=np.int64)]
    x = np.concatenate([train, test])
    oof = cross_validated_proba(x, domain, None, seed) if len(test) and len(train) else None
    pooled = np.sqrt((train.var(0, ddof=1) + test.var(0, ddof=1)) / 2)
    smd = (test.mean(0) - train.mean(0)) / np.where(pooled > 0, pooled, np.nan)
    return {
        "class": name,
        "train": len(train),
        "test": len(test),
        "domain_cv_auc": None if oof is None else _auc(domain, oof),
        "standardised_difference": dict(zip(FEATURES, map(float, smd), strict=True)),
        "ks_pvalue": {
            f: float(ks_2samp(train[:, i], test[:, i]).pvalue) for i, f in enumerate(FEATURES)
        },
    }


# -- text -----------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ci(value: float | None, ci: Sequence[float] | None) -> str:
    return _f(value) + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def to_markdown(report: ShiftReport, train_dir: Path, test_dir: Path) -> str:
    s = report.shortcut
    counts = ", ".join(
        f"{split} {sum(n)} ({' / '.join(map(str, n))})" for split, n in report.counts.items()
    )
    lines = [
        f"Training folder: {train_dir}; test folder: {test_dir}. Images: {counts} "
        f"({', '.join(report.classes)})"
        + (f"; {len(report.skipped)} unreadable files left out." if report.skipped else "."),
        f"Features: {', '.join(FEATURES)} (border band {BORDER:.0%} of each side, dark below "
        f"{DARK:.2f}).",
        "",
        "Shortcut: a logistic regression on the four features, fitted on the training folder.",
        "",
        *markdown_table(
            ["training, cross-validated ROC-AUC", "test ROC-AUC", "test balanced accuracy"],
            [
                [
                    _f(s["train_cv_auc"]) + (" (grouped)" if s["grouped"] else ""),
                    _ci(s["test_auc"], s["test_auc_ci"]),
                    _ci(s["test_balanced_accuracy"], s["test_balanced_accuracy_ci"]),
                ]
            ],
        ),
        "",
        "Site shift: within each class, a logistic regression telling training images from "
        "test images (0.5 = the sites look alike on these cues); per feature, (test mean − "
        "training mean) / pooled SD.",
        "",
        *markdown_table(
            ["class", "train", "test", "train-vs-test CV AUC", *FEATURES],
            [
                [
                    row["class"],
                    str(row["train"]),
                    str(row["test"]),
                    _f(row["domain_cv_auc"]),
                    *(f"{row['standardised_difference'][f]:+.2f}" for f in FEATURES),
                ]
                for row in report.site
            ],
        ),
        "",
        "Feature means, training → test:",
        "",
        *markdown_table(
            ["class", *FEATURES],
            [
                [name, *(f"{a:.3f} → {b:.3f}" for a, b in zip(m["train"], m["test"], strict=True))]
                for name, m in report.feature_means.items()
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def groups_of(paths: Sequence[Path], pattern: str | None) -> np.ndarray | None:
    """Patient ids from file names (``--group-regex``); an unmatched name is one line."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise CnnlabError(f"invalid --group-regex {pattern!r}: {e}") from None
    from cnnlab.transfer.data.prepare import group_ids

    return group_ids(paths, compiled)


def probe(
    data_dir: str | Path,
    test_dir: str | Path | None = None,
    size: int = 224,
    group_regex: str | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[ShiftReport, Path, Path]:
    """Decode (through the image cache) the training folder of ``data_dir`` and the test folder
    (``test_dir``, else ``data_dir``'s own ``test/``) and analyse them."""
    from cnnlab.transfer.data.folders import class_folders, discover, list_class_files, load_split

    classes, splits = discover(data_dir)
    if test_dir is not None:
        test_dir = Path(test_dir)
        found = class_folders(test_dir)
        if found != classes:
            raise CnnlabError(
                f"classes differ between the training folder ({', '.join(classes)}) and "
                f"{test_dir} ({', '.join(found) or 'none'})"
            )
        test_files = list_class_files(test_dir, classes)
    elif "test" in splits:
        test_files = splits["test"]
        test_dir = Path(data_dir) / test_files.name
    else:
        raise CnnlabError(
            f"{data_dir} has no test/ folder: name the test site's folder with --test DIR"
        )
    train_files = splits["train"]
    root = Path(data_dir)
    train_dir = root / "train" if (root / "train").is_dir() else root
    loaded = [load_split(f, size, progress) for f in (train_files, test_files)]
    for split in loaded:
        if not len(split):
            raise CnnlabError(f"no readable image in {split.name}")
    train, test = ((statistics_of(s.images, None), s.labels) for s in loaded)
    groups = groups_of(loaded[0].paths, group_regex)
    report = analyse(classes, train, test, groups, seed)
    report.skipped = [path for s in loaded for path, _ in s.skipped]
    return report, train_dir, test_dir
