"""Fashion-MNIST, found offline when possible, verified byte for byte, parsed from IDX files.

A folder the user names (``data_dir``, i.e. ``--data-dir``, else ``$CNNLAB_DATA_DIR``) is used
alone: when it is missing or corrupt, one :class:`DataUnavailable` line says what is wrong with
it, and no other copy is used in its place (that once trained silently on another copy).
Without one, the search order is the user cache (``~/.cache/cnnlab/fashion-mnist``), Debian's
``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``), then a download from
the mirror Keras uses into the user cache. Every file must match its published SHA-256, so all
places hold byte-identical data; the arrays remember where they came from (:class:`DataOrigin`)
for the run's ``config.json`` and report. When nothing works, one line names every place tried
and why it failed.

The IDX parser is written here (a dozen lines with numpy) rather than taken from a library:
it lets the loader check magic numbers, counts and sizes and say exactly what is wrong.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.caches import cache_root
from cnnlab.errors import DataUnavailable
from cnnlab.files import exclusive_file

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

MIRROR = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049  # IDX: 0x08 = unsigned byte, then 3 or 1 dimensions


def default_cache_dir() -> Path:
    return cache_root() / "fashion-mnist"


@dataclass(frozen=True)
class Source:
    """What valid files look like: their SHA-256 and how many examples each split holds.

    ``OFFICIAL`` is the real dataset; tests build small synthetic sources of their own.
    """

    checksums: tuple[tuple[str, str], ...]  # (file name, sha256), hashable for the cache
    n_train: int = 60000
    n_test: int = 10000
    rows: int = 28
    cols: int = 28

    @property
    def files(self) -> Mapping[str, str]:
        return dict(self.checksums)


OFFICIAL = Source(
    checksums=(
        ("train-images-idx3-ubyte.gz",
         "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
        ("train-labels-idx1-ubyte.gz",
         "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
        ("t10k-images-idx3-ubyte.gz",
         "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
        ("t10k-labels-idx1-ubyte.gz",
         "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    )
)  # fmt: skip


NAMED_PLACES = ("--data-dir", "$CNNLAB_DATA_DIR")  # folders the user names: used alone


@dataclass(frozen=True)
class DataOrigin:
    """Where verified arrays were read: the place searched (``--data-dir``,
    ``$CNNLAB_DATA_DIR``, ``cache``, ``system`` or ``download``), its folder, and the SHA-256
    every file matched."""

    place: str
    path: str
    checksums: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return f"{self.path} ({self.place}; SHA-256 verified)"

    def to_dict(self) -> dict[str, object]:
        return {"place": self.place, "path": self.path, "sha256": dict(self.checksums)}


@dataclass(frozen=True)
class FashionMNIST:
    """uint8 images (N, 28, 28) and int64 labels; arrays are read-only (shared by a cache).
    ``origin`` is None for arrays a caller built itself."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    origin: DataOrigin | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES


