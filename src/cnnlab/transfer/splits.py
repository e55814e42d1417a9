"""The splits a run trains and evaluates on: decoded, carved, checked for leakage.

``prepare_data`` is the data stage of ``transfer train``: it uses ``data.py`` to discover the
folders and decode every image once, carves the missing validation (and test) split,
reports skipped files and duplicates across splits (leakage), and with ``dedupe`` removes
them. The report is saved as ``data_report.json``, the file list as ``splits.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np

from cnnlab.console import make_console, progress_bar
from cnnlab.transfer import data as D

if TYPE_CHECKING:
    from rich.console import Console

    from cnnlab.transfer.config import TransferConfig


class SkippedFile(TypedDict):
    split: str
    path: str
    reason: str


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


@dataclass
class Prepared:
    classes: list[str]
    splits: dict[str, D.LoadedSplit]  # "train", "val", maybe "test"
    report: DataReport

    def manifest(self) -> list[dict[str, Any]]:
        """``splits.csv``: every image with its split, class and sha256."""
        return [
            {"split": name, "path": str(path), "class": self.classes[int(label)], "sha256": sha}
            for name, split in self.splits.items()
            for path, label, sha in zip(split.paths, split.labels, split.sha256, strict=True)
        ]


def prepare_data(
    data_dir: str | os.PathLike, cfg: TransferConfig, console: Console | None = None
) -> Prepared:
    """Discover, decode (once), split, check quality and leakage, optionally dedupe."""
    console = console or make_console(quiet=True)
    classes, files = D.discover(data_dir)
    layout: Literal["given", "carved"] = "given" if len(files) > 1 else "carved"
    loaded: dict[str, D.LoadedSplit] = {}
    for name, f in files.items():
        f = D.limit_files(f, cfg.limit, cfg.seed)
        with progress_bar(console, f"decoding {name}", len(f.paths)) as advance:
            loaded[name] = D.load_split(
                f, cfg.image_size, advance, cache_dir=cfg.cache_dir, note=_note(console)
            )
        D.require_every_class(loaded[name], classes)
    skipped: list[SkippedFile] = [
        {"split": n, "path": p, "reason": r} for n, s in loaded.items() for p, r in s.skipped
    ]
    for row in skipped:
        console.print(f"[yellow]skipped[/] {row['path']}: {row['reason']}")

    pool = loaded.pop("train")
    carved = []
    if "test" not in loaded and cfg.test_size > 0:
        pool, loaded["test"] = D.carve(pool, cfg.test_size, cfg.seed, "test")
        carved.append("test")
    if "val" not in loaded:
        fraction = cfg.val_size / (1 - cfg.test_size) if "test" in carved else cfg.val_size
        pool, loaded["val"] = D.carve(pool, fraction, cfg.seed + 1, "val")
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
    removed: list[str] = []
    if cfg.dedupe and pairs:
        splits, removed = D.drop_duplicates(splits, pairs)
        for split in splits.values():
            D.require_every_class(split, classes)
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
    }
    return Prepared(classes, splits, report)


def _note(console: Console):
    """One plain line from the image cache (a path may hold brackets: no markup)."""
    return lambda line: console.print(line, markup=False, highlight=False)
