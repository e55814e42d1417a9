"""The splits a run trains and evaluates on: decoded, carved, checked for leakage.

``prepare_data`` is the data stage of ``transfer train``: it uses ``folders.py`` to discover the
folders and decode every image once, carves the missing validation (and test) split,
reports skipped files and duplicates across splits (leakage), and with ``dedupe`` removes
them. The report is saved as ``data_report.json``, the file list as ``splits.csv``.

Two more kinds of leakage are handled here. Several images of one patient are as good as
duplicates: with ``--group-regex`` every carved split (and every cross-validation fold) takes
whole groups, using scikit-learn's ``StratifiedGroupKFold``. And with ``--folds K`` the pool is
cut into K stratified folds (``fold_split`` gives fold k's train/val/test), so every image is
tested once by a model that never saw it.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cnnlab.configs import invalid
from cnnlab.console import make_console, progress_bar
from cnnlab.errors import CnnlabError
from cnnlab.transfer.data import folders as D
from cnnlab.transfer.data.images import check_max_pixels

if TYPE_CHECKING:
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig


class SkippedFile(TypedDict):
    split: str
    path: str
    reason: str


class GroupReport(TypedDict):
    """``--group-regex``: how the images fall into groups (patients, studies)."""

    regex: str
    groups: int  # distinct groups among the images used
    files_without_group: int  # the regex did not match: each is a group of its own
    per_split: dict[str, int]  # split -> groups in it
    across_splits: int  # groups in two splits: only possible with split folders as given


class DataReport(TypedDict):
    """``data_report.json``: what was used, what was skipped and what leaked."""

    data_dir: str
    layout: Literal["given", "carved"]  # train/val/test folders, or one pool carved here
    carved: list[str]  # the splits carved from the pool, stratified and seeded
    classes: list[str]
    counts: dict[str, list[int]]  # split -> images per class
    skipped: list[SkippedFile]
    duplicates: list[dict[str, Any]]  # every DuplicatePair, within and across splits
    duplicates_within_split: int
    duplicates_across_splits: int
    removed_by_dedupe: list[str]
    positive_class: str | None  # two classes: the last of ``classes``
    groups: GroupReport | None
    folds: int | None  # --folds: the pool ("train") is cut into this many folds
    fold_counts: list[list[int]] | None  # fold -> images per class


@dataclass
class Prepared:
    classes: list[str]
    splits: dict[str, D.LoadedSplit]  # "train", "val", maybe "test"
    report: DataReport
    folds: np.ndarray | None = None  # --folds: the fold of each "train" image

    def manifest(self) -> list[dict[str, Any]]:
        """``splits.csv``: every image with its split (and fold), class and sha256."""
        rows = []
        for name, split in self.splits.items():
            folds = self.folds if name == "train" and self.folds is not None else None
            for i, (path, label) in enumerate(zip(split.paths, split.labels, strict=True)):
                row = {"split": name, "path": str(path), "class": self.classes[int(label)]}
                if self.report["folds"]:
                    row["fold"] = "" if folds is None else int(folds[i]) + 1
                rows.append(row | {"sha256": split.sha256[i]})
        return rows


def prepare_data(
    data_dir: str | os.PathLike, cfg: TransferConfig, console: Console | None = None
) -> Prepared:
    """Discover, decode (once), split, check quality and leakage, optionally dedupe."""
    console = console or make_console(quiet=True)
    classes, files = D.discover(data_dir)
    classes = positive_last(classes, files, cfg.positive, data_dir)
    pattern = None if cfg.group_regex is None else re.compile(cfg.group_regex)
    if pattern is not None:
        _require_group_matches(pattern, [p for f in files.values() for p in f.paths], console)
    if cfg.folds and "test" in files:
        raise CnnlabError(
            f"--folds tests every image of a pool once, but {data_dir} has a test/ folder: "
            f"point at {Path(data_dir) / 'train'} to cross-validate it, or drop --folds"
        )
    max_pixels = check_max_pixels(cfg.max_pixels)
    layout: Literal["given", "carved"] = "given" if len(files) > 1 else "carved"
    loaded: dict[str, D.LoadedSplit] = {}
    for name, f in files.items():
        f = D.limit_files(f, cfg.limit, cfg.splits_seed)
        with progress_bar(console, f"decoding {name}", len(f.paths)) as advance:
            loaded[name] = D.load_split(
                f,
                cfg.image_size,
                advance,
                max_pixels=max_pixels,
                cache_dir=cfg.cache_dir,
                note=_note(console),
                contrast=cfg.contrast,
            )
        D.require_every_class(loaded[name], classes)
    skipped: list[SkippedFile] = [
        {"split": n, "path": p, "reason": r} for n, s in loaded.items() for p, r in s.skipped
    ]
    for row in skipped:
        console.print(f"[yellow]skipped[/] {row['path']}: {row['reason']}")

    pool = loaded.pop("train")
    carved = []
    if not cfg.folds and "test" not in loaded and cfg.test_size > 0:
        pool, loaded["test"] = carve(pool, cfg.test_size, cfg.splits_seed, "test", pattern)
        carved.append("test")
    if not cfg.folds and "val" not in loaded:
        fraction = cfg.val_size / (1 - cfg.test_size) if "test" in carved else cfg.val_size
        pool, loaded["val"] = carve(pool, fraction, cfg.splits_seed + 1, "val", pattern)
        carved.append("val")
    splits = {"train": pool, **{k: loaded[k] for k in ("val", "test") if k in loaded}}

    pairs = D.find_duplicates(list(splits.values()), cfg.near_threshold)
    cross = [p for p in pairs if p.split_a != p.split_b]
    if cross:
        console.print(
            f"[yellow]leakage:[/] {len(cross)} image pair(s) appear in two splits "
            f"({sum(p.kind == 'identical' for p in cross)} byte-identical)"
            + ("; removing them (--dedupe)" if cfg.dedupe else "; --dedupe removes them")
        )
    if cfg.folds and not cfg.dedupe and any(p.split_a == p.split_b == "train" for p in pairs):
        console.print(
            "[yellow]leakage:[/] duplicate images in the pool may land in two folds; "
            "--dedupe removes them"
        )
    removed: list[str] = []
    if cfg.dedupe and pairs:
        splits, removed = D.drop_duplicates(splits, pairs)
        for split in splits.values():
            D.require_every_class(split, classes)
    folds = None
    if cfg.folds:
        pool = splits["train"]
        ids = None if pattern is None else group_ids(pool.paths, pattern)
        folds = assign_folds(pool.labels, ids, cfg.folds, cfg.splits_seed)
    report: DataReport = {
        "data_dir": str(data_dir),
        "layout": layout,
        "carved": carved,
        "classes": classes,
        "counts": {
            n: np.bincount(s.labels, minlength=len(classes)).tolist() for n, s in splits.items()
        },
        "skipped": skipped,
        "duplicates": [vars(p) for p in pairs],
        "duplicates_within_split": sum(p.split_a == p.split_b for p in pairs),
        "duplicates_across_splits": len(cross),
        "removed_by_dedupe": removed,
        "positive_class": classes[1] if len(classes) == 2 else None,
        "groups": None if pattern is None else group_report(pattern, splits),
        "folds": cfg.folds,
        "fold_counts": None if folds is None else _fold_counts(splits["train"], folds, classes),
    }
    if report["groups"] is not None:
        _print_groups(console, report["groups"])
    return Prepared(classes, splits, report, folds)


# -- the positive class -------------------------------------------------------------------


def positive_last(
    classes: list[str], files: dict[str, D.SplitFiles], positive: str | None, data_dir
) -> list[str]:
    """Put the positive class last (relabelling ``files``): for two classes, class 1 is the
    positive one everywhere (threshold, sensitivity, the checkpoint, ``predict``, ``serve``).
    Without ``positive`` the order stays alphabetical: the second class is positive."""
    if positive is None:
        return classes
    if positive not in classes:
        invalid("positive", f"{positive!r} is not a class of {data_dir} ({', '.join(classes)})")
    if len(classes) != 2:
        invalid("positive", f"applies to two classes; {data_dir} has {len(classes)}")
    order = [c for c in classes if c != positive] + [positive]
    relabel = np.asarray([order.index(c) for c in classes])
    for f in files.values():
        f.labels = relabel[f.labels]
    return order


# -- groups -------------------------------------------------------------------------------


def group_key(name: str, pattern: re.Pattern[str]) -> str | None:
    """The group id in a file name: the regex's first group, else its whole match; None when
    it does not match (or matches nothing but an empty string)."""
    m = pattern.search(name)
    if m is None:
        return None
    key = m.group(1) if pattern.groups and m.group(1) else m.group(0)
    return key or None


def group_ids(paths: Sequence[Path], pattern: re.Pattern[str] | None) -> np.ndarray:
    """One id per file; a file without one (or without ``pattern``) is a group of its own."""
    keys = [None if pattern is None else group_key(Path(p).name, pattern) for p in paths]
    return np.asarray(["g:" + k if k else "f:" + str(p) for k, p in zip(keys, paths, strict=True)])


def _require_group_matches(
    pattern: re.Pattern[str], paths: Sequence[Path], console: Console
) -> None:
    unmatched = [p for p in paths if group_key(p.name, pattern) is None]
    if len(unmatched) == len(paths):
        invalid(
            "group_regex",
            f"{pattern.pattern!r} matches no file name (e.g. {paths[0].name if paths else '-'})",
        )
    if unmatched:
        console.print(
            f"[yellow]groups:[/] {len(unmatched)} of {len(paths)} file names do not match "
            f"--group-regex (e.g. {unmatched[0].name}); each is a group of its own"
        )


def _print_groups(console: Console, groups: GroupReport) -> None:
    per_split = ", ".join(f"{n} in {split}" for split, n in groups["per_split"].items())
    console.print(f"groups (--group-regex): {groups['groups']}, {per_split}")
    if groups["across_splits"]:
        console.print(
            f"[yellow]leakage:[/] {groups['across_splits']} group(s) have images in two "
            "of the split folders as given"
        )


def group_report(pattern: re.Pattern[str], splits: dict[str, D.LoadedSplit]) -> GroupReport:
    ids = {name: set(group_ids(s.paths, pattern)) for name, s in splits.items()}
    every = set().union(*ids.values())
    splits_of = Counter(g for groups in ids.values() for g in groups)
    return {
        "regex": pattern.pattern,
        "groups": len(every),
        "files_without_group": sum(
            group_key(p.name, pattern) is None for s in splits.values() for p in s.paths
        ),
        "per_split": {name: len(g) for name, g in ids.items()},
        "across_splits": sum(n > 1 for n in splits_of.values()),
    }


# -- carving and folds --------------------------------------------------------------------

HOLDOUT_FOLDS = 20  # a grouped holdout is made of 1/20ths: fractions to within 0.05


def carve(
    split: D.LoadedSplit,
    fraction: float,
    seed: int,
    name: str,
    pattern: re.Pattern[str] | None = None,
) -> tuple[D.LoadedSplit, D.LoadedSplit]:
    """Split a loaded pool into (rest, holdout), stratified and seeded; with ``pattern``,
    whole groups go to one side."""
    if pattern is None:
        return D.carve(split, fraction, seed, name)
    keep, held = grouped_holdout(split.labels, group_ids(split.paths, pattern), fraction, seed)
    rest, out = split.select(keep), split.select(held)
    out.name, out.skipped = name, []
    for part in (rest, out):
        if len(np.unique(part.labels)) < len(np.unique(split.labels)):
            raise CnnlabError(
                f"cannot carve a {name} split of whole groups holding every class "
                f"(--group-regex): too few groups per class; give a {name}/ folder"
            )
    return rest, out


def grouped_holdout(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, holdout): the holdout is the first round(fraction x k) of k stratified
    group folds (``StratifiedGroupKFold``), so no group is cut and class shares stay close."""
    # scikit-learn needs k <= the images of the largest class, and k <= the groups
    k = min(HOLDOUT_FOLDS, len(np.unique(groups)), int(np.bincount(labels).max()))
    if k < 2:
        raise CnnlabError("cannot carve a split of whole groups: too few groups (--group-regex)")
    take = min(max(1, round(fraction * k)), k - 1)
    held = np.zeros(len(labels), dtype=bool)
    for _, fold in zip(range(take), _group_folds(labels, groups, k, seed), strict=False):
        held[fold] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def _group_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int):
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than k"
        warnings.simplefilter("ignore", UserWarning)
        return [fold for _, fold in cv.split(labels, labels, groups)]


