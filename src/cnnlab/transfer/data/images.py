"""One image file -> one ``size x size x 3`` uint8 array, refusing what is unsafe to decode.

Shared by training folders (``folders.load_split``), ``transfer evaluate`` and ``transfer
predict``. The limits on file size and image shape, checked before decoding, are those of
both pipelines (``cnnlab.data.image_files``). Every failure is an ``ImageRefused`` (a
``ValueError`` and a ``CnnlabError``) naming the reason; callers list the file as skipped or
refuse it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps

from cnnlab.data.image_files import MAX_PIXELS as MAX_PIXELS  # where tests import it from
from cnnlab.data.image_files import (
    PILLOW_PIXELS,
    ImageRefused,
    decoding,
    open_header,
    read_limited,
)
from cnnlab.errors import CnnlabError
from cnnlab.transfer.data.contrast import normalize_contrast

# Bump when decode() would give other pixels for the same file: the on-disk image cache
# (image_cache.py) keys its entries by it, so older entries are decoded again, never reused.
DECODE_VERSION = 1
MIN_SIDE = 8  # smaller images (a 1x1 placeholder, an icon) carry no diagnostic content


def check_max_pixels(max_pixels: int | None) -> int:
    """The ``--max-pixels`` option: at least a MIN_SIDE square, at most Pillow's own limit;
    not given (None), Pillow's limit itself (MAX_PIXELS).

    Capped at Pillow's limit because Pillow re-checks some formats (GIF, TIFF pages) while
    decoding, where a raised limit would bring its warning back.
    """
    if max_pixels is None:
        return MAX_PIXELS
    if not MIN_SIDE * MIN_SIDE <= max_pixels <= PILLOW_PIXELS:
        raise CnnlabError(
            f"invalid --max-pixels: must be between {MIN_SIDE * MIN_SIDE} and "
            f"{PILLOW_PIXELS:,} (Pillow's own limit), got {max_pixels:,}"
        )
    return max_pixels


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
    """Bytes of an image file -> size x size x 3 uint8. Raises ImageRefused with the reason."""
    return decode_sized(data, size, max_pixels)[0]


def decode_sized(
    data: bytes, size: int, max_pixels: int = MAX_PIXELS
) -> tuple[np.ndarray, tuple[int, int]]:
    """``decode``, and the file's own (width, height): the cache keeps it to apply a later
    run's ``max_pixels`` without decoding again."""
    with open_header(data, max_pixels) as im, decoding():
        original = im.size
        if min(im.size) < MIN_SIDE:
            raise ImageRefused(f"too small ({im.size[0]}x{im.size[1]} px, minimum {MIN_SIDE})")
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when much larger
        im = ImageOps.exif_transpose(im)
        rgb = to_rgb(im)
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8), original


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


def load_image(
    path: str | os.PathLike, size: int, max_pixels: int = MAX_PIXELS, contrast: str = "none"
) -> np.ndarray:
    """Decode one file, its size checked before it is read, then normalise its contrast as
    the model was trained (``data/contrast.py``); any failure is an ImageRefused (a
    ValueError) naming the reason."""
    return normalize_contrast(decode(read_limited(path), size, max_pixels), contrast)


def load_views(
    path: str | os.PathLike, views: Sequence[tuple[int, str]], max_pixels: int = MAX_PIXELS
) -> dict[tuple[int, str], np.ndarray]:
    """``load_image`` for each (size, contrast) of ``views`` (an ensemble's members): the file
    is read once and decoded once per distinct size; each view's pixels are those
    ``load_image`` gives it alone."""
    data = read_limited(path)
    decoded = {size: decode(data, size, max_pixels) for size in dict.fromkeys(s for s, _ in views)}
    return {(s, c): normalize_contrast(decoded[s], c) for s, c in dict.fromkeys(views)}
