"""Settings and fixtures shared by every test process.

Hypothesis explores new random examples on each local run; CI (``CI=true``, as ``.ci/run``
sets it) replays a fixed sequence, so a submission is judged on the same examples every time.

Parallel runs (``make test``: pytest-xdist, ``--dist loadgroup``): a test that uses one of the
expensive shared fixtures below runs in that fixture's group, on one worker, so the fixture is
built once, not once per worker; so do the tests of a module with a module-scoped fixture. The
``serial``, ``torchrun`` and ``browser`` markers (servers, process groups, browsers: heavy on 2
cores) put a test in one group with the others so marked.
"""

import os

import pytest
from hypothesis import settings

from cnnlab_testing import headless_chromium

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

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
    if any(item.get_closest_marker(m) for m in SERIAL_MARKERS):
        return "serial"
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in names - CHEAP_FIXTURES:
        fixture = defs.get(name, [None])[-1]
        if fixture is not None and fixture.scope == "module":
            return item.nodeid.split("::")[0]  # the module: its fixtures are built once
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
