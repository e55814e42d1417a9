"""``cnnlab transfer compare --by-seed``: one row per recipe, its runs' seeds pooled.

One run's bootstrap interval says how much its figures would move on other test images; it
says nothing of how much they move when the same recipe is trained again with another seed
(initialisation, shuffling, augmentation), and on a few hundred test images the two are of
the same size. So a recipe's result is the mean over its seeds with a Student-t interval over
the seeds (``cnnlab.intervals.t_interval``, the one the studies use), shown beside the mean of
its runs' own bootstrap intervals: a reader sees which of the two dominates.

A recipe is the run's ``config.json`` less ``seed``: runs equal in everything else form one
group, and runs that differ in anything else (a learning rate, ``--threads``) do not. The
tables keep ``compare``'s rule: one operating point per table (issue 24), the threshold-free
metrics in a table of their own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.bootstrap import N_RESAMPLES
from cnnlab.errors import CnnlabError
from cnnlab.intervals import Interval, t_interval, welch_interval
from cnnlab.transfer.evaluation.compare import (
    format_difference,
    format_number,
    format_seconds,
    rows_markdown,
)
from cnnlab.transfer.evaluation.tested_run import (
    FREE_COLUMNS,
    POINT_COLUMNS,
    POINTS,
    TestedRun,
    align,
    ensemble_run,
    load_run,
)
from cnnlab.transfer.results import ARGMAX, MULTICLASS_NOTE, VALIDATION_THRESHOLD

NOT_RECIPE = ("seed",)  # the config keys runs of one recipe may differ in


# a run directory named for its seed: lpft-s0, head_seed2, full.s1 (the part before is the name)
SEED_SUFFIX = re.compile(r"[-_.](s|seed)\d+$")


@dataclass
class Recipe:
    label: str  # its runs' common name (lpft-s0, lpft-s1 -> lpft), else its settings
    runs: list[TestedRun]
    ensemble: bool = False
    settings: str = ""  # the config values that set it apart from the other groups


def compare_by_seed(run_dirs: Sequence[str | Path], seed: int = 0, ensemble: bool = False) -> str:
    """The comparison as Markdown, one row per recipe (``group_by_seed``): the recipes; one
    table per operating point; one of threshold-free metrics. ``ensemble``: the mean of all
    runs' probabilities is one more recipe, of one run."""
    if len(run_dirs) < 2:
        raise CnnlabError("compare needs two or more run directories")
    runs = align([load_run(d) for d in run_dirs])
    recipes = group_by_seed(runs)
    if ensemble:
        recipes.append(Recipe("ensemble", [ensemble_run(runs, list(run_dirs), seed)], True))
    ref = runs[0]
    classes = ref.metrics["class_names"]
    counts = np.bincount(ref.labels, minlength=len(classes))
    per_class = ", ".join(f"{n} {c}" for c, n in zip(classes, counts, strict=True))
    lines = [
        f"Held-out images: {len(ref.labels)} ({per_class}), from {ref.predictions}. Runs "
        "whose config.json is equal except `seed` are one recipe, one row. Each cell: the mean "
        "over the recipe's seeds [95% Student-t interval over the seeds, clipped to the "
        "metric's range]; then `runs`: the mean "
        "of its runs' own 95% bootstrap intervals over the images (percentile, "
        f"{N_RESAMPLES} resamples). n=1: one seed, no interval over seeds. Every "
        "threshold-dependent number is stated at one named operating point, one table each: "
        "the validation-chosen threshold (each run's own), then the argmax. ROC-AUC, PR-AUC, "
        "log loss and ECE need no threshold.",
        "",
    ]
    if len(classes) > 2:
        lines += [f"{MULTICLASS_NOTE[0].upper()}{MULTICLASS_NOTE[1:]}.", ""]
    if ensemble:
        said = recipes[-1].runs[0].metrics["note"] or "threshold chosen on the shared validation"
        lines += [f"ensemble: the mean of all {len(runs)} runs' probabilities; {said}.", ""]
    lines += ["### Recipes", "", _recipes_table(recipes), ""]
    points = [point for point, _ in POINTS if any(run.at(point) for run in runs)]
    for point in points:
        lines += [f"### Operating point: {point}", "", _point_table(recipes, point), ""]
    lines += ["### Threshold-free", "", _free_table(recipes)]
    if len(recipes) > 1:
        lines += ["", *_differences(recipes, points)]
    return "\n".join(lines) + "\n"


