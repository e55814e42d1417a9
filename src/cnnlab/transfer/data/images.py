"""One image file -> one ``size x size x 3`` uint8 array, refusing what is unsafe to decode.

Shared by training folders (``folders.load_split``), ``transfer evaluate`` and ``transfer
predict``, so the size limit below is checked in one place. Every failure is a ``ValueError``
naming the reason; callers list the file as skipped or refuse it.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import CnnlabError

# Bump when decode() would give other pixels for the same file: the on-disk image cache
# (image_cache.py) keys its entries by it, so older entries are decoded again, never reused.
DECODE_VERSION = 1
MIN_SIDE = 8  # smaller images (a 1x1 placeholder, an icon) carry no diagnostic content
# Pillow's own threshold (its MAX_IMAGE_PIXELS): a 9459 x 9459 image, 268 MB as RGB, far above
# any X-ray or photograph (about 9 Mpx) yet small enough to decode. A 450 KB single-colour PNG
# of 12000 x 12000 claims 144 Mpx and took 2.5 GB to decode before this limit was checked.
MAX_PIXELS = 89_478_485
_PILLOW_PIXELS = Image.MAX_IMAGE_PIXELS or MAX_PIXELS

# Pillow checks its own limit inside Image.open, before the caller sees the size: it prints a
# raw DecompressionBombWarning on stderr (or raises above twice the limit). Its limit is a
# module global, so it is lifted while a header is read, under this lock (load_split decodes in
# threads), and cnnlab's limit is checked before a single pixel is decoded.
_HEADER_LOCK = threading.Lock()


class ImageTooLarge(ValueError):
    """The header claims more pixels than the limit: refused before decoding."""


def check_max_pixels(max_pixels: int | None) -> int:
    """The ``--max-pixels`` option: at least a MIN_SIDE square, at most Pillow's own limit;
    not given (None), Pillow's limit itself (MAX_PIXELS).

    Capped at Pillow's limit because Pillow re-checks some formats (GIF, TIFF pages) while
    decoding, where a raised limit would bring its warning back.
    """
    if max_pixels is None:
        return MAX_PIXELS
    if not MIN_SIDE * MIN_SIDE <= max_pixels <= _PILLOW_PIXELS:
        raise CnnlabError(
            f"invalid --max-pixels: must be between {MIN_SIDE * MIN_SIDE} and "
            f"{_PILLOW_PIXELS:,} (Pillow's own limit), got {max_pixels:,}"
        )
    return max_pixels


def open_limited(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Read only the header of ``data``; refuse an image of more than ``max_pixels`` pixels."""
    with _HEADER_LOCK:
        pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im = Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageTooLarge(too_large(width, height, max_pixels))
    return im


def too_large(width: int, height: int, max_pixels: int) -> str:
    """Why an image of ``width`` x ``height`` is refused: also said of a cached image."""
    return (
        f"too large ({width}x{height} = {width * height:,} pixels, above the limit of "
        f"{max_pixels:,}: a decompression bomb?)"
    )


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB.

    16-bit and float images (common in medical imaging) are min-max stretched to 8 bits:
    Pillow's own conversion clips them at 255, which turns most of a 16-bit X-ray white.
    Transparent images are composited on black, the background of X-ray and ultrasound.
    """
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def decode(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> size x size x 3 uint8. Raises ValueError with the reason."""
    return decode_sized(data, size, max_pixels)[0]


def decode_sized(
    data: bytes, size: int, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """``decode``, and the file's own (width, height): the cache keeps it to apply a later
    run's ``max_pixels`` without decoding again."""
    if not data:
        raise ValueError("empty file")
    try:
        with open_limited(data, max_pixels) as im:
            original = im.size
            if min(im.size) < MIN_SIDE:
                raise ValueError(f"too small ({im.size[0]}x{im.size[1]} px, minimum {MIN_SIDE})")
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
            im = ImageOps.exif_transpose(im)
            rgb = to_rgb(im)
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8), original
    except UnidentifiedImageError:
        raise ValueError("not an image Pillow can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"corrupt or truncated image ({e})") from None


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


def load_image(path: str | os.PathLike, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode one file; any failure is a ValueError naming the reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read ({e.strerror})") from None
    return decode(data, size, max_pixels)
