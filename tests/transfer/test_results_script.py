"""docs/results/chest-xray-seeds.sh, the runs behind the published results over seeds: which
commands it runs, that it resumes without retraining a finished run, and that bad input is one
line and exit 2. A stand-in ``cnnlab`` records the calls; the recipes' flags themselves go
through the real command line in ``test_the_recipes_flags_parse``."""

import subprocess
from pathlib import Path

import pytest

from cnnlab_testing import recorded_calls, run_main, run_script, stand_in_cnnlab

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "results" / "chest-xray-seeds.sh"
STAND_IN = """#!/bin/bash
echo "$@" >> "$CALLS"
if [[ "$1 $2" == "transfer train" ]]; then
  while [[ $# -gt 0 ]]; do [[ "$1" == --out ]] && out=$2; shift; done
  mkdir -p "$out" && echo '{}' > "$out/metrics.json"
fi
"""


def _data(tmp_path: Path) -> Path:
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
    return tmp_path / "data"


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run_script(SCRIPT, tmp_path, *args, **env)


@pytest.fixture
def stand_in(tmp_path):
    return stand_in_cnnlab(tmp_path, STAND_IN)


def test_five_strategies_times_three_seeds_then_the_tables(tmp_path, stand_in):
    data = _data(tmp_path)
    done = _run(tmp_path, str(data), "runs", **stand_in)
    assert done.returncode == 0, done.stderr
    calls = recorded_calls(stand_in)
    trains = [c for c in calls if c[:2] == ["transfer", "train"]]
    outs = [c[c.index("--out") + 1] for c in trains]
    assert outs == [f"runs/{s}-s{seed}" for seed in (0, 1, 2)
                    for s in ("head", "partial", "lpft", "full", "random")]  # fmt: skip
    for c, out in zip(trains, outs, strict=True):
        assert c[2] == str(data) and c[c.index("--seed") + 1] == out[-1]
        assert {"--calibrate", "--dedupe", "--quiet"} <= set(c)
        assert c[c.index("--split-seed") + 1] == "0"  # one validation split for every seed
        assert c[c.index("--augment") + 1] == "radiograph"
        assert c[c.index("--arch") + 1] == "efficientnet_lite0"
        finetuned = any(name in out for name in ("lpft", "full", "random"))
        assert ("--ema" in c) == finetuned and ("--label-smoothing" in c) == finetuned
    random = next(c for c in trains if "random" in c[c.index("--out") + 1])
    assert random[random.index("--weights") + 1] == "none"
    compares = [c for c in calls if c[:2] == ["transfer", "compare"]]
    assert compares[0][2] == "--by-seed" and len(compares[0]) == 3 + 15 + 3
    pretraining = compares[1]  # random init against full, over seeds: the reference first
    assert pretraining[2] == "--by-seed" and pretraining[-3:] == ["--out", "runs/pretraining.md",
                                                                  "--overwrite"]  # fmt: skip
    assert pretraining[3:9] == [
        f"runs/{s}-s{seed}" for s in ("random", "full") for seed in range(3)
    ]
    assert sorted(c[c.index("--out") + 1] for c in compares[2:]) == sorted(
        f"runs/ensemble-{s}.md" for s in ("head", "partial", "lpft", "full", "random")
    )
    # a second run keeps every finished run and only redraws the tables
    Path(stand_in["CALLS"]).unlink()
    again = _run(tmp_path, str(data), "runs", **stand_in)
    assert again.returncode == 0 and again.stdout.count("kept runs/") == 15
    assert not [c for c in recorded_calls(stand_in) if c[:2] == ["transfer", "train"]]


def test_missing_data_or_command_is_one_line_and_exit_2(tmp_path, stand_in):
    done = _run(tmp_path, str(tmp_path / "nowhere"), "runs", **stand_in)
    assert done.returncode == 2 and not Path(stand_in["CALLS"]).exists()
    assert done.stderr.count("\n") == 1 and "has no train/ and test/ folders" in done.stderr
    assert not (tmp_path / "runs").exists()
    done = _run(tmp_path, str(_data(tmp_path)), "runs", CNNLAB=str(tmp_path / "none"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no cnnlab command" in done.stderr


def test_the_recipes_flags_parse(tmp_path, stand_in):
    """Every command the script writes gets past cnnlab's own option parsing: on folders with no
    class folders each stops at the data, not at a flag (an unknown flag would stop first)."""
    data = _data(tmp_path)
    one_seed = _run(tmp_path, str(data), "runs", SEEDS="0", **stand_in)
    assert one_seed.returncode == 0  # one seed: the tables, but no ensemble of one run
    assert one_seed.stdout.count("skipped, fewer than 2 runs") == 5
    assert not [c for c in recorded_calls(stand_in) if "--ensemble" in c]
    trains = [c for c in recorded_calls(stand_in) if c[:2] == ["transfer", "train"]]
    assert len(trains) == 5
    for call in trains:
        call[call.index("--out") + 1] += "-parsed"  # the stand-in made the run directories
        code, _, err = run_main(*call, cwd=tmp_path)
        assert code == 2 and "has no class folders" in err, (call, err)
    code, _, err = run_main(*trains[0], "--no-such-flag", cwd=tmp_path)
    assert code == 2 and "No such option" in err  # the control: a bad flag is caught first
