"""Image bytes to fuzz decoders with (issue 27), shared by both pipelines' fuzz tests: small
real files of every format this Pillow writes and of DICOM, and a Hypothesis strategy that
corrupts and truncates them (or the malformed files a test adds)."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from dicom_files import dicom_bytes


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
    # DICOM: 16-bit with a window and a rescale, and MONOCHROME1 (cnnlab.data.dicom)
    stored = rng.integers(0, 4096, (12, 16), dtype=np.uint16)
    out.append(dicom_bytes(stored, WindowCenter=2048, WindowWidth=1000, RescaleSlope=2))
    out.append(dicom_bytes(stored, photometric="MONOCHROME1"))
    return out


SEEDS = _seeds()


@st.composite
def corrupted(draw, extra: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS + extra)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])
