"""Untrusted image files, read with bounded memory: the limits and checks that the
Fashion-MNIST pipeline (``cnnlab predict``), the transfer pipeline (its folders, ``transfer
predict``) and ``cnnlab serve`` share, so each limit is written once.

What an image costs is known before it is decoded: the file's size from ``stat`` and its
width and height from the header. Both are checked first, so no input, however small on disk,
makes a command use more memory than an image at the limits does:
- the file size (``MAX_FILE_BYTES``), before a byte is read: a sparse 1 TB file reached
  ``read_bytes`` and ended in a ``MemoryError`` traceback;
- the pixel count (``MAX_PIXELS``): a 450 KB single-colour PNG can claim 144 megapixels;
- each side (``MAX_SIDE``) and the aspect ratio (``MAX_ASPECT``): a 101-byte PNG of 20000 x 1
  pixels passes any pixel limit, yet padding it to a square, as ``cnnlab predict`` does, took
  4.2 GB, and 1,000,000 x 1 would have taken 3.6 TiB.

Every failure of Pillow on a file (any exception: QOI files raise ``IndexError``, DDS files
``NotImplementedError``) becomes an ``ImageRefused`` carrying the reason, which callers list
as skipped or print as one line.

DICOM files, which Pillow cannot read, are recognised here by their ``DICM`` prefix and read
by ``cnnlab.data.dicom`` (pydicom), their Rows x Columns checked against the same limits
first: every caller of ``open_header`` reads them, with no code of its own.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator

from PIL import Image, UnidentifiedImageError

from cnnlab.data import dicom
from cnnlab.errors import CnnlabError

# Above an uncompressed RGB image at the pixel limit (268 MB as a BMP or TIFF), below what a
# laptop can hold twice: files are read whole (their sha256 keys the transfer image cache).
MAX_FILE_BYTES = 320 * 2**20
# Pillow's own threshold (its MAX_IMAGE_PIXELS): a 9459 x 9459 image, 268 MB as RGB, far above
# any X-ray or photograph (about 9 Mpx) yet small enough to decode. A 450 KB single-colour PNG
# of 12000 x 12000 claims 144 Mpx and took 2.5 GB to decode before this limit was checked.
MAX_PIXELS = 89_478_485
PILLOW_PIXELS = Image.MAX_IMAGE_PIXELS or MAX_PIXELS
# No camera, scanner or X-ray detector writes a side longer than this; panoramas and
# whole-slide scans, which do, are not what either pipeline classifies.
MAX_SIDE = 32_768
# Wider than any panorama photo a user would classify (about 10:1); what lets the
# Fashion-MNIST pipeline pad an image to a square without unbounded memory.
MAX_ASPECT = 20

# Pillow checks its own limit inside Image.open, before the caller sees the size: it prints a
# raw DecompressionBombWarning on stderr (or raises above twice the limit). Its limit is a
# module global, so it is lifted while a header is read, under this lock (transfer folders
# are decoded in threads), and cnnlab's limits are checked before a single pixel is decoded.
_HEADER_LOCK = threading.Lock()

# Pillow warns (UserWarning) about what it finds malformed in a file it then reads or fails on
# (corrupt EXIF in an 8-byte TIFF, say): the file's fate is said in cnnlab's words, and the raw
# warning was a second stderr line. A filter, not catch_warnings: folders decode in threads,
# and catch_warnings is not thread-safe. Only warnings issued in Pillow's modules are hidden.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


class ImageRefused(CnnlabError, ValueError):
    """A file that is not used as an image; the message is the reason, without the path
    (callers add it). A ValueError too, as the transfer decoder's callers expect."""


class ImageTooLarge(ImageRefused):
    """The file or its header claims more than the limits allow: refused before decoding."""


def too_large(width: int, height: int, max_pixels: int) -> str:
    """Why an image of ``width`` x ``height`` pixels is refused (also said of a cached image)."""
    return (
        f"too large ({width}x{height} = {width * height:,} pixels, above the limit of "
        f"{max_pixels:,}: a decompression bomb?)"
    )


def shape_problem(width: int, height: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why an image of this size is refused before decoding, or None."""
    if width < 1 or height < 1:
        return f"empty image ({width}x{height} px)"
    if width * height > max_pixels:
        return too_large(width, height, max_pixels)
    if max(width, height) > MAX_SIDE:
        return f"too large ({width}x{height} px, a side above the limit of {MAX_SIDE:,} px)"
    if max(width, height) > MAX_ASPECT * min(width, height):
        return (
            f"too elongated ({width}x{height} px, an aspect ratio above the limit of "
            f"{MAX_ASPECT}:1)"
        )
    return None


def read_limited(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, checked before reading.

    Raises ImageTooLarge above the cap, ImageRefused when it cannot be read; a FIFO or a
    device (``/dev/zero``) is refused, as reading it may never end.
    """
    try:
        # O_NONBLOCK: opening a FIFO without it waits for a writer, forever
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageRefused("not a regular file")
            if info.st_size > max_bytes:
                raise ImageTooLarge(_too_many_bytes(info.st_size, max_bytes))
            data = f.read(max_bytes + 1)  # + 1: a file that grew since fstat is caught too
    except OSError as e:
        raise ImageRefused(f"cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(_too_many_bytes(len(data), max_bytes))
    if not data:
        raise ImageRefused("empty file")
    return data


def _too_many_bytes(size: int, max_bytes: int) -> str:
    return f"larger than {max_bytes // 2**20} MiB ({size:,} bytes): not read"


@contextlib.contextmanager
def decoding() -> Iterator[None]:
    """Turn any exception Pillow raises on a file into ImageRefused, naming the reason.

    Any, not a list: Pillow's decoders raise what their code happens to raise on malformed
    input (IndexError for QOI, NotImplementedError for DDS, struct.error, ZeroDivisionError),
    and a list was found incomplete each time a new format was tried.
    """
    try:
        yield
    except ImageRefused:
        raise
    except UnidentifiedImageError:
        raise ImageRefused("not an image Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageRefused(f"corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ImageRefused("needs more memory than is free to decode") from None
    except Exception as e:  # noqa: BLE001  (see the docstring)
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
        raise ImageRefused(f"cannot decode ({reason})") from None


def open_header(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read only the header of an image file's bytes; refuse it, before any pixel is
    decoded, when its shape breaks a limit. Raises ImageRefused or ImageTooLarge.

    A DICOM file (recognised by its ``DICM`` prefix, whatever its name) is decoded here, once
    its header's Rows x Columns passed the same limits: Pillow cannot read it, and every
    caller then treats it as the 8-bit image ``cnnlab.data.dicom`` makes of it.
    """
    if not data:
        raise ImageRefused("empty file")
    if dicom.is_dicom(data):
        return _open_dicom(data, max_pixels)
    with decoding():
        with _HEADER_LOCK:
            pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                im = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit
        width, height = im.size
    try:
        _check_shape(width, height, max_pixels)
    except ImageRefused:
        im.close()
        raise
    return im


def _check_shape(width: int, height: int, max_pixels: int) -> None:
    problem = shape_problem(width, height, max_pixels)
    if problem is not None:
        raise (ImageRefused if min(width, height) < 1 else ImageTooLarge)(problem)


def _open_dicom(data: bytes, max_pixels: int) -> Image.Image:
    try:
        _, width, height = dicom.read_header(data)
        _check_shape(width, height, max_pixels)  # before a pixel is decoded
        pixels = dicom.to_8bit(data)
    except dicom.DicomUnreadable as e:
        raise ImageRefused(str(e)) from None
    return Image.fromarray(pixels)  # uint8: H x W is mode L, H x W x 3 is RGB
