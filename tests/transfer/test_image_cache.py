"""The decoded-image cache: decoded once, ever; read through a memory map; never trusted blind.

Every test gives ``load_split`` a cache folder of its own and counts the calls to the decoder.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from cnnlab.caches import CACHE_ENV, cache_root
from cnnlab.errors import CnnlabError
from cnnlab.transfer.data import cache as image_cache
from cnnlab.transfer.data import folders as D
from cnnlab.transfer.data import images as IM
from cnnlab.transfer.data import mapped as mapped_images
from cnnlab.transfer.data.mapped import ImageRows, MappedRows

SRC = Path(__file__).resolve().parents[2] / "src"
SIZE = 32


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """One entry per image the cache decodes."""
    calls: list[int] = []
    real = image_cache.decode_sized

    def counting(data, size, max_pixels):
        calls.append(size)
        return real(data, size, max_pixels)

    monkeypatch.setattr(image_cache, "decode_sized", counting)
    return calls


def load(folder: Path, cache: Path, notes: list[str] | None = None, **kw) -> D.LoadedSplit:
    _, splits = D.discover(folder)
    return D.load_split(splits["train"], SIZE, cache_dir=cache, note=_append(notes), **kw)


def _append(notes):
    return None if notes is None else notes.append


def store_dir(cache: Path) -> Path:
    return cache / "images" / f"{SIZE}px"


def decoded_directly(paths) -> np.ndarray:
    return np.stack([IM.load_image(p, SIZE) for p in paths])


def test_a_second_run_on_the_same_files_decodes_nothing(folder, tmp_path, decodes):
    first = load(folder, tmp_path / "cache")
    assert len(decodes) == 40
    again = load(folder, tmp_path / "cache")
    assert len(decodes) == 40  # none more
    assert isinstance(again.images, ImageRows)
    assert np.array_equal(np.asarray(again.images), decoded_directly(again.paths))
    assert again.sha256 == first.sha256
    assert np.array_equal(again.dhash, first.dhash)


def test_a_copy_of_the_folder_elsewhere_shares_the_cached_images(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache")
    copy = shutil.copytree(folder, tmp_path / "renamed" / "copy")
    loaded = load(copy, tmp_path / "cache")
    assert len(decodes) == 40 and len(loaded) == 40


def test_a_file_replaced_with_the_same_size_and_mtime_is_decoded_again(
    folder, tmp_path, decodes, make_image
):
    rng = np.random.default_rng(5)
    target = folder / "a" / "scan.bmp"  # BMP: same dimensions, same file size
    Image.fromarray(make_image(0, rng)).save(target)
    load(folder, tmp_path / "cache")
    before = target.stat()
    Image.fromarray(make_image(1, rng)).save(target)  # new pixels...
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # ...the old mtime
    assert target.stat().st_size == before.st_size
    loaded = load(folder, tmp_path / "cache")
    assert len(decodes) == 42
    i = loaded.paths.index(target)
    assert np.array_equal(loaded.images[i], IM.load_image(target, SIZE))


def test_selecting_images_reads_none_and_keeps_the_map(folder, tmp_path):
    loaded = load(folder, tmp_path / "cache")
    keep = np.array([5, 0, 39])
    picked = loaded.select(keep)
    assert isinstance(picked.images, ImageRows) and picked.images.shape == (3, SIZE, SIZE, 3)
    assert np.array_equal(picked.images[1], loaded.images[0])
    assert np.array_equal(np.asarray(picked.images), decoded_directly(picked.paths))
    batch = picked.images[0:2]
    batch[:] = 0  # a copy: writable, and the cache is unchanged
    assert np.array_equal(picked.images[0], loaded.images[5])


def test_the_pixel_limit_of_a_later_run_applies_to_cached_images(folder, tmp_path, decodes):
    Image.new("L", (1000, 1000), 90).save(folder / "a" / "big.png")
    assert len(load(folder, tmp_path / "cache")) == 41
    strict = load(folder, tmp_path / "cache", max_pixels=800 * 800)
    assert len(decodes) == 41  # refused from the cache's record, not by decoding
    assert [Path(p).name for p, _ in strict.skipped] == ["big.png"]
    assert strict.skipped[0][1].startswith("too large (1000x1000 = 1,000,000 pixels")


def test_unreadable_files_are_skipped_every_run_with_their_reason(folder, tmp_path):
    (folder / "a" / "notes.txt").write_text("not an image\n")
    for _ in range(2):
        loaded = load(folder, tmp_path / "cache")
        assert [(Path(p).name, r) for p, r in loaded.skipped] == [
            ("notes.txt", "not an image Pillow can read")
        ]


# -- a damaged cache is rebuilt, never trusted ------------------------------------------------


def test_a_truncated_data_file_is_rebuilt_with_one_note(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache")
    data = store_dir(tmp_path / "cache") / "images.u8"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    notes: list[str] = []
    loaded = load(folder, tmp_path / "cache", notes)
    assert len(notes) == 1 and "is truncated" in notes[0] and "rebuilding" in notes[0]
    assert len(decodes) == 80
    assert np.array_equal(np.asarray(loaded.images), decoded_directly(loaded.paths))
    load(folder, tmp_path / "cache", notes)
    assert len(decodes) == 80 and len(notes) == 1  # the rebuilt cache is whole again


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(3))
    return buf.getvalue()


def _npz_without_generation() -> bytes:
    buf = io.BytesIO()
    empty = {"digest": np.zeros((0, 32), np.uint8), "wh": np.zeros((0, 2), np.uint32)}
    np.savez(buf, meta=np.array("{}"), dhash=np.zeros((0, 32), np.uint8),
             crc=np.zeros(0, np.uint32), **empty)  # fmt: skip
    return buf.getvalue()


@pytest.mark.parametrize(
    "garbage, why",
    [
        (b"", "unreadable"),
        (b"PK\x03\x04 not a zip", "unreadable"),
        (b"\x93NUMPY", "unreadable"),
        (_npy(), "unreadable"),
        (_npz_without_generation(), "malformed"),
    ],
)
def test_an_unreadable_index_is_rebuilt_with_one_note(folder, tmp_path, decodes, garbage, why):
    load(folder, tmp_path / "cache")
    (store_dir(tmp_path / "cache") / "index.npz").write_bytes(garbage)
    notes: list[str] = []
    loaded = load(folder, tmp_path / "cache", notes)
    assert len(notes) == 1 and f"index is {why}" in notes[0]
    assert len(loaded) == 40 and len(decodes) == 80


def test_a_corrupt_row_is_caught_by_its_checksum_and_decoded_again(folder, tmp_path, decodes):
    first = load(folder, tmp_path / "cache")
    row = int(first.images.rows[7])
    data = store_dir(tmp_path / "cache") / "images.u8"
    with open(data, "r+b") as f:  # flip a few bytes in the middle of one image
        f.seek(row * SIZE * SIZE * 3 + 500)
        f.write(b"\xff\x00\xff\x00")
    notes: list[str] = []
    loaded = load(folder, tmp_path / "cache", notes)
    assert notes == [f"image cache {store_dir(tmp_path / 'cache')}: 1 image(s) failed their "
                     "checksum; decoding them again"]  # fmt: skip
    assert len(decodes) == 41
    assert np.array_equal(loaded.images[7], IM.load_image(loaded.paths[7], SIZE))


def test_a_cache_made_by_another_pillow_is_rebuilt(folder, tmp_path, decodes, monkeypatch):
    load(folder, tmp_path / "cache")
    monkeypatch.setattr(PIL, "__version__", "0.1")
    notes: list[str] = []
    load(folder, tmp_path / "cache", notes)
    assert len(notes) == 1 and "pillow" in notes[0] and "(now 0.1)" in notes[0]
    assert len(decodes) == 80


def test_an_unwritable_cache_folder_falls_back_to_a_temporary_one(folder, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be\n")
    notes: list[str] = []
    loaded = load(folder, blocker, notes)
    assert len(notes) == 1 and "this run uses a temporary one" in notes[0]
    assert np.array_equal(np.asarray(loaded.images), decoded_directly(loaded.paths))
    assert blocker.read_text().startswith("a file")


def test_the_cache_folder_comes_from_the_option_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root(tmp_path / "flag") == tmp_path / "flag"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "cnnlab"


# -- runs at the same time --------------------------------------------------------------------

LOADER = """
import sys, time
from pathlib import Path
from cnnlab.transfer.data import cache as image_cache
from cnnlab.transfer.data import folders as D

