"""Decoded images on disk, memory-mapped: what lets a folder larger than RAM train.

Runs used to hold every decoded image in RAM: about 0.9 GB for 5,000 images at 224 px, so a
100,000-image folder did not fit a laptop. Now each image is decoded once into a store on
disk (``cache_store.py``), one per image size, shared by every later run, which reads it
through a memory map (``mapped.py``): ``cache_images`` is the one entry point.

Entries are keyed by the sha256 of the file's bytes, not by path, size and mtime. The hash is
computed every run anyway (``splits.csv`` and leakage detection need it), so a stat key would
save no read; and a stat key goes stale silently: re-extracted archives, ``rsync -a`` and
``cp -p`` keep mtimes, so a replaced image would train on its old pixels. Keyed by content,
copies and renamed folders share entries. Reading and hashing every file costs far less than
decoding it (figures in ``benchmarks/transfer_cache_memory.py``). The rows a run uses are
checked against their crc32 before it trains on them; a corrupt row is decoded again.

Files that cannot be used (unreadable, corrupt, too small or too large) are not cached: each
run names them again, with the reason, and their number is small.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from cnnlab.data.image_files import ImageRefused, read_limited, shape_problem
from cnnlab.transfer.data.cache_store import ImageStore, Index, Snapshot, Writer
from cnnlab.transfer.data.images import decode_sized, dhash
from cnnlab.transfer.data.mapped import ImageRows

CHUNK = 64  # files in flight in the thread pool: what bounds the memory of decoding


@dataclass
class Cached:
    """The usable files of a list (``keep``: their positions) and why the others were not."""

    images: ImageRows
    keep: list[int]
    sha256: list[str]
    dhash: np.ndarray
    skipped: list[tuple[int, str]]


def _read(path: Path) -> tuple[bytes, bytes | None, str]:
    try:
        data = read_limited(path)  # its size checked first: a sparse 1 TB file is not read
    except ImageRefused as e:
        return b"", None, str(e)
    return data, hashlib.sha256(data).digest(), ""


def _fingerprint(path: Path) -> tuple[bytes | None, str]:
    _, digest, reason = _read(path)
    return digest, reason


Decoded = tuple[bytes | None, np.ndarray | None, tuple[int, int], np.ndarray | None, str]


def _decode(path: Path, size: int, max_pixels: int, known: Callable[[bytes], bool]) -> Decoded:
    """(digest, image or None when ``known``, original size, dHash, why it failed)."""
    data, digest, reason = _read(path)
    if digest is None or known(digest):
        return digest, None, (0, 0), None, reason
    try:
        image, wh = decode_sized(data, size, max_pixels)
    except ImageRefused as e:
        return digest, None, (0, 0), None, str(e)
    return digest, image, wh, dhash(image), ""


def _chunked(pool: ThreadPoolExecutor, fn: Callable, items: Sequence) -> Iterator:
    for start in range(0, len(items), CHUNK):
        yield from pool.map(fn, items[start : start + CHUNK])


class _Fill:
    """One ``cache_images`` call: each file's row, digest, or reason for being skipped."""

    def __init__(self, paths: Sequence[Path], store: ImageStore, max_pixels: int, advance):
        self.paths, self.store, self.max_pixels, self.advance = paths, store, max_pixels, advance
        self.rows = np.full(len(paths), -1, np.int64)
        self.digests: list[bytes | None] = [None] * len(paths)
        self.skipped: dict[int, str] = {}
        self.counted: set[int] = set()  # files already shown by the progress bar

    def done(self, i: int) -> None:
        if i not in self.counted:
            self.counted.add(i)
            self.advance(1)

    def use(self, i: int, row: int, index: Index) -> None:
        """File ``i`` is row ``row`` of ``index``, unless its original breaks a limit."""
        w, h = (int(v) for v in index.wh[row]) if row < len(index) else (1, 1)
        if problem := shape_problem(w, h, self.max_pixels):
            self.skipped[i] = problem
        else:
            self.rows[i] = row

    def find(self, pool: ThreadPoolExecutor, snap: Snapshot) -> set[int]:
        """Hash every file and look it up; returns the rows found corrupt (crc32)."""
        for i, (digest, reason) in enumerate(_chunked(pool, _fingerprint, self.paths)):
            self.digests[i] = digest
            row = snap.index.rows.get(digest) if digest is not None else None
            if reason:
                self.skipped[i] = reason
            elif row is not None:
                self.use(i, row, snap.index)
            if i in self.skipped or row is not None:
                self.done(i)
        bad = snap.corrupt_rows(self.rows[self.rows >= 0])
        if bad:
            self.store.note(
                f"image cache {self.store.dir}: {len(bad)} image(s) failed their checksum; "
                "decoding them again"
            )
            self.rows[np.isin(self.rows, list(bad))] = -1
        return bad

    def missing(self) -> list[int]:
        return [i for i in range(len(self.paths)) if self.rows[i] < 0 and i not in self.skipped]

    def decode(self, pool: ThreadPoolExecutor, w: Writer, misses: list[int], bad: set[int]):
        """Decode the ``misses`` into the store: a run that waited for the lock finds what
        the other run decoded meanwhile, and decodes nothing twice."""
        known = set(w.index.rows) - {w.index.digest[r].tobytes() for r in bad}
        todo = [self.paths[i] for i in misses]
        work = partial(
            _decode, size=self.store.size, max_pixels=self.max_pixels, known=known.__contains__
        )
        for i, (digest, image, wh, dh, reason) in zip(
            misses, _chunked(pool, work, todo), strict=True
        ):
            self.done(i)
            self.digests[i] = digest
            row = w.lookup(digest, bad) if digest is not None else None
            if row is not None:
                self.use(i, row, w.index)
            elif image is not None:
                self.rows[i] = w.append(digest, image, wh, dh)  # type: ignore[arg-type]
            else:
                self.skipped[i] = reason or "changed while it was read"


def cache_images(
    paths: Sequence[Path],
    store: ImageStore,
    max_pixels: int,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Cached:
    """Each file's decoded image in ``store``: found by the hash of its bytes, or decoded
    and appended. Unreadable files, and images above ``max_pixels``, are skipped."""
    fill = _Fill(paths, store, max_pixels, progress or (lambda n: None))
    snap = store.snapshot()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bad = fill.find(pool, snap)
        if misses := fill.missing():
            with store.writer() as w:
                if w.generation != snap.index.meta["generation"]:  # rebuilt: rows renumbered
                    fill.rows[:], bad = -1, set()
                    misses = fill.missing()
                fill.decode(pool, w, misses, bad)
                snap = w.snapshot()
    keep = [i for i in range(len(paths)) if i not in fill.skipped]
    rows = fill.rows[keep]
    return Cached(
        ImageRows(snap.mapped, rows),
        keep,
        [fill.digests[i].hex() for i in keep],  # type: ignore[union-attr]
        snap.index.dhash[rows],
        sorted(fill.skipped.items()),
    )