def _differences(recipes: list[Recipe], points: list[str]) -> list[str]:
    """Each recipe's mean minus the first recipe's, over their seeds, with Welch's 95%
    interval: two recipes' seeds are independent trainings, not pairs, so the interval is
    that of a difference of two means with unequal variances; ↑/↓ where it excludes 0."""
    ref = recipes[0]
    lines = [
        f"Each recipe minus {ref.label}, over seeds: the difference of the two means with "
        "Welch's 95% interval (the seeds of two recipes are independent trainings); ↑/↓ where "
        "it excludes 0; no interval where either recipe has one seed.",
        "",
    ]
    for point in points:
        table = _difference_rows(recipes, POINT_COLUMNS, lambda run, p=point: run.at(p) or {})
        lines += [f"### Differences over seeds at operating point: {point}", "", table, ""]
    table = _difference_rows(recipes, FREE_COLUMNS, lambda run: run.metrics)
    return lines + ["### Threshold-free differences over seeds", "", table]


def _difference_rows(recipes: list[Recipe], columns: Any, block: Any) -> str:
    rows = [["recipe", "n"] + [f"Δ {title}" for _, title in columns]]
    ref = recipes[0]
    for recipe in recipes[1:]:
        cells = [recipe.label, f"n={len(recipe.runs)} vs {len(ref.runs)}"]
        for key, _ in columns:
            diff = welch_interval(
                [block(run).get(key) for run in ref.runs],
                [block(run).get(key) for run in recipe.runs],
            )
            point = None if diff.n == 0 else diff.mean
            bounds = None if math.isnan(diff.low) else [diff.low, diff.high]
            cells.append(format_difference(point, bounds))
        rows.append(cells)
    return rows_markdown(rows)


def group_by_seed(runs: list[TestedRun]) -> list[Recipe]:
    """The runs grouped by their config less ``seed``, in the order they were given; each
    labelled by the settings in which the groups differ. A seed twice in a group is refused."""
    keyed: dict[str, list[TestedRun]] = {}
    for run in runs:
        recipe = {k: v for k, v in run.config.items() if k not in NOT_RECIPE}
        keyed.setdefault(json.dumps(recipe, sort_keys=True, default=str), []).append(run)
    for group in keyed.values():
        seen: dict[str, str] = {}
        for run in group:
            s = json.dumps(run.config.get("seed"), default=str)  # a hand edit may be a list
            if s in seen:
                raise CnnlabError(
                    f"{seen[s]} and {run.name} are the same recipe with the same seed {s}: "
                    "--by-seed pools different seeds; pass each run once"
                )
            seen[s] = run.name
    configs = [[run.config for run in group] for group in keyed.values()]
    keys = sorted({k for group in configs for k in group[0]} - set(NOT_RECIPE))
    first = [group[0] for group in configs]
    differing = [k for k in keys if len({json.dumps(c.get(k), default=str) for c in first}) > 1]
    settings = [
        ", ".join(f"{k}={group[0].config.get(k)}" for k in differing)
        or str(group[0].config.get("strategy", "?"))
        for group in keyed.values()
    ]
    names = [_common_name(group) for group in keyed.values()]
    if None in names or len(set(names)) != len(names):
        names = settings  # unnamed or ambiguous: label each group by what sets it apart
    return [
        Recipe(str(name), group, settings=text)
        for name, group, text in zip(names, keyed.values(), settings, strict=True)
    ]


def _common_name(group: list[TestedRun]) -> str | None:
    """The name the group's run directories share once their seed suffix is cut (lpft-s0,
    lpft-s1 -> lpft); None where they share none."""
    names = {SEED_SUFFIX.sub("", run.name) for run in group}
    if len(names) != 1 or any(SEED_SUFFIX.search(run.name) is None for run in group):
        return None
    return names.pop()


