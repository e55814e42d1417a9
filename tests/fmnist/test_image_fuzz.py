"""Fuzz (issue 27): any bytes in a file given to ``cnnlab predict`` end in a 28 x 28 picture
or in the project's error, never in another exception. Seeds are real files of the formats
Pillow reads plus the QOI and DDS files that once escaped; Hypothesis truncates and
corrupts them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.inference import load_image
from image_fuzzing import corrupted


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except CnnlabError:
            return
    assert image.shape == (28, 28) and np.isfinite(image).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_image_files_end_in_the_projects_error(data, malformed):
    check(data.draw(corrupted([malformed.QOI, malformed.dds(), malformed.png(20000, 1)])))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_end_in_the_projects_error(data):
    check(data)
