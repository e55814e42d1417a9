"""The Fashion-MNIST loader: finds, verifies and parses IDX files, or says exactly why not."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import fashion_mnist as fm
from cnnlab.errors import CnnlabError

N_TRAIN, N_TEST = 30, 12
NAMES = [name for name, _ in fm.OFFICIAL.checksums]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, N_TRAIN).astype(np.uint8),
        rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, N_TEST).astype(np.uint8),
    )


def write_files(directory: Path, raws: dict[str, bytes] | None = None) -> fm.Source:
    """Write gzipped IDX files; returns a Source whose checksums match what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    if raws is None:
        arrays = synthetic_arrays()
        magics = [fm.IMAGE_MAGIC, fm.LABEL_MAGIC] * 2
        raws = {n: idx_bytes(a, m) for n, a, m in zip(NAMES, arrays, magics, strict=True)}
    checksums = []
    for name in NAMES:
        data = gzip.compress(raws[name], mtime=0)
        (directory / name).write_bytes(data)
        checksums.append((name, hashlib.sha256(data).hexdigest()))
    return fm.Source(checksums=tuple(checksums), n_train=N_TRAIN, n_test=N_TEST)


def good_raws() -> dict[str, bytes]:
    arrays = synthetic_arrays()
    magics = [fm.IMAGE_MAGIC, fm.LABEL_MAGIC] * 2
    return {n: idx_bytes(a, m) for n, a, m in zip(NAMES, arrays, magics, strict=True)}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real places: empty cache, no system folder, no env override, no network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLAB_CACHE_DIR", raising=False)  # it would come first
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)
    monkeypatch.delenv("CNNLAB_OFFLINE", raising=False)
    monkeypatch.delenv("CNNLAB_FASHION_MNIST_MIRROR", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    fm._load_cached.cache_clear()
    yield
    fm._load_cached.cache_clear()


def test_good_files_give_the_written_arrays(tmp_path):
    source = write_files(tmp_path / "d")
    data = fm.load_fashion_mnist(tmp_path / "d", source=source, download=False)
    x_train, y_train, x_test, y_test = synthetic_arrays()
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert not data.x_train.flags.writeable  # shared through the cache: must not be mutated


def test_second_call_is_served_from_the_in_process_cache(tmp_path):
    source = write_files(tmp_path / "d")
    first = fm.load_fashion_mnist(tmp_path / "d", source=source, download=False)
    for name in NAMES:  # the files vanish; the cached arrays are still returned
        (tmp_path / "d" / name).unlink()
    assert fm.load_fashion_mnist(tmp_path / "d", source=source, download=False) is first


def test_environment_variable_and_cache_are_searched(tmp_path, monkeypatch):
    source = write_files(tmp_path / "env")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "env"))
    assert fm.load_fashion_mnist(source=source, download=False).x_test.shape == (N_TEST, 28, 28)
    fm._load_cached.cache_clear()
    monkeypatch.delenv("CNNLAB_DATA_DIR")
    write_files(fm.default_cache_dir())
    assert fm.load_fashion_mnist(source=source, download=False).y_train.shape == (N_TRAIN,)


def _load_error(directory: Path | None, source: fm.Source) -> str:
    with pytest.raises(CnnlabError) as info:
        fm.load_fashion_mnist(directory, source=source, download=False)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_wrong_checksum_is_reported(tmp_path):
    source = write_files(tmp_path / "d")
    bad = dict(source.checksums)
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    message = _load_error(tmp_path / "d", fm.Source(tuple(bad.items()), N_TRAIN, N_TEST))
    assert "wrong checksum for t10k-labels-idx1-ubyte.gz" in message


def test_truncated_file_is_reported(tmp_path):
    raws = good_raws()
    raws["train-images-idx3-ubyte.gz"] = raws["train-images-idx3-ubyte.gz"][:-100]
    source = write_files(tmp_path / "d", raws)  # checksum matches: the parser must catch it
    assert "train-images-idx3-ubyte.gz is truncated" in _load_error(tmp_path / "d", source)


def test_truncated_gzip_stream_is_reported(tmp_path):
    source = write_files(tmp_path / "d")
    path = tmp_path / "d" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    checksums = dict(source.checksums)
    checksums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    message = _load_error(tmp_path / "d", fm.Source(tuple(checksums.items()), N_TRAIN, N_TEST))
    assert "not a valid gzip file" in message


def test_wrong_magic_is_reported(tmp_path):
    raws = good_raws()
    # label magic in an image file
    raws["t10k-images-idx3-ubyte.gz"] = (
        fm.LABEL_MAGIC.to_bytes(4, "big") + raws["t10k-images-idx3-ubyte.gz"][4:]
    )
    source = write_files(tmp_path / "d", raws)
    message = _load_error(tmp_path / "d", source)
    assert f"t10k-images-idx3-ubyte.gz has magic number {fm.LABEL_MAGIC}" in message


def test_wrong_count_is_reported(tmp_path):
    source = write_files(tmp_path / "d")
    wrong = fm.Source(source.checksums, n_train=N_TRAIN + 1, n_test=N_TEST)
    assert "expected (31, 28, 28)" in _load_error(tmp_path / "d", wrong)