def _recipes_table(recipes: list[Recipe]) -> str:
    named = any(r.settings and r.label != r.settings for r in recipes)
    rows = [
        ["recipe"] + (["settings that set it apart"] if named else []) + [
            "model", "strategy", "seeds", "runs", "epochs (best), mean",
            "train time, mean", "peak RSS, mean", "device",
        ]
    ]  # fmt: skip
    for recipe in recipes:
        runs = recipe.runs
        c = runs[0].config
        weights = "random init" if c.get("weights") == "none" else c.get("weights", "?")
        if weights not in ("imagenet", "random init", "–"):
            weights = Path(str(weights)).name
        seeds = "–" if recipe.ensemble else ", ".join(str(r.config.get("seed", "?")) for r in runs)
        rss = _mean(r.metrics.get("peak_rss_mb") for r in runs)
        devices = sorted({str(r.metrics.get("device", "–")) for r in runs})
        rows.append(
            [recipe.label]
            + ([recipe.settings or "–"] if named else [])
            + [
                f"{c.get('arch', '?')} ({weights})",
                str(c.get("strategy", "?")),
                seeds,
                ", ".join(r.name for r in runs),
                _epochs(runs),
                format_seconds(_mean(r.metrics.get("train_seconds") for r in runs)),
                "–" if rss is None else f"{rss:.0f} MiB",
                "; ".join(devices),
            ]
        )
    return rows_markdown(rows)


def _point_table(recipes: list[Recipe], point: str) -> str:
    """Every threshold-dependent metric of each recipe at ``point``, and nothing else."""
    rows = [["recipe", "n", "threshold"] + [title for _, title in POINT_COLUMNS]]
    for recipe in recipes:
        runs = recipe.runs
        at = [run.at(point) or {} for run in runs]
        cells = [recipe.label, f"n={len(runs)}", _threshold(runs, point)]
        for key, _ in POINT_COLUMNS:
            boot = [_bootstrap(run, run.intervals(point), key) for run in runs]
            cells.append(_cell([a.get(key) for a in at], boot))
        rows.append(cells)
    return rows_markdown(rows)


def _free_table(recipes: list[Recipe]) -> str:
    rows = [["recipe", "n"] + [title for _, title in FREE_COLUMNS]]
    for recipe in recipes:
        runs = recipe.runs
        cells = [recipe.label, f"n={len(runs)}"]
        for key, _ in FREE_COLUMNS:
            boot = [_bootstrap(run, run.metrics.get("ci"), key) for run in runs]
            upper = math.inf if key == "test_loss" else 1.0  # a log loss has no upper bound
            cells.append(_cell([run.metrics.get(key) for run in runs], boot, upper))
        rows.append(cells)
    return rows_markdown(rows)


def _threshold(runs: list[TestedRun], point: str) -> str:
    if len(runs[0].metrics["class_names"]) > 2:
        return "argmax"
    if point == ARGMAX:
        return "0.5"
    if point == VALIDATION_THRESHOLD and any(run.cross_validation for run in runs):
        return "per fold"
    mean = _mean(run.threshold for run in runs)
    return format_number(mean) + (" (mean)" if len(runs) > 1 and mean is not None else "")


def _cell(
    values: list[float | None], intervals: list[list[float] | None], upper: float = 1.0
) -> str:
    """``mean [t-interval over seeds]; runs [mean bootstrap low, mean bootstrap high]``; the
    interval over seeds clipped to the metric's range, [0, ``upper``] (two seeds' t-interval
    of a specificity read "[-0.319, 1.636]")."""
    over_seeds = t_interval(values)
    if over_seeds.n == 0:
        return "–"
    text = format_number(over_seeds.mean) + _bounds(over_seeds, upper)
    known = [i for i in intervals if i is not None]
    if known:
        low, high = np.mean(known, axis=0)
        text += f"; runs [{low:.3f}, {high:.3f}]"
    return text


def _bootstrap(run: TestedRun, intervals: dict | None, key: str) -> list[float] | None:
    """The run's bootstrap interval of ``key``; None for a cross-validation, whose intervals
    are Student-t intervals over its folds, not bootstrap intervals over images."""
    return None if run.cross_validation else (intervals or {}).get(key)


def _bounds(interval: Interval, upper: float = 1.0) -> str:
    if interval.n < 2:
        return ""
    return f" [{max(interval.low, 0.0):.3f}, {min(interval.high, upper):.3f}]"


def _mean(values: Any) -> float | None:
    known = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return float(np.mean(known)) if known else None


def _epochs(runs: list[TestedRun]) -> str:
    run_epochs = _mean(r.metrics.get("epochs_run") for r in runs)
    best = _mean(r.metrics.get("best_epoch") for r in runs)
    if run_epochs is None:  # an ensemble, or a cross-validation's list of fold counts
        return "–"
    return f"{run_epochs:g} ({'–' if best is None else f'{best:.1f}'})"