class _Unusable(Exception):
    """Why one place could not supply the data (collected into the final error line)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_idx(raw: bytes, magic: int, count: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Decode an uncompressed IDX file of unsigned bytes, checking magic, count and size."""
    ndim = 1 + len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _Unusable(f"{name} is truncated (no complete header)")
    found_magic = int.from_bytes(raw[0:4], "big")
    if found_magic != magic:
        raise _Unusable(f"{name} has magic number {found_magic}, expected {magic}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != (count, *shape):
        raise _Unusable(f"{name} holds shape {dims}, expected {(count, *shape)}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise _Unusable(f"{name} is {what} ({len(raw)} bytes, expected {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_gz(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise _Unusable(f"{path.name} is not a valid gzip file ({e})") from None


def _check_folder(directory: Path) -> None:
    if not directory.exists():
        raise _Unusable("not present")
    if not directory.is_dir():
        raise _Unusable("not a folder")


def _verify(directory: Path, source: Source) -> None:
    _check_folder(directory)
    missing = [name for name in source.files if not (directory / name).is_file()]
    if missing:
        raise _Unusable(f"missing {', '.join(missing)}")
    for name, digest in source.files.items():
        try:
            if sha256_file(directory / name) != digest:
                raise _Unusable(f"wrong checksum for {name}")
        except OSError as e:
            raise _Unusable(f"cannot read {name} ({e.strerror})") from None


def _parse_dir(directory: Path, source: Source, place: str) -> FashionMNIST:
    _verify(directory, source)
    names = list(source.files)  # train images, train labels, test images, test labels
    image_shape = (source.rows, source.cols)
    arrays = []
    for name, count in zip(names, (source.n_train,) * 2 + (source.n_test,) * 2, strict=True):
        is_images = "images" in name
        arr = parse_idx(
            _read_gz(directory / name),
            IMAGE_MAGIC if is_images else LABEL_MAGIC,
            count,
            image_shape if is_images else (),
            name,
        )
        if not is_images:
            if arr.max(initial=0) > 9:
                raise _Unusable(f"{name} holds labels outside 0-9")
            arr = arr.astype(np.int64)
        arr = np.array(arr)  # own the memory, then freeze: the arrays are shared by the cache
        arr.flags.writeable = False
        arrays.append(arr)
    return FashionMNIST(*arrays, origin=DataOrigin(place, str(directory), source.checksums))


def _download(mirror: str, cache: Path, source: Source, progress: bool) -> None:
    """Fetch every missing or bad file into ``cache``: temporary name, verify, then rename."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Unusable(f"cannot create cache {cache} ({e.strerror})") from None
    for name, digest in source.files.items():
        target = cache / name
        if target.is_file() and sha256_file(target) == digest:
            continue
        url = mirror.rstrip("/") + "/" + name
        tmp, fd = exclusive_file(cache, f".{name}.", ".part")  # mode 0666 & ~umask
        try:
            with os.fdopen(fd, "wb") as f:
                _fetch(url, f, progress)
            if sha256_file(tmp) != digest:
                raise _Unusable(f"downloaded {name} has a wrong checksum")
            os.replace(tmp, target)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise _Unusable(f"offline or unreachable: {url} ({reason})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _fetch(url: str, f, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (https mirror)
        total = int(response.headers.get("Content-Length") or 0) or None
        if not progress:
            while chunk := response.read(1 << 16):
                f.write(chunk)
            return
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                      transient=True) as bar:  # fmt: skip
            task = bar.add_task(f"downloading {url.rsplit('/', 1)[-1]}", total=total)
            while chunk := response.read(1 << 16):
                f.write(chunk)
                bar.advance(task, len(chunk))


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched, in order, each with a label for error messages: the folder the
    user named alone, else the cache and the system folder."""
    if data_dir is not None:
        return [("--data-dir", Path(data_dir).expanduser())]
    if os.environ.get("CNNLAB_DATA_DIR"):
        return [("$CNNLAB_DATA_DIR", Path(os.environ["CNNLAB_DATA_DIR"]).expanduser())]
    return [("cache", default_cache_dir()), ("system", SYSTEM_DIR)]


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirror: str | None = None,
    source: Source = OFFICIAL,
    progress: bool = True,
) -> FashionMNIST:
    """The verified Fashion-MNIST arrays (parsed once per process and place, then cached).

    ``data_dir`` (or ``$CNNLAB_DATA_DIR``) is used alone and never downloaded into.
    ``mirror`` defaults to ``$CNNLAB_FASHION_MNIST_MIRROR`` or Keras' mirror;
    ``download=False`` (or ``CNNLAB_OFFLINE=1``) never touches the network.
    """
    places = tuple((label, str(path)) for label, path in candidate_dirs(data_dir))
    mirror = mirror or os.environ.get("CNNLAB_FASHION_MNIST_MIRROR") or MIRROR
    download = download and os.environ.get("CNNLAB_OFFLINE", "") in ("", "0")
    return _load_cached(places, download, mirror, source, progress)


def check_named_folder(data_dir: str | os.PathLike | None = None) -> None:
    """The cheap part of the search: a folder the user named (``data_dir`` or
    ``$CNNLAB_DATA_DIR``) exists, so the command line refuses a wrong one before TensorFlow
    loads (cnnlab.preflight), with the words :func:`load_fashion_mnist` would use."""
    label, path = candidate_dirs(data_dir)[0]
    if label in NAMED_PLACES:
        try:
            _check_folder(path)
        except _Unusable as why:
            raise _named_unusable(label, f"{label} {path} ({why})") from None


def _named_unusable(named: str, tried: str) -> DataUnavailable:
    return DataUnavailable(
        f"Fashion-MNIST not found; tried: {tried}. A folder named by {named} is used "
        "alone, never replaced by another copy: put the four verified .gz files there, "
        f"or leave out {named} to search the usual places"
    )


@functools.lru_cache(maxsize=4)
def _load_cached(places, download, mirror, source, progress) -> FashionMNIST:
    tried = []
    for label, path in places:
        try:
            return _parse_dir(Path(path), source, label)
        except _Unusable as why:
            tried.append(f"{label} {path} ({why})")
    named = places[0][0]
    if named in NAMED_PLACES:
        raise _named_unusable(named, tried[0])
    if download:
        cache = Path(dict(places)["cache"])
        try:
            _download(mirror, cache, source, progress)
            return _parse_dir(cache, source, "download")
        except _Unusable as why:
            tried.append(f"download from {mirror} ({why})")
    else:
        tried.append("download (disabled: offline)")
    raise DataUnavailable(
        "Fashion-MNIST not found; tried: " + "; ".join(tried) + ". Install the Debian package "
        "dataset-fashion-mnist, pass --data-dir, or go online once to fill the cache"
    )