def test_error_lists_every_place_searched(tmp_path):
    message = _load_error(None, fm.OFFICIAL)
    assert message.startswith("Fashion-MNIST not found; tried: ")
    for place in (
        f"cache {fm.default_cache_dir()} (not present)",
        f"system {tmp_path / 'system'} (not present)",
        "download (disabled: offline)",
    ):
        assert place in message


@pytest.fixture
def good_cache():
    """A valid copy in the cache: what a named folder must never be silently replaced by."""
    return write_files(fm.default_cache_dir())


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda d: None, "(not present)"),
        (lambda d: d.mkdir(), "(missing train-images-idx3-ubyte.gz, "),
        (lambda d: d.write_text("a file"), "(not a folder)"),
        (lambda d: write_files(d, {**good_raws(), NAMES[3]: b"junk"}), "wrong checksum for t10k"),
    ],
    ids=["missing", "empty", "a file", "corrupt"],
)
def test_a_named_folder_is_used_alone_or_named_in_the_error(tmp_path, good_cache, damage, why):
    named = tmp_path / "mine"
    damage(named)
    message = _load_error(named, good_cache)
    assert message.startswith(f"Fashion-MNIST not found; tried: --data-dir {named} ")
    assert why in message and "used alone" in message
    assert str(fm.default_cache_dir()) not in message  # no other place was tried
    assert fm.load_fashion_mnist(source=good_cache, download=False).origin.place == "cache"


def test_the_environment_variable_is_a_named_folder_too(tmp_path, good_cache, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "gone"))
    message = _load_error(None, good_cache)
    assert f"$CNNLAB_DATA_DIR {tmp_path / 'gone'} (not present)" in message
    source = write_files(tmp_path / "given")  # --data-dir wins over the variable
    data = fm.load_fashion_mnist(tmp_path / "given", source=source, download=False)
    assert data.origin.place == "--data-dir"


def test_a_named_folder_is_never_downloaded_into(tmp_path, http_mirror):
    root, url = http_mirror
    source = write_files(root)
    with pytest.raises(CnnlabError, match="--data-dir"):
        fm.load_fashion_mnist(tmp_path / "empty", mirror=url, source=source, progress=False)
    assert not (tmp_path / "empty").exists() and not fm.default_cache_dir().exists()


def test_the_arrays_remember_where_they_came_from(tmp_path, good_cache):
    data = fm.load_fashion_mnist(source=good_cache, download=False)
    assert data.origin == fm.DataOrigin("cache", str(fm.default_cache_dir()), good_cache.checksums)
    assert data.origin.to_dict()["sha256"] == dict(good_cache.checksums)
    assert str(fm.default_cache_dir()) in data.origin.describe()


# -- download ---------------------------------------------------------------------------------


@pytest.fixture
def http_mirror(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/'mirror'."""
    root = tmp_path / "mirror"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_fills_the_cache_with_verified_files(http_mirror):
    root, url = http_mirror
    source = write_files(root)
    data = fm.load_fashion_mnist(mirror=url, source=source, progress=False)
    np.testing.assert_array_equal(data.y_test, synthetic_arrays()[3])
    assert data.origin.place == "download" and data.origin.path == str(fm.default_cache_dir())
    cache = fm.default_cache_dir()
    assert sorted(p.name for p in cache.iterdir()) == sorted(NAMES)  # no temporary left
    fm._load_cached.cache_clear()
    for name in NAMES:  # now offline: the cache alone serves the data
        (root / name).unlink()
    assert fm.load_fashion_mnist(mirror=url, source=source, download=False).x_train.shape[0] == 30


def test_corrupted_download_is_rejected_and_not_kept(http_mirror):
    root, url = http_mirror
    source = write_files(root)
    served = root / "t10k-images-idx3-ubyte.gz"
    served.write_bytes(served.read_bytes()[:-5] + b"XXXXX")
    with pytest.raises(CnnlabError, match="downloaded t10k-images-idx3-ubyte.gz has a wrong"):
        fm.load_fashion_mnist(mirror=url, source=source, progress=False)
    cache = fm.default_cache_dir()
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_unreachable_mirror_is_reported_as_offline(http_mirror):
    root, url = http_mirror
    source = write_files(root)
    (root / NAMES[0]).unlink()  # 404 for the first file
    with pytest.raises(CnnlabError, match="offline or unreachable: http://127.0.0.1"):
        fm.load_fashion_mnist(mirror=url, source=source, progress=False)


def test_offline_environment_variable_disables_download(http_mirror, monkeypatch):
    root, url = http_mirror
    source = write_files(root)
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    with pytest.raises(CnnlabError, match="download \\(disabled: offline\\)"):
        fm.load_fashion_mnist(mirror=url, source=source)


# -- the real data set ------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    if not (fm.Path("/usr/share/datasets/fashion-mnist") / NAMES[0]).is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed (.ci/run installs it)")
    monkeypatch.setattr(fm, "SYSTEM_DIR", Path("/usr/share/datasets/fashion-mnist"))
    data = fm.load_fashion_mnist(download=False)
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert len(fm.CLASS_NAMES) == 10
