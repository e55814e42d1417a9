"""The Grad-CAM warning of the serve page: heat at the image border or on a small bright marker
is named; heat in the body, even beside a marker, is not."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.serve.cam_check import border_band, bright_blobs, evidence_warning

SIDE = 224
MARKER = (slice(40, 52), slice(150, 160))  # an "R" of 12 x 10 px, inside the border band


def chest(marker: bool = True) -> np.ndarray:
    """A grey body on black, two darker lungs, and a saturated side marker."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    image = np.zeros((SIDE, SIDE, 3), np.uint8)
    body = ((yy - 120) / 95) ** 2 + ((xx - 112) / 85) ** 2 < 1
    image[body] = 130
    for cx in (75, 149):
        image[((yy - 120) / 60) ** 2 + ((xx - cx) / 28) ** 2 < 1] = 60
    if marker:
        image[MARKER] = 255
    return image


def heat_at(y: int, x: int, sigma: float = 10) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


def test_heat_in_a_lung_raises_no_warning_even_beside_a_marker():
    assert evidence_warning(chest(), heat_at(120, 75)) == ""
    assert evidence_warning(chest(), heat_at(80, 150)) == ""


def test_heat_in_a_corner_is_named_as_border_evidence():
    warning = evidence_warning(chest(), heat_at(6, 6))
    assert "outer 10% of the image" in warning and "border" in warning


def test_heat_on_the_side_marker_is_named():
    warning = evidence_warning(chest(), heat_at(46, 155))
    assert "small very bright spot" in warning and "marker" in warning


def test_a_large_bright_region_is_not_a_marker():
    image = chest(marker=False)
    image[90:150, 90:150] = 250  # 7% of the image: a bone or the heart, not a letter
    assert not bright_blobs(image)[120, 120]
    assert evidence_warning(image, heat_at(120, 120)) == ""


def test_a_bright_patch_of_bone_is_not_a_marker_but_a_letter_on_dark_ground_is():
    image = chest(marker=False)
    image[60:160, 100:124] = 215  # the spine, brightest in small patches
    image[100:108, 108:116] = 255
    assert not bright_blobs(image).any()
    assert evidence_warning(image, heat_at(104, 112)) == ""
    image[MARKER] = 255
    assert bright_blobs(image)[MARKER].all()


def test_the_border_band_is_the_outer_tenth_of_each_side():
    band = border_band((100, 200))
    assert band[9, 100] and not band[10, 100] and band[50, 19] and not band[50, 20]
    assert band.mean() == pytest.approx(1 - 0.8 * 0.8)


def test_an_empty_map_places_nothing_and_mismatched_sizes_are_refused():
    assert evidence_warning(chest(), np.zeros((SIDE, SIDE))) == ""
    with pytest.raises(ValueError, match="differ in size"):
        evidence_warning(chest(), np.zeros((SIDE, SIDE + 1)))
