"""Contrast normalisation (CLAHE, equalisation), checked numerically against its definition."""

import numpy as np
import pytest

from cnnlab.transfer.data.contrast import (
    clahe,
    contrasted,
    equalize,
    normalize_contrast,
    tile_luts,
)

RNG = np.random.default_rng(0)


def _low_contrast(size=64):
    """A smooth scene squeezed into grey levels 100-120: a ramp and a brighter disc."""
    y, x = np.mgrid[:size, :size]
    scene = x / size + 0.8 * (((x - 40) ** 2 + (y - 24) ** 2) < 150)
    return (100 + 20 * scene / scene.max()).round().astype(np.uint8)


def _local_contrast(img):
    return np.abs(np.diff(img.astype(int), axis=1)).mean()


def test_equalize_spreads_a_low_contrast_image_over_the_whole_range():
    img = _low_contrast()
    out = equalize(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert int(out.min()) == 0 and int(out.max()) == 255 and out.std() >= 10 * img.std()


def test_clahe_raises_local_contrast_about_as_much_as_its_clip_limit_allows():
    img = _low_contrast(224)
    out = clahe(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    # a clip limit of 2 caps the gain near 3 (2, plus the spread excess): local steps grow
    # 2-4x (with the blend between tiles), not a full-range stretch of noise
    assert 2 <= _local_contrast(out) / _local_contrast(img) <= 4
    assert out.std() > img.std()


def test_equalize_maps_the_darkest_level_to_0_the_brightest_to_255_in_order():
    img = _low_contrast()
    out = equalize(img)
    assert out[img == img.min()].max() == 0 and out[img == img.max()].min() == 255
    order = np.argsort(img.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()  # one monotone mapping


def test_a_constant_image_stays_constant():
    flat = np.full((40, 40), 90, np.uint8)
    assert np.ptp(clahe(flat)) == 0 and np.array_equal(equalize(flat), flat)


def test_each_tile_mapping_is_monotone_and_its_gain_is_capped_by_the_clip_limit():
    img = RNG.integers(0, 256, (64, 64)).astype(np.uint8)
    img[:32, :32] = 128  # a flat tile: unclipped, its mapping would jump 0 -> 255 at 128
    luts, th, tw = tile_luts(img, tiles=4, clip_limit=2.0)
    steps = np.diff(luts, axis=2)
    assert (steps >= 0).all()
    n = th * tw
    # a bin holds at most 2x the mean count, plus its share of the spread excess
    assert steps.max() <= (2.0 * n / 256 + n / 256) * 255 / n + 1e-9
    unclipped, _, _ = tile_luts(img, tiles=4, clip_limit=0)
    assert np.diff(unclipped[0, 0]).max() == pytest.approx(255)


def test_one_tile_without_clip_is_the_images_cumulative_histogram():
    img = RNG.integers(0, 256, (30, 30)).astype(np.uint8)
    cdf = np.bincount(img.ravel(), minlength=256).cumsum()
    expected = (cdf * 255 / img.size)[img]
    out = clahe(img, tiles=1, clip_limit=0)
    assert np.abs(out - expected).max() <= 0.5 + 1e-4  # rounded (in float32)


def test_clahe_blends_the_four_nearest_tiles_bilinearly():
    """A slow reference, pixel by pixel, from the definition: tile centres at
    ((i + 0.5) * tile); outside the outer centres the nearest tile alone."""
    img = RNG.integers(0, 256, (20, 28)).astype(np.uint8)
    tiles = 4
    luts, th, tw = tile_luts(img, tiles, 2.0)
    expected = np.zeros(img.shape)
    for r in range(img.shape[0]):
        for c in range(img.shape[1]):
            fy, fx = (r + 0.5) / th - 0.5, (c + 0.5) / tw - 0.5
            value = 0.0
            for ty, wy in (
                (np.floor(fy), 1 - (fy - np.floor(fy))),
                (np.floor(fy) + 1, fy - np.floor(fy)),
            ):
                for tx, wx in (
                    (np.floor(fx), 1 - (fx - np.floor(fx))),
                    (np.floor(fx) + 1, fx - np.floor(fx)),
                ):
                    i, j = int(min(max(ty, 0), tiles - 1)), int(min(max(tx, 0), tiles - 1))
                    value += wy * wx * luts[i, j, img[r, c]]
            expected[r, c] = value
    out = clahe(img, tiles, 2.0).astype(int)
    assert np.abs(out - np.rint(expected)).max() <= 1  # float32 rounding at .5


def test_an_image_not_divisible_into_tiles_is_padded_not_cropped():
    img = _low_contrast(37)
    out = clahe(img)
    assert out.shape == (37, 37) and np.ptp(out) > np.ptp(img)


def test_grey_rgb_stays_grey_and_colour_is_normalised_per_channel():
    grey = np.repeat(_low_contrast()[..., None], 3, axis=2)
    out = normalize_contrast(grey, "clahe")
    assert out.shape == grey.shape and (out[..., 0] == out[..., 2]).all()
    assert np.array_equal(out[..., 0], clahe(grey[..., 0]))
    colour = RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    out = normalize_contrast(colour, "equalize")
    assert all(np.array_equal(out[..., c], equalize(colour[..., c])) for c in range(3))
    batch = np.stack([grey, grey])
    assert np.array_equal(normalize_contrast(batch, "clahe")[1], normalize_contrast(grey, "clahe"))
    assert normalize_contrast(grey, "none") is grey and contrasted(batch, "none") is batch
