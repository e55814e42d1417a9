"""Fuzz (issue 27): any bytes through the transfer decoder end in a picture or in the
project's error, never in another exception. Seeds are real files of the formats Pillow
reads plus the QOI and DDS files that once escaped; Hypothesis truncates and corrupts them."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.transfer.data.images import decode


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA", "QOI"):
        buf = io.BytesIO()
        try:
            picture.save(buf, fmt)
        except (KeyError, OSError):  # a format this Pillow cannot write
            continue
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def corrupted(draw, extra: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS + extra)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


def check(data: bytes) -> None:
    try:
        image = decode(data, 32)
    except CnnlabError:
        return
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_image_files_end_in_the_projects_error(data, malformed):
    check(data.draw(corrupted([malformed.QOI, malformed.dds(), malformed.png(64, 1)])))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_end_in_the_projects_error(data):
    check(data)
