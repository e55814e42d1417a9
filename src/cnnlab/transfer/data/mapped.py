"""Decoded images read through a memory map, without growing the process's memory.

Pages read through a map stay in the process's resident set (which the OOM killer counts)
until the map lets them go: one pass over a 3 GB store would add 3 GB to RSS although the
kernel could drop every page. So reads release them every RELEASE_BYTES with
``madvise(MADV_DONTNEED)``: they stay in the kernel's page cache, later reads cost no disk
access while memory allows, and peak RSS stays flat as the folder grows
(``benchmarks/transfer_cache_memory.py``).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import CnnlabError
from cnnlab.transfer.data.contrast import normalize_contrast

RELEASE_BYTES = 64 << 20  # read through a map between two releases of its pages
CHUNK = 64  # images read at a time when iterating


class MappedRows:
    """The first ``n`` rows of a store's data file, mapped read-only; reads return copies and
    release the map's pages every RELEASE_BYTES."""

    def __init__(self, path: Path, n: int, size: int):
        self.path, self.n, self.size = path, n, size
        self._map: mmap.mmap | None = None
        self._identity: tuple[int, int] | None = None
        self._read = 0
        if n == 0:
            self.array = np.zeros((0, size, size, 3), np.uint8)
            return
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            self._identity = (st.st_dev, st.st_ino)
            self._map = mmap.mmap(f.fileno(), n * size * size * 3, access=mmap.ACCESS_READ)
        self.array = np.frombuffer(self._map, np.uint8).reshape(n, size, size, 3)

    def read(self, rows: np.ndarray | np.integer) -> np.ndarray:
        """Rows as a new, writable array (never a view of the read-only map)."""
        out = self.array.take(rows, axis=0)
        self.count(out.nbytes)
        return out

    def count(self, nbytes: int) -> None:
        self._read += nbytes
        if self._read >= RELEASE_BYTES:
            self.release()

    def release(self) -> None:
        """Drop the pages from this process (not from the page cache): RSS falls back."""
        self._read = 0
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers started with "spawn" (macOS) receive the map by pickling
        return _reopen, (self.path, self.n, self.size, self._identity)


def _reopen(path: Path, n: int, size: int, identity: tuple[int, int] | None) -> MappedRows:
    mapped = MappedRows(path, n, size)
    if mapped._identity != identity:
        raise CnnlabError(f"the image cache {path.parent} was rebuilt while this run read it")
    return mapped


class ImageRows:
    """Images of one split: row numbers into a mapped store. Indexing (an int, a slice, an
    index array) reads copies like a uint8 N x S x S x 3 array; ``take`` selects without
    reading, so carving and deduplicating splits costs no image memory. With ``contrast``
    (``data/contrast.py``) every read comes back contrast-normalised: the store keeps the
    decoded pixels, which runs with another normalisation share."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, mapped: MappedRows, rows: np.ndarray, contrast: str = "none"):
        self.mapped, self.rows = mapped, np.asarray(rows, dtype=np.int64)
        self.contrast = contrast

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), self.mapped.size, self.mapped.size, 3)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        return normalize_contrast(self.mapped.read(self.rows[key]), self.contrast)

    def take(self, indices: Any, axis: int = 0) -> ImageRows:
        if axis != 0:
            raise ValueError("ImageRows selects whole images (axis 0) only")
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        return ImageRows(self.mapped, rows, self.contrast)

    def with_contrast(self, contrast: str) -> ImageRows:
        return ImageRows(self.mapped, self.rows, contrast)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), CHUNK):
            yield from self[start : start + CHUNK]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)
