"""Fuzz (issue 27): any bytes through the transfer decoder end in a picture or in the
project's error, never in another exception. Seeds are real files of the formats Pillow
reads plus the QOI and DDS files that once escaped; Hypothesis truncates and corrupts them."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError
from cnnlab.transfer.data.images import decode
from image_fuzzing import corrupted


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
