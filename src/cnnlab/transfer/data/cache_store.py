"""The on-disk store of the image cache: one per image size, append-only, crash-safe.

::

    <cache dir>/images/<size>px/images.u8   rows of size x size x 3 uint8, append-only
                                index.npz   per row: sha256 of the file, its width and height,
                                            dHash, crc32 of the row; the store's meta
                                lock        flock: one writer at a time; readers share it

The index is replaced atomically (temporary file, rename) only after the rows it names are
written, so a killed run leaves at most unnamed rows, which the next writer cuts off. Nothing
is fsync'd: after a power cut the index may name rows that never reached the disk, or be
garbage itself, and the checks on load (the index's shape, every used row's crc32) find
either; what is lost is decoded again. A cache buys no durability worth a sync per write. A
store found unreadable, truncated or made otherwise (another decoder or Pillow version: other
pixels) is rebuilt with a one-line note, into a new file, so a run still reading the old one
keeps its map; rows are never rewritten in place. Each rebuild starts a new ``generation``:
row numbers are only meaningful within one.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import io
import json
import os
import secrets
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL

from cnnlab.caches import CACHE_ENV
from cnnlab.errors import CnnlabError, DiskFull
from cnnlab.files import disk_full, exclusive_file
from cnnlab.transfer.data.images import DECODE_VERSION
from cnnlab.transfer.data.mapped import MappedRows

FORMAT = 1  # of the files below; a store of another format is rebuilt
COMMIT_ROWS = 2048  # rows appended between index updates: an interrupted first run keeps them
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
# np.load of garbage raises any of these; of a plain .npy, an array without __enter__
_UNREADABLE = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    AttributeError,
    TypeError,
    zipfile.BadZipFile,
)
_ARRAYS = {"digest": (32, np.uint8), "wh": (2, np.uint32), "dhash": (32, np.uint8)}

Note = Callable[[str], None]


class Invalid(Exception):
    """Why a store on disk cannot be used: it is rebuilt."""


@dataclass
class Index:
    """Per row: sha256 of the file, its width and height, dHash, crc32; and the meta."""

    meta: dict[str, Any]
    digest: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))
    wh: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.uint32))
    dhash: np.ndarray = field(default_factory=lambda: np.zeros((0, 32), np.uint8))
    crc: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))

    def __post_init__(self) -> None:
        self.rows = {d.tobytes(): i for i, d in enumerate(self.digest)}  # later rows win

    def __len__(self) -> int:
        return len(self.crc)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = np.array(json.dumps(self.meta))
        np.savez(buf, meta=meta, digest=self.digest, wh=self.wh, dhash=self.dhash, crc=self.crc)
        return buf.getvalue()

    @classmethod
    def parse(cls, path: Path) -> Index:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {name: z[name] for name in (*_ARRAYS, "crc")}
        except _UNREADABLE as e:
            raise Invalid(f"its index is unreadable ({type(e).__name__})") from None
        n = len(arrays["crc"])
        ok = isinstance(meta, dict) and isinstance(meta.get("generation"), str)
        ok = ok and arrays["crc"].shape == (n,)
        ok = ok and arrays["crc"].dtype == np.uint32
        for name, (width, dtype) in _ARRAYS.items():
            ok = ok and arrays[name].shape == (n, width) and arrays[name].dtype == dtype
        if not ok:
            raise Invalid("its index is malformed")
        return cls(meta, **arrays)


@dataclass
class Snapshot:
    """A consistent view: an index and the map of exactly the rows it names."""

    index: Index
    mapped: MappedRows

    def corrupt_rows(self, rows: np.ndarray) -> set[int]:
        """The ``rows`` whose bytes no longer match their crc32 (read once, in file order)."""
        bad = set()
        for row in np.unique(rows):
            image = self.mapped.array[row]
            if zlib.crc32(image) != int(self.index.crc[row]):
                bad.add(int(row))
            self.mapped.count(image.nbytes)
        return bad


class ImageStore:
    """The decoded images of one ``size`` under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, size: int, note: Note):
        self.dir = root / "images" / f"{size}px"
        self.size, self.note, self.row_bytes = size, note, size * size * 3
        self.data, self.index_path = self.dir / "images.u8", self.dir / "index.npz"
        self.meta = {
            "format": FORMAT,
            "size": size,
            "decoder": DECODE_VERSION,
            "pillow": PIL.__version__,
        }

    @classmethod
    def open(cls, root: Path, size: int, note: Note) -> ImageStore:
        """The store under ``root``; one in a temporary folder (removed at exit), with a
        note, when ``root`` cannot be written (a read-only home, say)."""
        store = cls(root, size, note)
        try:
            store.dir.mkdir(parents=True, exist_ok=True)
            os.close(os.open(store.dir / "lock", os.O_RDWR | os.O_CREAT, 0o666))
        except OSError as e:
            tmp = Path(tempfile.mkdtemp(prefix="cnnlab-images-"))
            atexit.register(shutil.rmtree, tmp, True)
            note(
                f"cannot write the image cache in {root} ({e.strerror}); this run uses a "
                f"temporary one (set --cache-dir or ${CACHE_ENV})"
            )
            store = cls(tmp, size, note)
            store.dir.mkdir(parents=True)
        return store

    @contextlib.contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                self.note(f"waiting for the image cache {self.dir}: another process is writing it")
                fcntl.flock(fd, mode)
            except OSError as e:  # no locks on this file system: crc32 still catches a clash
                if e.errno not in _NO_LOCKS:
                    raise
            yield
        finally:
            os.close(fd)

    def _load(self) -> Index:
        """The index on disk, checked against this store's meta and its data file."""
        if not self.index_path.exists():
            return Index({**self.meta, "generation": ""})
        index = Index.parse(self.index_path)
        made = {k: index.meta.get(k) for k in self.meta}
        if made != self.meta:
            changed = [f"{k} {made[k]} (now {v})" for k, v in self.meta.items() if made[k] != v]
            raise Invalid(f"was made otherwise ({', '.join(changed)})")
        if not self.data.exists():
            raise Invalid("has lost its data file")
        need, have = len(index) * self.row_bytes, self.data.stat().st_size
        if have < need:
            raise Invalid(f"is truncated ({have:,} of {need:,} bytes)")
        return index

    def _fresh(self) -> Index:
        """A new, empty generation: new data file (renamed in: mapped old files live on)."""
        index = Index({**self.meta, "generation": secrets.token_hex(8)})
        _replace(self.data, b"")
        _replace(self.index_path, index.to_bytes())
        return index

    def _checked(self) -> Index:
        """Under the exclusive lock: the index, rebuilt (with a note) when it is unusable."""
        try:
            index = self._load()
        except Invalid as e:
            self.note(f"image cache {self.dir} {e}; rebuilding it")
            return self._fresh()
        return index if index.meta["generation"] else self._fresh()

    def snapshot(self) -> Snapshot:
        with self._errors():
            with self._locked(fcntl.LOCK_SH), contextlib.suppress(Invalid):
                index = self._load()
                return Snapshot(index, MappedRows(self.data, len(index), self.size))
            with self._locked(fcntl.LOCK_EX):  # rebuilding takes the writers' lock
                index = self._checked()
                return Snapshot(index, MappedRows(self.data, len(index), self.size))

    @contextlib.contextmanager
    def writer(self) -> Iterator[Writer]:
        """The one writer: appends rows; the index names them at each commit and at the end."""
        with self._errors(), self._locked(fcntl.LOCK_EX):
            writer = Writer(self, self._checked())
            try:
                yield writer
                writer.commit()
            finally:
                writer.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A full disk or an unwritable cache is one line, like every user-caused error."""
        try:
            yield
        except OSError as e:
            if full := disk_full(e):
                error: CnnlabError = DiskFull(
                    f"disk full while writing the image cache {self.dir} ({full.strerror}); "
                    "rows not yet indexed were dropped, the images cached before are kept: "
                    "free some space or set --cache-dir elsewhere"
                )
            else:
                error = CnnlabError(
                    f"cannot use the image cache {self.dir} ({e.strerror}); set --cache-dir"
                )
            _raise_detached(error)


def _raise_detached(error: CnnlabError) -> None:
    """Raise ``error`` with no OSError chained to it: ``from None`` only hides the chain,
    and the run directory, finding ENOSPC in it, said "disk full while writing the run".
    Re-raised inside its own handler, Python chains nothing to it."""
    try:
        raise error
    except CnnlabError as raised:
        raised.__context__ = raised.__cause__ = None
        raise raised  # noqa: B904  (the point is to chain nothing)


class Writer:
    """Appends decoded images to a store under its exclusive lock."""

    def __init__(self, store: ImageStore, index: Index):
        self.store, self.index = store, index
        self.generation = index.meta["generation"]
        self.file = open(store.data, "r+b")  # noqa: SIM115 - closed by ImageStore.writer
        self.file.truncate(len(index) * store.row_bytes)  # rows no index names: a killed run's
        self.file.seek(0, os.SEEK_END)
        self.pending: list[tuple[bytes, tuple[int, int], np.ndarray, int]] = []

    def lookup(self, digest: bytes, bad: set[int]) -> int | None:
        row = self.index.rows.get(digest)
        return None if row is None or row in bad else row

    def append(self, digest: bytes, image: np.ndarray, wh: tuple[int, int], dh: np.ndarray) -> int:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        self.file.write(image.data)
        self.pending.append((digest, wh, dh, zlib.crc32(image.data)))
        row = len(self.index) + len(self.pending) - 1
        self.index.rows[digest] = row
        if len(self.pending) >= COMMIT_ROWS:
            self.commit()
        return row

    def commit(self) -> None:
        """Rows written first, then the index that names them."""
        if not self.pending:
            return
        self.file.flush()
        digests, wh, dh, crc = zip(*self.pending, strict=True)
        i = self.index
        grown = Index(
            i.meta,
            np.concatenate([i.digest, np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)]),
            np.concatenate([i.wh, np.asarray(wh, np.uint32)]),
            np.concatenate([i.dhash, np.stack(dh)]),
            np.concatenate([i.crc, np.asarray(crc, np.uint32)]),
        )
        _replace(self.store.index_path, grown.to_bytes())
        self.index, self.pending = grown, []

    def snapshot(self) -> Snapshot:
        self.commit()
        return Snapshot(self.index, MappedRows(self.store.data, len(self.index), self.store.size))

    def close(self) -> None:
        with contextlib.suppress(OSError):  # rows never committed take no disk space
            self.file.truncate(len(self.index) * self.store.row_bytes)
        self.file.close()


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it to ``path`` (no fsync: see the
    module docstring)."""
    tmp, fd = exclusive_file(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
