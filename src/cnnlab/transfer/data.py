"""Image folders: layout, quality checks, duplicate detection and the decoded-image cache.

Data flows: ``discover`` lists files per split (no decoding) -> ``load_split`` decodes every
file once (``images.decode``) into a uint8 array of ``image_size`` squares, skipping and
reporting what cannot be used -> ``find_duplicates`` looks for leakage between splits. Epochs
then read the in-memory array, so JPEGs are decoded exactly once per run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.splits import stratified_split, stratified_subset
from cnnlab.errors import CnnlabError
from cnnlab.transfer.images import MAX_PIXELS, decode

NEAR_THRESHOLD = 10  # of 256 dHash bits; see dhash() for how it was chosen
VAL_NAMES = ("val", "valid", "validation")
TEST_NAMES = ("test",)


@dataclass
class SplitFiles:
    """Files of one split and their labels, before decoding."""

    name: str
    paths: list[Path]
    labels: np.ndarray


@dataclass
class LoadedSplit:
    """A decoded split: ``images`` is N x S x S x 3 uint8; ``skipped`` lists (path, reason)."""

    name: str
    paths: list[Path]
    labels: np.ndarray
    images: np.ndarray
    sha256: list[str]
    dhash: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, keep: np.ndarray) -> LoadedSplit:
        keep = np.asarray(keep, dtype=np.int64)
        return LoadedSplit(
            self.name,
            [self.paths[i] for i in keep],
            self.labels[keep],
            self.images[keep],
            [self.sha256[i] for i in keep],
            self.dhash[keep],
            list(self.skipped),
        )


# -- layout -------------------------------------------------------------------------------


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise CnnlabError(f"data folder not found: {root}")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))


def list_class_files(root: Path, classes: Sequence[str]) -> SplitFiles:
    """Every visible file under each class folder (recursively), labelled by folder."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (root / name).rglob("*")
            if p.is_file() and not any(q.startswith(".") for q in p.relative_to(root).parts)
        )
        if not files:
            raise CnnlabError(f"class folder {root / name} holds no files")
        paths += files
        labels += [label] * len(files)
    return SplitFiles(root.name, paths, np.asarray(labels, dtype=np.int64))


