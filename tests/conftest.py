"""Settings and fixtures shared by every test process.

Hypothesis explores new random examples on each local run; CI (``CI=true``, as ``.ci/run``
sets it) replays a fixed sequence, so a submission is judged on the same examples every time.

Parallel runs (``make test``: pytest-xdist, ``--dist loadgroup``): a test that uses one of the
expensive shared fixtures below runs in that fixture's group, on one worker, so the fixture is
built once, not once per worker; so do the tests of a module with a module-scoped fixture. The
``serial``, ``torchrun`` and ``browser`` markers (servers, process groups, browsers: heavy on 2
cores) put any other test in one group with the others so marked.
"""

import os
import struct
import zlib

import pytest
from hypothesis import settings

from cnnlab_testing import headless_chromium

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


# Session fixtures that train or run a whole study: worth keeping to one worker each.
SHARED_SESSION_FIXTURES = ("finished_fake_study", "fmnist_run", "trained_run")
SERIAL_MARKERS = ("serial", "torchrun", "browser")
# Module fixtures too cheap to be worth keeping a module on one worker.
# (transfer/test_faults' run_dir is an untrained checkpoint: its 17 subprocess tests would
# otherwise queue on one worker.)
CHEAP_FIXTURES = {"fashion", "fashion_test", "e2e", "chest", "garment", "make_patients",
                  "real_data", "run_dir"}  # fmt: skip


def _group(item) -> str | None:
    names = set(getattr(item, "fixturenames", ()))
    for name in SHARED_SESSION_FIXTURES:
        if name in names:
            return name
    # A module fixture before the serial markers: test_smoke_real's browser test in `serial`
    # built the module's real smoke study a second time, on another worker (90 s of CPU).
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in names - CHEAP_FIXTURES:
        fixture = defs.get(name, [None])[-1]
        if fixture is not None and fixture.scope == "module":
            return item.nodeid.split("::")[0]  # the module: its fixtures are built once
    if any(item.get_closest_marker(m) for m in SERIAL_MARKERS):
        return "serial"
    return None


def pytest_itemcollected(item):
    if item.get_closest_marker("xdist_group") is None and (group := _group(item)):
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """What pytest-xdist 3.8 means to do for ``--dist loadgroup``: a test's node id ends with
    ``@GROUP``, which its scheduler reads. xdist sets ``item._nodeid``, which pytest 9 no longer
    reads (its node id is ``item._id``), so every group was silently ignored; set that here."""
    option = config.option  # xdist sets `loadgroup` in its workers; without xdist: neither
    if not (getattr(option, "loadgroup", False) or getattr(option, "dist", None) == "loadgroup"):
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})  # fmt: skip
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = f"{item.nodeid}@{'_'.join(groups)}"


@pytest.fixture
def chromium():
    """A headless Chromium driver (see ``cnnlab_testing.headless_chromium``)."""
    with headless_chromium() as driver:
        yield driver
