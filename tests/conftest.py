"""Settings shared by every test process.

Hypothesis explores new random examples on each local run; CI (``CI=true``, as ``.ci/run``
sets it) replays a fixed sequence, so a submission is judged on the same examples every time.
"""

import os
import struct
import zlib

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


class MalformedImages:
    """Image files that broke a decoder or a memory bound (issue 27), as bytes: the same
    shapes for both pipelines' fault tests and fuzzers."""

    @staticmethod
    def png(width: int, height: int) -> bytes:
        """A black greyscale PNG of any size, built row by row: a few hundred bytes for
        20000 x 1, never width x height in memory."""
        row, packer = b"\x00" * (width + 1), zlib.compressobj(9)  # filter byte, then pixels
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()

        def chunk(kind: bytes, body: bytes) -> bytes:
            return (
                struct.pack(">I", len(body))
                + kind
                + body
                + struct.pack(">I", zlib.crc32(kind + body))
            )

        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", idat)
            + chunk(b"IEND", b"")
        )

    # A 16 x 16 QOI whose first chunk ends early: Pillow 12 raises IndexError.
    QOI = b"qoif" + (16).to_bytes(4, "big") * 2 + bytes.fromhex("030031")

    @staticmethod
    def dds(fourcc: bytes = b"ABCD") -> bytes:
        """A 16 x 16 DDS of an unknown pixel format: Pillow 12 raises NotImplementedError."""
        header = struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + bytes(44)
        pixel_format = struct.pack("<2I", 32, 0x4) + fourcc + bytes(20)
        return b"DDS " + header + pixel_format + bytes(20) + bytes(256)


@pytest.fixture(scope="session")
def malformed() -> type[MalformedImages]:
    return MalformedImages