real, calls = image_cache.decode_sized, []
def slow(*args):  # slow enough that both runs look for the images before either has them
    calls.append(1)
    time.sleep(0.05)
    return real(*args)
image_cache.decode_sized = slow
_, splits = D.discover(sys.argv[1])
loaded = D.load_split(splits["train"], 32, cache_dir=sys.argv[2])
print(len(calls), len(loaded), int(loaded.images[:].sum()))
"""


@pytest.mark.slow
def test_two_runs_at_once_decode_each_image_once_and_agree(folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-c", textwrap.dedent(LOADER), str(folder), str(tmp_path / "cache")]
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [r.communicate(timeout=120)[0].split() for r in runs]
    assert all(r.returncode == 0 for r in runs)
    decoded = sum(int(out[0]) for out in outs)
    assert decoded == 40  # one run decoded them all, the other found them
    assert outs[0][1:] == outs[1][1:] == [str(40), outs[0][2]]
    index = np.load(store_dir(tmp_path / "cache") / "index.npz")
    assert len(index["crc"]) == 40  # not 80: no image was appended twice


# -- reading through the map ------------------------------------------------------------------


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    pytest.skip("no RssFile in /proc/self/status (not Linux)")


@pytest.fixture
def disk_folder(tmp_path):
    """A folder on a disk, not a RAM disk: ``make test`` puts tmp_path on /dev/shm, where a
    mapped file's pages count as shared memory (RssShmem), never as RssFile."""
    disk = Path("/var/tmp")
    if not disk.is_dir():
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-test-", dir=disk))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("release_bytes, grows", [(1 << 20, False), (1 << 40, True)])
def test_reading_the_map_releases_its_pages(disk_folder, monkeypatch, release_bytes, grows):
    size, n = 64, 4096  # 12 KiB rows, 48 MiB in all
    path = disk_folder / "images.u8"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n * size * size * 3, np.uint8))
    monkeypatch.setattr(mapped_images, "RELEASE_BYTES", release_bytes)
    rows = ImageRows(MappedRows(path, n, size), np.arange(n))
    before = _rss_file_kb()
    total = sum(int(batch.sum()) for batch in (rows[i : i + 32] for i in range(0, n, 32)))
    grown_mib = (_rss_file_kb() - before) / 1024
    assert total > 0
    assert (grown_mib > 32) if grows else (grown_mib < 8), grown_mib


def test_a_map_sent_to_a_worker_process_reopens_the_same_file(folder, tmp_path):
    loaded = load(folder, tmp_path / "cache")
    again = pickle.loads(pickle.dumps(loaded.images))
    assert np.array_equal(np.asarray(again), np.asarray(loaded.images))
    data = store_dir(tmp_path / "cache") / "images.u8"
    shutil.copy(data, tmp_path / "copy.u8")
    os.replace(tmp_path / "copy.u8", data)  # the store rebuilt under the running run
    with pytest.raises(CnnlabError, match="was rebuilt while this run read it"):
        pickle.loads(pickle.dumps(loaded.images))


# -- duplicates in bounded memory -------------------------------------------------------------


def test_duplicate_search_in_small_chunks_finds_the_same_pairs(folder, tmp_path):
    shutil.copy(folder / "a" / "003.png", folder / "b" / "copy.png")
    loaded = load(folder, tmp_path / "cache")
    whole = D.find_duplicates([loaded])
    row_by_row = D.find_duplicates([loaded], budget=1)
    assert [vars(p) for p in row_by_row] == [vars(p) for p in whole]
    assert any(p.kind == "identical" for p in whole)
