"""Contrast normalisation of decoded images: global histogram equalisation or CLAHE.

Radiographs from two sites differ in exposure and processing (issue 24: the test folder's
normal images are darker at the border than the training folder's). Mapping every image's
grey levels through its own histogram removes much of that difference before the network
sees it. The method is part of the model: ``--contrast`` is stored in the checkpoint, and
every path that turns a file into pixels (training splits, ``evaluate``, ``predict``,
``serve``) applies it through ``contrasted`` or ``load_image(..., contrast=...)``, after
decoding and resizing and before any augmentation.

Written here in numpy because neither OpenCV nor scikit-image is a dependency: CLAHE
(Zuiderveld 1994, as OpenCV's ``createCLAHE``) is a tile histogram, a clip and a bilinear
blend of the four nearest tiles' mappings, vectorised below. A grey image (three equal
channels, as X-rays are decoded) is computed once; a colour image channel by channel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CONTRASTS = ("none", "clahe", "equalize")
TILES = 8  # an 8 x 8 grid of tiles and a clip limit of 2: OpenCV's usual CLAHE setting,
CLIP_LIMIT = 2.0  # fixed in advance (a tile's histogram bins are capped at 2x the mean)


def equalize(grey: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of an H x W uint8 image: the darkest level present
    becomes 0, the brightest 255, each level in between its cumulative share of pixels."""
    cdf = np.bincount(grey.ravel(), minlength=256).cumsum()
    lowest = cdf[cdf > 0][0]
    if cdf[-1] == lowest:  # one grey level only: nothing to spread
        return grey.copy()
    lut = np.rint((cdf - lowest) / (cdf[-1] - lowest) * 255).clip(0, 255)
    return lut.astype(np.uint8)[grey]


def tile_luts(grey: np.ndarray, tiles: int = TILES, clip_limit: float = CLIP_LIMIT):
    """The grey-level mapping of each tile (tiles x tiles x 256, floats in [0, 255]) and
    the tile's height and width. Each histogram is clipped at ``clip_limit`` times its mean
    bin and the excess spread over all bins, which caps every mapping's slope (the contrast
    gain) at about ``clip_limit``; ``clip_limit`` 0 means no clip (plain equalisation)."""
    h, w = grey.shape
    th, tw = -(-h // tiles), -(-w // tiles)  # ceil: the image is padded to whole tiles
    pad = ((0, th * tiles - h), (0, tw * tiles - w))
    padded = np.pad(grey, pad, mode="reflect") if any(p for _, p in pad) else grey
    blocks = padded.reshape(tiles, th, tiles, tw).transpose(0, 2, 1, 3).reshape(tiles**2, -1)
    offsets = np.arange(tiles**2)[:, None] * 256
    hist = np.bincount((blocks + offsets).ravel(), minlength=tiles**2 * 256)
    hist = hist.reshape(tiles**2, 256).astype(np.float64)
    n = th * tw
    if clip_limit > 0:
        limit = max(clip_limit * n / 256, 1.0)
        excess = np.maximum(hist - limit, 0).sum(1, keepdims=True)
        hist = np.minimum(hist, limit) + excess / 256
    luts = hist.cumsum(1) * (255 / n)
    return luts.reshape(tiles, tiles, 256), th, tw


def _neighbours(n: int, tile: int, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n`` pixel positions: the tiles whose centres bracket it and the weight
    of the second (pixels outside the outer centres take the outer tile alone)."""
    pos = (np.arange(n) + 0.5) / tile - 0.5
    first = np.floor(pos).astype(np.intp)
    weight = pos - first
    return first.clip(0, tiles - 1), (first + 1).clip(0, tiles - 1), weight


def clahe(grey: np.ndarray, tiles: int = TILES, clip_limit: float = CLIP_LIMIT) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of an H x W uint8 image: each pixel
    is mapped by the four nearest tiles' mappings, blended bilinearly by distance."""
    luts, th, tw = tile_luts(grey, tiles, clip_limit)
    h, w = grey.shape
    y0, y1, wy = _neighbours(h, th, tiles)
    x0, x1, wx = _neighbours(w, tw, tiles)
    flat = luts.astype(np.float32).ravel()  # one flat gather per neighbour: 10x faster
    v = grey.astype(np.intp)

    def mapped(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return flat[(rows[:, None] * tiles + cols[None, :]) * 256 + v]

    wx, wy = wx.astype(np.float32)[None, :], wy.astype(np.float32)[:, None]
    top = mapped(y0, x0) * (1 - wx) + mapped(y0, x1) * wx
    bottom = mapped(y1, x0) * (1 - wx) + mapped(y1, x1) * wx
    out = top * (1 - wy) + bottom * wy
    return np.rint(out).clip(0, 255).astype(np.uint8)


def normalize_contrast(image: np.ndarray, method: str) -> np.ndarray:
    """One H x W x 3 uint8 image (or a batch, N x H x W x 3) with ``method`` applied."""
    if method == "none":
        return image
    if method not in CONTRASTS:
        raise ValueError(f"unknown contrast normalisation {method!r}")
    if image.ndim == 4:
        return np.stack([normalize_contrast(im, method) for im in image]) if len(image) else image
    fn = clahe if method == "clahe" else equalize
    if (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
        return np.repeat(fn(image[..., 0])[..., None], 3, axis=2)
    return np.stack([fn(image[..., c]) for c in range(3)], axis=2)


def contrasted(images: Any, method: str) -> Any:
    """``images`` (uint8 N x H x W x 3) as ``method`` normalises them: the image cache's rows
    apply it as they are read (no copy of the split); an array is converted now."""
    if method == "none":
        return images
    if hasattr(images, "with_contrast"):  # data.mapped.ImageRows
        return images.with_contrast(method)
    return normalize_contrast(np.asarray(images), method)
