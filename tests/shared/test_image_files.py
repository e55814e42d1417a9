"""The limits every image file meets before it is decoded (issue 27), in both pipelines:
bytes before reading, pixels, sides and aspect ratio from the header, and any decoder
exception as one reason."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from cnnlab.data import image_files as F
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize(
    ("width", "height", "why"),
    [
        (20000, 1, "aspect ratio"),  # repro 5: 101 bytes, 4.2 GB once padded to a square
        (1_000_000, 1, "side above"),  # repro 5: a traceback
        (F.MAX_SIDE + 1, 2000, "side above"),
        (12000, 12000, "above the limit of 89,478,485"),
        (0, 10, "empty image"),
    ],
)
def test_shapes_beyond_a_limit_are_refused_from_the_header(width, height, why):
    assert why in F.shape_problem(width, height)


@pytest.mark.parametrize("shape", [(8, 8), (4000, 3000), (F.MAX_ASPECT * 10, 10), (9000, 9000)])
def test_photographs_and_scans_are_within_every_limit(shape):
    assert F.shape_problem(*shape) is None


def test_a_wide_png_is_refused_before_a_pixel_is_decoded(malformed):
    with pytest.raises(F.ImageTooLarge, match="20000x1 px"):
        F.open_header(malformed.png(20000, 1))


def test_a_sparse_terabyte_file_is_refused_before_it_is_read(tmp_path):
    huge = tmp_path / "huge.png"  # repro 6: a MemoryError traceback in transfer predict
    with open(huge, "wb") as f:
        f.truncate(2**40)
    with pytest.raises(F.ImageTooLarge, match="larger than 320 MiB"):
        F.read_limited(huge)


def test_a_fifo_is_refused_instead_of_read_forever(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(F.ImageRefused, match="not a regular file"):
        F.read_limited(tmp_path / "pipe.png")


def test_every_decoder_exception_becomes_the_projects_error(malformed):
    for data, name in [(malformed.QOI, "IndexError"), (malformed.dds(), "NotImplementedError")]:
        with pytest.raises(CnnlabError, match=name), F.decoding(), F.open_header(data) as im:
            im.load()


def test_the_decoder_error_is_also_a_value_error_as_the_transfer_callers_expect():
    with pytest.raises(ValueError, match="not an image Pillow can read"), F.decoding():
        Image.open(__file__)


def test_pillows_own_limit_is_restored_after_a_header_is_read(malformed):
    before = Image.MAX_IMAGE_PIXELS
    F.open_header(malformed.png(64, 64)).close()
    assert before == Image.MAX_IMAGE_PIXELS
