"""`cnnlab train` options come from TrainConfig's declarations: same flags, checked values."""

from __future__ import annotations

import pytest

from cnnlab import fmnist
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import OPTIMIZERS, PRESETS, resolve_config
from cnnlab_testing import cnnlab


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--l2", "nan"], "invalid --l2: must be a finite number, got nan"),
        (["--lr", "inf"], "invalid --lr: must be a finite number, got inf"),
        (["--lr", "1e400"], "invalid --lr: must be a finite number, got inf"),
        (["--lr", "inf"], "invalid --lr: must be a finite number, got inf"),
        (["--seed", "-1"], "invalid --seed: must be >= 0, got -1"),
        (["--epochs", "0"], "invalid --epochs: must be >= 1, got 0"),
        (["--epochs", "100000"], "invalid --epochs: must be <= 1000, got 100000"),
        (["--filters", "32,0"], "invalid --filters: each number must be >= 1, got 0"),
    ],
)
def test_out_of_range_values_are_one_line_naming_the_flag(flags, message, tmp_path):
    result = cnnlab("train", *flags, "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"cnnlab: error: {message}"]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_lists_the_choices_of_every_enumerated_option():
    out = cnnlab("train", "--help").stdout
    assert f"[{'|'.join(OPTIMIZERS)}]" in out
    for choices in ("[constant|cosine|onecycle]", "[valid|same]", "[max|avg]", "[relu|gelu|"):
        assert choices in out
    assert f"[{'|'.join(PRESETS)}]" in out


@pytest.fixture
def given_fields(monkeypatch):
    """The config fields `cnnlab train ARGS` hands to `fmnist.train`; stops before any training."""
    seen: dict = {}

    def record(preset, *, out, data_dir, progress, overwrite, threads, tensorboard, **fields):
        seen.update({k: v for k, v in fields.items() if v is not None}, preset=preset)
        raise CnnlabError("recorded")

    monkeypatch.setattr(fmnist, "train", record)

    def given(*args: str) -> dict:
        seen.clear()
        with pytest.raises(SystemExit):
            main(["train", *args])
        return dict(seen)

    return given


def test_the_flags_of_earlier_releases_still_set_their_fields(given_fields):
    assert given_fields(
        "--preset", "tutorial", "--filters", "16, 32,64", "--flatten", "--batch-norm",
        "--augment", "--no-flip", "--tta", "--tta-shift", "1", "--kernel-size", "5",
        "--first-kernel-size", "7", "--padding", "same", "--optimizer", "sgd", "--lr", "0.1",
    ) == {
        "preset": "tutorial", "filters": (16, 32, 64), "global_pool": False, "batch_norm": True,
        "augment": True, "flip": False, "tta": True, "tta_shift": 1, "kernel_size": 5,
        "first_kernel_size": 7, "padding": "same", "optimizer": "sgd", "lr": 0.1,
    }  # fmt: skip
    assert given_fields("--global-pool", "--no-batch-norm", "--no-augment") == {
        "preset": "fast", "global_pool": True, "batch_norm": False, "augment": False,
    }  # fmt: skip


def test_flags_left_out_keep_the_presets_values(given_fields):
    fields = given_fields("--preset", "strong", "--epochs", "2")
    assert fields == {"preset": "strong", "epochs": 2}
    config = resolve_config(fields.pop("preset"), **fields)
    assert config == PRESETS["strong"].replace(epochs=2)
