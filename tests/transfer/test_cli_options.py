"""`cnnlab transfer train` options come from TransferConfig's declarations."""

from __future__ import annotations

import pytest

from cnnlab import transfer
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.transfer.config import MONITORS, STRATEGIES, TransferConfig
from cnnlab_testing import CliResult, run_main


def cnnlab(*args: str, cwd=None) -> CliResult:
    """``cnnlab ARGS`` in this process as a child would see it (``run_main``), from ``cwd``."""
    return run_main(*args, cwd=cwd)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--lr", "inf"], "invalid --lr: must be a finite number, got inf"),
        (["--lr", "inf"], "invalid --lr: must be a finite number, got inf"),
        (["--seed", "-1"], "invalid --seed: must be >= 0, got -1"),
        (["--epochs", "0"], "invalid --epochs: must be >= 1, got 0"),
        (["--mixup", "nan"], "invalid --mixup: must be a finite number, got nan"),
        (["--image-size", "8"], "invalid --image-size: must be >= 16, got 8"),
        (["--val-size", "0.5", "--test-size", "0.5"], "invalid --test-size: val + test must"),
    ],
)
def test_out_of_range_values_are_one_line_naming_the_flag(flags, message, folder, tmp_path):
    result = cnnlab("transfer", "train", str(folder), "--out", "run", *flags, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cnnlab: error: {message}"), result.stderr
    assert not (tmp_path / "run").exists()


def test_help_lists_the_choices_and_defaults(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    out = cnnlab("transfer", "train", "--help").stdout
    assert f"[{'|'.join(STRATEGIES)}]" in out and f"[{'|'.join(MONITORS)}]" in out
    assert "[adam|adamw|sgd]" in out and "[default: 224]" in out


@pytest.fixture
def built_config(monkeypatch, tmp_path):
    """The config `cnnlab transfer train DATA --out OUT ARGS` builds; stops before training."""
    seen: list[TransferConfig] = []

    def record(config=None, *, threads=None, **fields):  # out, data_dir, ... in fields
        for argument in ("out", "data_dir", "overwrite", "progress", "tensorboard", "mlflow"):
            del fields[argument]
        seen.append(TransferConfig(threads=threads, **fields))
        raise CnnlabError("recorded")

    monkeypatch.setattr(transfer, "train", record)

    data = tmp_path / "data"  # the CLI checks the folder (and --out beside it) first
    data.mkdir()

    def built(*args: str) -> TransferConfig:
        seen.clear()
        with pytest.raises(SystemExit):
            main(["transfer", "train", str(data), "--out", str(tmp_path / "r"), *args])
        return seen[0]

    return built


def test_no_flags_build_the_default_config(built_config):
    assert built_config() == TransferConfig()


def test_the_flags_of_earlier_releases_still_set_their_fields(built_config):
    config = built_config(
        "--arch", "resnet50", "--weights", "none", "--image-size", "64", "--strategy", "gradual",
        "--no-cache-features", "--dedupe", "--no-channels-last", "--early-stopping", "3",
        "--limit", "20", "--threads", "2", "--near-threshold", "-1", "--lr", "0.01",
    )  # fmt: skip
    assert config == TransferConfig(
        arch="resnet50", weights="none", image_size=64, strategy="gradual", cache_features=False,
        dedupe=True, channels_last=False, early_stopping=3, limit=20, threads=2,
        near_threshold=-1, lr=0.01,
    )  # fmt: skip
