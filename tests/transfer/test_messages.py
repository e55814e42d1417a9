"""Errors that name the real problem (issue 26): the run's kind, a download unpacked one
folder too deep, a missing data folder before any weights are looked for."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.runs import require_run_dir
from cnnlab.transfer.data.folders import discover
from cnnlab_testing import run_main as cnnlab  # in this process, as a child would see it


def _images(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(folder / f"{i}.png")


def test_a_transfer_run_given_to_a_fashion_mnist_command_says_which_command_to_use(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(
        CnnlabError, match=r"is a transfer-learning run \(best.pt\).*cnnlab transfer"
    ):
        require_run_dir(tmp_path, "config.json", "model.keras")
    other = tmp_path / "fm"
    other.mkdir()
    (other / "model.keras").write_bytes(b"")
    with pytest.raises(CnnlabError, match=r"is a Fashion-MNIST run \(model.keras\)"):
        require_run_dir(other, "config.json", "best.pt")


def test_a_download_one_folder_too_deep_says_where_to_point(tmp_path):
    for split in ("train", "test"):
        for cls in ("NORMAL", "PNEUMONIA"):
            _images(tmp_path / "chest_xray" / split / cls)
    with pytest.raises(CnnlabError) as e:
        discover(tmp_path)
    assert f"point at {tmp_path / 'chest_xray'} instead" in str(e.value)
    assert discover(tmp_path / "chest_xray")[0] == ["NORMAL", "PNEUMONIA"]
    _images(tmp_path / "one" / "cats")  # a real single class still says so
    with pytest.raises(CnnlabError, match="has a single class folder"):
        discover(tmp_path / "one")


def test_transfer_train_on_a_missing_folder_names_the_folder_not_the_weights(tmp_path):
    done = cnnlab("transfer", "train", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "r"))
    assert done.returncode == 2
    assert done.stderr == f"cnnlab: error: data folder not found: {tmp_path / 'nonexistent'}\n"
    assert not (tmp_path / "r").exists()
