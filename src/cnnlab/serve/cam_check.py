"""Whether a Grad-CAM's strongest evidence lies outside the body: a warning, not a verdict.

A classifier can score an X-ray by its side marker ("R"), burnt-in text or the film's edge
(shortcut learning); Grad-CAM shows it, and the page says so in words, since a heat map alone
is easy to misread. A simple heuristic on the model's input image and its Grad-CAM, both
H x W (documented in docs/serve.md):

- *hot*: Grad-CAM at least :data:`HOT` of its peak (the maps are scaled to a peak of 1);
- *border*: more than half the hot pixels lie in the outer :data:`BORDER` of each side. The
  band covers 36% of the image, so heat spread evenly stays below the half;
- *marker*: at least a third of the hot pixels lie on, or within 3% of the side of, a small
  very bright blob: pixels at least :data:`BRIGHT` of the image's brightest, joined into a
  blob of 0.02% to :data:`BLOB_AREA` (1%) of the image, whose mean is at least
  :data:`CONTRAST` of the brightest above the ring of pixels around it. Markers, letters and
  rulers are such blobs; bone is brightest in patches surrounded by bright bone, and lungs,
  heart and mediastinum are darker or larger.

Measured on 200 test X-rays of the chest-xray data set (every third file of test/, 224 px),
with a Gaussian heat spot (sigma 20 px) placed on each lung and on the mediastinum: 0 of the
600 warned. Bright blobs were found in 7 of the 200 images, each a saturated side marker or a
burnt-in line, and heat placed on them warned in all 7. Without the contrast test every image
had "blobs" (bright patches of bone) and heat on the mediastinum warned in 27 of 200; a
top-hat filter that also finds grey markers warned in 62 of the 600. A grey marker is
therefore not found by this rule; most sit in a corner, where the border rule applies.

SciPy's connected-component labelling, not a home-made flood fill.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HOT = 0.8
BORDER = 0.10
BRIGHT = 0.92
BLOB_AREA = 0.01
MIN_BLOB = 0.0002  # 10 px of a 224 px image: smaller is noise
CONTRAST = 0.35  # of the brightest: a marker is much brighter than what surrounds it
RING = 7  # px: the surroundings a blob is compared with
NEAR = 0.03  # of the shorter side: how close to a blob heat still counts as on it


def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    return a.mean(axis=2) if a.ndim == 3 else a


def border_band(shape: tuple[int, int], width: float = BORDER) -> np.ndarray:
    """True in the outer ``width`` of each side."""
    h, w = shape
    dy, dx = max(1, round(h * width)), max(1, round(w * width))
    band = np.ones((h, w), bool)
    band[dy : h - dy, dx : w - dx] = False
    return band


def bright_blobs(image: np.ndarray) -> np.ndarray:
    """True on small very bright blobs of ``image`` that stand out from their surroundings
    (markers, letters), False elsewhere (bone, whose bright patches sit in bright bone)."""
    gray = _gray(image)
    peak = float(gray.max()) if gray.size else 0.0
    if peak <= 0:
        return np.zeros(gray.shape, bool)
    labels, count = ndimage.label(gray >= BRIGHT * peak)
    index = np.arange(count + 1)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    inside = np.bincount(labels.ravel(), gray.ravel(), minlength=count + 1) / np.maximum(sizes, 1)
    # a ring a few px wide around each blob: the dilated labels where there was no blob
    ring = np.where(labels == 0, ndimage.grey_dilation(labels, size=(RING, RING)), 0)
    ring_n = np.bincount(ring.ravel(), minlength=count + 1)
    around = np.bincount(ring.ravel(), gray.ravel(), minlength=count + 1) / np.maximum(ring_n, 1)
    small = (sizes >= MIN_BLOB * gray.size) & (sizes < BLOB_AREA * gray.size)
    keep = small & (inside - around >= CONTRAST * peak) & (ring_n > 0) & (index > 0)
    return keep[labels]


def evidence_warning(image: np.ndarray, cam: np.ndarray) -> str:
    """Why the strongest evidence of ``cam`` looks outside the body, or "" when it does not."""
    cam = np.asarray(cam, dtype=np.float64)
    if cam.shape != _gray(image).shape:
        raise ValueError(f"Grad-CAM {cam.shape} and image {_gray(image).shape} differ in size")
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 0:
        return ""  # no evidence at all: nothing to place
    hot = cam >= HOT * peak
    n_hot = int(hot.sum())
    on_border = int((hot & border_band(cam.shape)).sum()) / n_hot
    if on_border > 0.5:
        return (
            f"{on_border:.0%} of the strongest Grad-CAM evidence lies in the outer "
            f"{BORDER:.0%} of the image, at its border rather than in the body"
        )
    blobs = bright_blobs(image)
    if blobs.any():
        near = max(1, round(NEAR * min(cam.shape)))
        around = ndimage.binary_dilation(blobs, iterations=near)
        on_blob = int((hot & around).sum()) / n_hot
        if on_blob >= 1 / 3:
            return (
                f"{on_blob:.0%} of the strongest Grad-CAM evidence lies on a small very bright "
                "spot (a side marker, text or a device?) rather than in the body"
            )
    return ""