def _find_sub(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def discover(data_dir: str | os.PathLike) -> tuple[list[str], dict[str, SplitFiles]]:
    """Class names and the files of each split present on disk ('train', maybe 'val', 'test').

    A folder holding ``train/`` (and ``val/`` and/or ``test/``) is used as split; otherwise its
    sub-folders are the classes of one pool that the caller splits.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise CnnlabError(f"data folder not found: {root}")
    train_dir = root / "train"
    if train_dir.is_dir():
        dirs = {"train": train_dir}
        if (val := _find_sub(root, VAL_NAMES)) is not None:
            dirs["val"] = val
        if (test := _find_sub(root, TEST_NAMES)) is not None:
            dirs["test"] = test
    else:
        dirs = {"train": root}
    classes = class_folders(dirs["train"])
    check_classes(classes, dirs["train"])
    for name, d in dirs.items():
        other = class_folders(d)
        if other != classes:
            raise CnnlabError(
                f"classes differ between {dirs['train']} ({', '.join(classes)}) "
                f"and {d} ({', '.join(other) or 'none'}); every split needs the same class folders"
            )
        del name
    return classes, {name: list_class_files(d, classes) for name, d in dirs.items()}


def check_classes(classes: Sequence[str], where: Path) -> None:
    if len(classes) == 0:
        raise CnnlabError(
            f"{where} has no class folders; expected one sub-folder of images per class"
        )
    if len(classes) == 1:
        raise CnnlabError(
            f"{where} has a single class folder ({classes[0]}); a classifier needs two or more"
        )


# -- decoding -----------------------------------------------------------------------------


def dhash(image: np.ndarray, hash_size: int = 16) -> np.ndarray:
    """Difference hash: one bit per horizontally adjacent pixel pair of a grey
    (hash_size+1) x hash_size thumbnail, set where brightness increases; packed into bytes.

    Written here (not the ``imagehash`` package) because it is a few lines. It survives
    re-encoding, resizing and brightness shifts, so it finds the same picture saved twice at
    different quality, which sha256 of the bytes misses. 256 bits, not the usual 64: chest
    X-rays look so alike that 64-bit hashes of different patients collide (395 exact 64-bit
    collisions in the pneumonia train set), while at 256 bits re-encoded copies stay within
    9 bits and different images are 12 or more apart.
    """
    grey = Image.fromarray(image).convert("L")
    grey = grey.resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    px = np.asarray(grey, dtype=np.int16)
    return np.packbits((px[:, 1:] > px[:, :-1]).flatten())


def _load_one(path: Path, size: int, max_pixels: int) -> tuple[np.ndarray | None, str, str]:
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, "", f"cannot read ({e.strerror})"
    try:
        return decode(data, size, max_pixels), hashlib.sha256(data).hexdigest(), ""
    except ValueError as e:
        return None, "", str(e)


def load_split(
    files: SplitFiles,
    size: int,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
    max_pixels: int = MAX_PIXELS,
) -> LoadedSplit:
    """Decode every file of a split once; unusable files are skipped and listed with a reason.

    Files whose header claims more than ``max_pixels`` pixels are among them, never decoded.
    """
    paths, labels, images, sha, skipped = [], [], [], [], []
    # Pillow releases the GIL while decoding, so threads overlap file reading and JPEG decoding.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda p: _load_one(p, size, max_pixels), files.paths)
        for path, label, (img, digest, reason) in zip(
            files.paths, files.labels, results, strict=True
        ):
            if progress is not None:
                progress(1)
            if img is None:
                skipped.append((str(path), reason))
                continue
            paths.append(path)
            labels.append(int(label))
            images.append(img)
            sha.append(digest)
    stack = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    hashes = np.stack([dhash(img) for img in images]) if images else np.zeros((0, 32), np.uint8)
    return LoadedSplit(files.name, paths, np.asarray(labels, np.int64), stack, sha, hashes, skipped)


def require_every_class(split: LoadedSplit, classes: Sequence[str]) -> None:
    counts = np.bincount(split.labels, minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise CnnlabError(
            f"no usable images for class {', '.join(empty)} in the {split.name} split "
            f"(after skipping {len(split.skipped)} unreadable file(s))"
        )


# -- splits -------------------------------------------------------------------------------


def limit_files(files: SplitFiles, limit: int | None, seed: int) -> SplitFiles:
    if limit is None or limit >= len(files.paths):
        return files
    keep = stratified_subset(files.labels, limit, seed)
    return SplitFiles(files.name, [files.paths[i] for i in keep], files.labels[keep])


def carve(split: LoadedSplit, holdout: float, seed: int, name: str):
    """Split a loaded pool into (rest, holdout), stratified and seeded."""
    keep, held = stratified_split(split.labels, holdout, seed)
    rest, out = split.select(keep), split.select(held)
    out.name, out.skipped = name, []
    return rest, out


# -- duplicates ---------------------------------------------------------------------------


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two arrays of packed hashes (len(a) x len(b))."""
    return np.bitwise_count(a[:, None] ^ b[None, :]).sum(-1, dtype=np.int32)


@dataclass
class DuplicatePair:
    kind: str  # "identical" (same bytes) or "near" (perceptual hash within the threshold)
    split_a: str
    path_a: str
    split_b: str
    path_b: str
    distance: int


def find_duplicates(
    splits: Sequence[LoadedSplit], near_threshold: int = NEAR_THRESHOLD, chunk: int = 256
) -> list[DuplicatePair]:
    """Byte-identical and near-identical pairs, within and across splits.

    ``near_threshold`` is the largest Hamming distance (of 256 dHash bits) counted as the same
    picture; a negative value turns near-duplicate search off.
    """
    pairs: list[DuplicatePair] = []
    for i, a in enumerate(splits):
        for b in splits[i:]:
            same = a is b
            by_sha: dict[str, list[int]] = {}
            for k, digest in enumerate(b.sha256):
                by_sha.setdefault(digest, []).append(k)
            identical = set()
            for ia, digest in enumerate(a.sha256):
                for ib in by_sha.get(digest, []):
                    if same and ib <= ia:
                        continue
                    identical.add((ia, ib))
                    pairs.append(
                        DuplicatePair(
                            "identical", a.name, str(a.paths[ia]), b.name, str(b.paths[ib]), 0
                        )
                    )
            if near_threshold < 0 or not len(a) or not len(b):
                continue
            for start in range(0, len(a), chunk):
                dist = _hamming(a.dhash[start : start + chunk], b.dhash)
                for ia, ib in zip(*np.nonzero(dist <= near_threshold), strict=True):
                    ia = int(ia) + start
                    ib = int(ib)
                    if (same and ib <= ia) or (ia, ib) in identical:
                        continue
                    pairs.append(
                        DuplicatePair(
                            "near",
                            a.name,
                            str(a.paths[ia]),
                            b.name,
                            str(b.paths[ib]),
                            int(dist[ia - start, ib]),
                        )
                    )
    return pairs


def drop_duplicates(
    splits: dict[str, LoadedSplit], pairs: Sequence[DuplicatePair]
) -> tuple[dict[str, LoadedSplit], list[str]]:
    """Remove leakage, keeping evaluation sets intact so results stay comparable.

    Across splits the copy in the earlier split of train -> val -> test is removed (the test
    set is never changed); within a split, the second copy of a pair is removed.
    """
    order = {"train": 0, "val": 1, "test": 2}
    remove: dict[str, set[str]] = {name: set() for name in splits}
    for p in pairs:
        if p.split_a == p.split_b:
            remove[p.split_b].add(p.path_b)
        elif order[p.split_a] < order[p.split_b]:
            remove[p.split_a].add(p.path_a)
        else:
            remove[p.split_b].add(p.path_b)
    out, removed = {}, []
    for name, split in splits.items():
        keep = [i for i, path in enumerate(split.paths) if str(path) not in remove[name]]
        removed += [str(path) for path in split.paths if str(path) in remove[name]]
        out[name] = split.select(np.asarray(keep, dtype=np.int64))
        out[name].name = name
    return out, removed