def assign_folds(labels: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each image: stratified, and with ``groups`` whole groups per fold."""
    n_groups = len(labels) if groups is None else len(np.unique(groups))
    if k > n_groups:
        raise CnnlabError(f"cannot make {k} folds of {n_groups} groups; use fewer --folds")
    smallest = int(np.bincount(labels).min())
    if smallest < k:
        raise CnnlabError(
            f"cannot make {k} stratified folds: a class has only {smallest} image(s); "
            "use fewer --folds"
        )
    if groups is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = [fold for _, fold in cv.split(labels, labels)]
    else:
        folds = _group_folds(labels, groups, k, seed)
    out = np.empty(len(labels), dtype=np.int64)
    for i, fold in enumerate(folds):
        out[fold] = i
    return out


def _fold_counts(pool: D.LoadedSplit, folds: np.ndarray, classes: list[str]) -> list[list[int]]:
    k = int(folds.max()) + 1
    return [np.bincount(pool.labels[folds == i], minlength=len(classes)).tolist() for i in range(k)]


def fold_split(prepared: Prepared, fold: int, cfg: TransferConfig) -> Prepared:
    """Fold ``fold`` of a ``--folds`` run: test = that fold, train = the others less a
    validation split carved from them (or the val/ folder as given)."""
    if prepared.folds is None:
        raise ValueError("fold_split needs data prepared with --folds")
    pool = prepared.splits["train"]
    k = int(prepared.folds.max()) + 1
    test = pool.select(np.flatnonzero(prepared.folds == fold))
    rest = pool.select(np.flatnonzero(prepared.folds != fold))
    test.name, test.skipped = "test", []
    pattern = None if cfg.group_regex is None else re.compile(cfg.group_regex)
    carved = []
    if "val" in prepared.splits:
        val = prepared.splits["val"]
    else:  # --val-size of the whole pool, taken from the k - 1 training folds
        fraction = min(cfg.val_size * k / (k - 1), 0.5)
        rest, val = carve(rest, fraction, cfg.splits_seed + 1 + fold, "val", pattern)
        carved.append("val")
    splits = {"train": rest, "val": val, "test": test}
    for name, split in splits.items():
        if len(np.unique(split.labels)) < len(prepared.classes):
            raise CnnlabError(
                f"fold {fold + 1} of {k}: the {name} split lacks a class; use fewer --folds"
            )
    report = copy.deepcopy(prepared.report)
    report["carved"] = carved
    report["counts"] = {
        n: np.bincount(s.labels, minlength=len(prepared.classes)).tolist()
        for n, s in splits.items()
    }
    if pattern is not None:
        report["groups"] = group_report(pattern, splits)
    return Prepared(prepared.classes, splits, report)


def _note(console: Console):
    """One plain line from the image cache (a path may hold brackets: no markup)."""
    return lambda line: console.print(line, markup=False, highlight=False)
