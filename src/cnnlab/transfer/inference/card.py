"""The model card written beside every exported model (``transfer export``; issue 26).

What a reader of an exported file needs before using it, in the sections of Mitchell et al.,
"Model Cards for Model Reporting" (2019) a clinical reader looks for first: intended use, the
data, the metrics with their intervals and test sizes at a named operating point, the
threshold, the preprocessing, and the known limits. Everything comes from the checkpoint and
its run directory (``config.json``, ``data_report.json``, ``metrics.json``); nothing is
measured again. A checkpoint without its run (a copied file, or ``last.pt``, which the run's
metrics do not describe) gets a card that says its performance is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.files import read_json
from cnnlab.transfer.checkpoint import Checkpoint
from cnnlab.transfer.evaluation.report import (
    NAMES,
    OPTIMISTIC,
    operating_points,
    split_phrase,
    with_ci,
)
from cnnlab.transfer.results import THRESHOLD_FREE, VALIDATION_THRESHOLD

INTENDED_USE = (
    "Research and teaching use only: **not a diagnostic device**. It is not cleared or "
    "validated for clinical use, and its output must not decide, or be the only input to, any "
    "diagnosis, treatment or triage."
)
# Fewer held-out images of a class than this: its intervals are wide, and one of [1.000,
# 1.000] on a handful of images is luck as much as skill.
SMALL_CLASS = 30
HEADER = ["metric", "value [95% interval]", "images"]


def card_path(out: str | Path) -> Path:
    """Where the card of the exported file ``out`` goes: ``model.onnx`` -> ``model.onnx.card.md``
    (named after the file, so an ONNX and a safetensors export share a folder)."""
    out = Path(out)
    return out.with_name(f"{out.name}.card.md")


def run_of(checkpoint: str | Path) -> Path | None:
    """The run directory whose metrics describe ``checkpoint``: the directory itself, or the
    one holding it as ``best.pt``; None for any other file."""
    path = Path(checkpoint)
    run = path if path.is_dir() else path.parent if path.name == "best.pt" else None
    return run if run is not None and (run / "metrics.json").is_file() else None


def model_card(ckpt: Checkpoint, checkpoint: str | Path, out: str | Path) -> str:
    """The Markdown card of ``ckpt`` (read from ``checkpoint``) exported to ``out``."""
    run = run_of(checkpoint)
    config, data, metrics = (_read(run, name) for name in ("config", "data_report", "metrics"))
    classes = ", ".join(ckpt.class_names)
    lines = [
        f"# Model card: {Path(out).name}",
        "",
        f"A {ckpt.arch} network fine-tuned with cnnlab {__version__} to classify an image as "
        f"one of: {classes}. Exported from `{checkpoint}`.",
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        f"It answers one of {classes} for any image, including an image of none of them, and "
        "has been tested only on the data below: use on other images needs its own validation.",
        "",
        *_model(ckpt, config, Path(out)),
        *_data(data, run, checkpoint),
        *_performance(metrics),
        *_threshold(ckpt),
        *_preprocessing(ckpt),
        *_limits(metrics, data),
    ]
    return "\n".join(lines)


def _read(run: Path | None, name: str) -> dict[str, Any] | None:
    if run is None:
        return None
    try:
        doc = read_json(run / f"{name}.json", name)
    except CnnlabError:  # missing or corrupt: the card says what it does not know
        return None
    return doc if isinstance(doc, dict) else None


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(map(str, row)) + " |" for row in rows), ""]


def _model(ckpt: Checkpoint, config: Mapping | None, out: Path) -> list[str]:
    size = ckpt.image_size
    if out.suffix == ".onnx":
        file = (
            f"ONNX: input `image`, float32 N x 3 x {size} x {size}; output `logits`, "
            f"N x {len(ckpt.class_names)} (softmax gives the probabilities)"
        )
    else:
        file = "safetensors: PyTorch weights with cnnlab's metadata, no pickle"
    rows = [
        ["file", f"{out.name} ({file})"],
        ["classes, in output order", ", ".join(ckpt.class_names)],
    ]
    if config:
        rows.insert(0, ["architecture", f"{config['arch']} (initial weights: {config['weights']})"])
        rows.append(["training", f"strategy {config['strategy']}, up to {config['epochs']} epochs, "
                     f"best epoch by validation {config['monitor']}"])  # fmt: skip
    return ["## Model", "", *_table(["", "this model"], rows)]


def _data(data: Mapping | None, run: Path | None, checkpoint: str | Path) -> list[str]:
    lines = ["## Data", ""]
    if data is None:
        return [*lines, _unknown(checkpoint, run), ""]
    classes = data["classes"]
    rows = [[split, *counts, sum(counts)] for split, counts in data["counts"].items()]
    carved = f"; {' and '.join(data['carved'])} carved from train" if data.get("carved") else ""
    lines += [f"Images from `{data['data_dir']}` (layout: {data['layout']}{carved}).", ""]
    lines += _table(["split", *classes, "total"], rows)
    notes = []
    if data.get("positive_class"):
        notes.append(f"Positive class: {data['positive_class']}.")
    if data.get("skipped"):
        notes.append(f"{len(data['skipped'])} unreadable images were left out.")
    if data.get("removed_by_dedupe"):
        notes.append(f"{len(data['removed_by_dedupe'])} duplicate images were removed.")
    return [*lines, *([" ".join(notes), ""] if notes else [])]


def _unknown(checkpoint: str | Path, run: Path | None) -> str:
    where = f"its run directory {run} lacks it" if run else "it has no run directory beside it"
    return (
        f"Not known: `{checkpoint}` is not a run's best.pt with its metrics.json ({where}). "
        "Measure it with `cnnlab transfer evaluate` before any use."
    )


def _performance(m: Mapping | None) -> list[str]:
    lines = ["## Performance", ""]
    if m is None:
        return [*lines, "Not known: no metrics.json of the run that wrote this model.", ""]
    n = m.get("n_test") or m.get("n_val")
    support = {row["class"]: row["support"] for row in m.get("per_class", [])}
    counts = ", ".join(f"{c} {k}" for c, k in support.items())
    lines += [
        f"Measured once on {split_phrase(m['evaluated_on'])}: {n} images ({counts}). "
        f"Brackets: 95% intervals ({m.get('ci_method', 'none computed')}).",
        "",
        "Threshold-free:",
        "",
    ]
    ci = m.get("ci") or {}
    free = [[NAMES[k], _value(m[k], ci.get(k)), n] for k in THRESHOLD_FREE if k in m]
    lines += _table(HEADER, free)
    positive = m.get("positive_class")
    negatives = n - support.get(positive, 0) if positive else None
    images = {"sensitivity": f"{support.get(positive)} {positive}",
              "specificity": f"{negatives} not {positive}"}  # fmt: skip
    for name, block in operating_points(m):
        point_ci = block.get("ci") or {}
        rows = [
            [NAMES[k], _value(block[k], point_ci.get(k)), images.get(k, n)]
            for k in (
                "sensitivity",
                "specificity",
                "balanced_accuracy",
                "accuracy",
                "macro_f1",
                "ppv",
                "npv",
            )  # fmt: skip
            if k in block
        ]
        lines += [
            f"At the {name}:",
            "",
            *_table(["metric", "value [95% interval]", "images"], rows),
        ]
    if "per_class" in m and not positive:
        rows = [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                 r["support"]] for r in m["per_class"]]  # fmt: skip
        lines += ["Per class, at the argmax:", ""]
        lines += _table(["class", "precision", "recall", "F1", "images"], rows)
    return lines


def _value(value: float | None, ci: list[float] | None) -> str:
    """``0.873 [0.851, 0.894]``; ``n/a`` for an undefined one (a PPV with no image called
    positive is NaN in metrics.json)."""
    return "n/a" if value is None or math.isnan(value) else with_ci(value, ci)


def _threshold(ckpt: Checkpoint) -> list[str]:
    lines = ["## Decision threshold", ""]
    if ckpt.threshold is None:
        text = "The class with the highest probability (the argmax); there is no threshold."
    else:
        positive = ckpt.class_names[1]
        text = (
            f"{positive} is called when its softmax probability is >= {ckpt.threshold:.3f}, the "
            f"{VALIDATION_THRESHOLD} (Youden's J on the validation split, never on the test "
            "split); the argmax (0.5) is the other operating point reported above."
        )
    return [*lines, text, ""]


def _preprocessing(ckpt: Checkpoint) -> list[str]:
    size = ckpt.image_size
    mean = ", ".join(f"{v:.4f}" for v in ckpt.mean)
    std = ", ".join(f"{v:.4f}" for v in ckpt.std)
    return [
        "## Preprocessing",
        "",
        "1. Decode the image, turn it upright by its EXIF orientation, convert it to 8-bit RGB "
        "(16-bit images stretched from their own minimum to maximum).",
        f"2. Resize the whole image to {size} x {size} px, bilinear (the aspect ratio is not "
        "kept).",
        f"3. Scale to [0, 1], subtract the mean ({mean}) and divide by the standard deviation "
        f"({std}), per RGB channel.",
        f"4. Stack as float32 N x 3 x {size} x {size} (NCHW).",
        "",
        "`cnnlab transfer predict` does all of this.",
        "",
    ]


def _limits(m: Mapping | None, data: Mapping | None) -> list[str]:
    source = f"`{data['data_dir']}`" if data else "one data set"
    limits = [
        f"**Site shift.** Trained and tested on images from {source}; other hospitals, "
        "devices, protocols or patient groups change the images in ways that can lower every "
        "figure above without warning. Validate on local data (`cnnlab transfer evaluate`).",
        "**Shortcuts.** A network can learn markers, text, borders or device artefacts that go "
        "with a class in its training data; look at its Grad-CAM (`cnnlab transfer predict "
        "--cam DIR`) before trusting it.",
    ]
    if m is not None:
        limits.insert(1, _calibration(m))
        support = {row["class"]: row["support"] for row in m.get("per_class", [])}
        small = [f"{c} ({k})" for c, k in support.items() if k < SMALL_CLASS]
        if small:
            limits.insert(2, (
                f"**Small test set.** Fewer than {SMALL_CLASS} held-out images of "
                f"{', '.join(small)}: the intervals are wide, and a perfect score on so few "
                "images is not certainty."
            ))  # fmt: skip
        if m["evaluated_on"] == "val":
            limits.insert(0, f"**Optimistic.** {OPTIMISTIC[0].upper()}{OPTIMISTIC[1:]}.")
    return ["## Known limits", "", *(f"- {limit}" for limit in limits), ""]


def _calibration(m: Mapping) -> str:
    c = m.get("calibration")
    if c and c.get("applied"):
        return (
            f"**Calibration.** Temperature {c['temperature']:.3f}, fitted on validation, is "
            f"applied; held-out ECE {c['held_out']['ece_before']:.3f} -> "
            f"{c['held_out']['ece_after']:.3f}. Probabilities are still estimates, not risks."
        )
    return (
        f"**Calibration.** Held-out ECE {m['ece']:.3f}, and the probabilities were not "
        "calibrated: read them as scores, not as the chance that an image shows a class."
    )
