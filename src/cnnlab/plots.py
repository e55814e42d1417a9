"""Plots shared by both pipelines and the study report (matplotlib, headless).

Every function writes one PNG atomically and returns its path, so a report can embed it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: laptops over SSH, CI, worker processes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnlab.files import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def learning_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Train/validation loss and accuracy per epoch (keys ``train_loss``, ``val_loss``,
    ``train_accuracy``, ``val_accuracy``; missing keys are skipped)."""
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{metric}"
            values = [row.get(key) for row in history]
            if any(v not in (None, "") for v in values):
                ax.plot(epochs, [float(v) for v in values], style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curves")
    return save_figure(fig, path)


def confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike
) -> Path:
    """Confusion matrix, coloured by row-normalised recall, annotated with counts."""
    cm = np.asarray(matrix, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title("Confusion matrix")
    return save_figure(fig, path)


def roc_curves(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> Path:
    """One-vs-rest ROC curve per class (one curve for two classes), with AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, target in _one_vs_rest(y_true, len(class_names)):
        fpr, tpr, _ = roc_curve(target, proba[:, k])
        auc = roc_auc_score(target, proba[:, k])
        ax.plot(fpr, tpr, label=f"{class_names[k]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.legend(fontsize=8)
    ax.set_title("ROC")
    return save_figure(fig, path)


def _one_vs_rest(y_true: np.ndarray, n_classes: int):
    """``(k, y_true == k)`` for each class with both outcomes present; class 1 alone for two
    classes (its curve is the binary one)."""
    y_true = np.asarray(y_true)
    for k in [1] if n_classes == 2 else range(n_classes):
        target = y_true == k
        if target.any() and not target.all():
            yield k, target


def precision_recall_curves(
    y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> Path:
    """One-vs-rest precision-recall curve per class (one for two classes: class 1), with the
    average precision in the legend and each class's prevalence, the no-skill line, dotted."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for k, target in _one_vs_rest(y_true, len(class_names)):
        precision, recall, _ = precision_recall_curve(target, proba[:, k])
        ap = average_precision_score(target, proba[:, k])
        (line,) = ax.step(recall, precision, where="post", label=f"{class_names[k]} (AP {ap:.3f})")
        ax.axhline(target.mean(), color=line.get_color(), ls=":", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.legend(fontsize=8)
    ax.set_title("Precision-recall (dotted: prevalence)")
    return save_figure(fig, path)


def reliability_diagram(
    y_true: np.ndarray, probas: Mapping[str, np.ndarray], path: str | os.PathLike
) -> Path:
    """Accuracy against top-label confidence per confidence bin, one line per set of
    probabilities (e.g. before and after temperature scaling), ECE in the legend; the diagonal
    is perfect calibration. Below it: how many images fall in each bin."""
    from cnnlab.metrics import expected_calibration_error, reliability_bins

    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    for name, proba in probas.items():
        confidence, accuracy, count = reliability_bins(y_true, proba)
        used = count > 0
        ece = expected_calibration_error(y_true, proba)
        (line,) = ax.plot(
            confidence[used], accuracy[used], "-o", ms=4, label=f"{name} (ECE {ece:.3f})"
        )
        hist.stairs(count, np.linspace(0, 1, len(count) + 1), color=line.get_color())
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Reliability (dashed: perfect calibration)")
    hist.set_xlabel("confidence (probability of the predicted class)")
    hist.set_ylabel("images")
    return save_figure(fig, path)


def image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike, cols: int = 8
) -> Path:
    """A grid of images (HxW grayscale or HxWx3) with a title under each."""
    n = max(len(images), 1)
    cols = min(cols, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        img = np.asarray(img)
        ax.imshow(img.squeeze(), cmap="gray" if img.squeeze().ndim == 2 else None)
        ax.set_title(title, fontsize=7)
    return save_figure(fig, path)


def errorbar_by_level(
    levels: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    path: str | os.PathLike,
    ylabel: str,
    title: str,
    reference: float | None = None,
) -> Path:
    """Mean with a confidence interval per level (e.g. accuracy vs kernel size)."""
    x = np.arange(len(levels))
    means = np.asarray(means, dtype=float)
    err = np.vstack([means - np.asarray(lows, float), np.asarray(highs, float) - means])
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(levels) + 2), 3.6))
    ax.errorbar(x, means, yerr=np.nan_to_num(err), fmt="o", capsize=4)
    if reference is not None:
        ax.axhline(reference, color="gray", ls="--", lw=0.8, label="baseline")
        ax.legend(fontsize=8)
    ax.set_xticks(x, levels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def gradcam_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 image with a Grad-CAM heat map (HxW in [0, 1]) blended over it in 'jet'."""
    heat = matplotlib.colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255
    base = np.asarray(image, dtype=np.float64)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    return ((1 - alpha) * base + alpha * heat).round().clip(0, 255).astype(np.uint8)


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an HxW or HxWx3 uint8 array as a PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def bars_by_level(
    levels: Sequence[str],
    means: Sequence[float],
    path: str | os.PathLike,
    ylabel: str,
    title: str,
    lows: Sequence[float] | None = None,
    highs: Sequence[float] | None = None,
    notes: Sequence[str] | None = None,
) -> Path:
    """One bar per level (e.g. training seconds), with confidence intervals when given and
    ``notes`` written above the bars."""
    x = np.arange(len(levels))
    means = np.asarray(means, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.9 * len(levels) + 2), 3.4))
    yerr = None
    if lows is not None and highs is not None:
        yerr = np.nan_to_num(
            np.vstack([means - np.asarray(lows, float), np.asarray(highs, float) - means])
        )
    bars = ax.bar(x, np.nan_to_num(means), yerr=yerr, capsize=4, color="#7aa6d6")
    if notes is not None:
        ax.bar_label(bars, labels=list(notes), padding=2, fontsize=8)
        ax.margins(y=0.15)
    ax.set_xticks(x, levels, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def curves_by_level(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike,
    title: str,
    ylabel: str = "accuracy",
) -> Path:
    """Overlaid learning curves, one colour per level: validation solid, training dashed.
    ``curves[level] = {"train": per-epoch values, "val": per-epoch values}``."""
    fig, ax = plt.subplots(figsize=(7, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (level, c) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        for split, style in (("val", "-o"), ("train", "--")):
            values = c.get(split)
            if values is not None and len(values):
                epochs = np.arange(1, len(values) + 1)
                label = f"{level} ({split})" if split == "val" else None
                ax.plot(epochs, values, style, color=color, ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.set_title(title + " (validation solid, training dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def lines_by_x(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
) -> Path:
    """Several series of means with intervals over a numeric x (e.g. accuracy vs batch size at
    a fixed and at a scaled LR). ``series[name] = (xs, means, lows, highs)``."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (xs, means, lows, highs) in series.items():
        xs, means = np.asarray(xs, float), np.asarray(means, float)
        err = np.nan_to_num(
            np.vstack([means - np.asarray(lows, float), np.asarray(highs, float) - means])
        )
        ax.errorbar(xs, means, yerr=err, fmt="-o", capsize=3, ms=4, label=name)
    if logx:
        ax.set_xscale("log", base=2 if all(float(x).is_integer() for s in series.values()
                                             for x in s[0]) else 10)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | os.PathLike,
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = "{:.2f}",
) -> Path:
    """An annotated matrix of values (e.g. mean accuracy over two crossed factors)."""
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(col_labels) + 2.5, 0.8 * len(row_labels) + 1.8))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=20, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    lo, hi = np.nanmin(m) if m.size else 0, np.nanmax(m) if m.size else 1
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not np.isnan(m[i, j]):
                dark = m[i, j] < (lo + hi) / 2
                ax.text(j, i, fmt.format(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return save_figure(fig, path)


def intervals_by_label(
    labels: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    path: str | os.PathLike,
    xlabel: str,
    title: str,
) -> Path:
    """One row per label, first on top: its value as a dot with its interval as a line.
    Horizontal, so that long labels (factors in words) read without rotation."""
    y = np.arange(len(labels))[::-1]
    means = np.asarray(means, dtype=float)
    lows, highs = np.asarray(lows, dtype=float), np.asarray(highs, dtype=float)
    err = np.nan_to_num(np.vstack([means - lows, highs - means]))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.4))
    ax.errorbar(means, y, xerr=err, fmt="o", color="#0a66c2", capsize=4)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)
