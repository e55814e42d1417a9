"""``cnnlab study plan`` ends with ``total: N trials, M training images`` (a contract that
scripts parse), then an estimate of the wall time from a throughput measured on this machine
and cached; ``--no-measure`` skips the measurement and says so."""

import json
import re

import pytest

from cnnlab.study import load_spec
from cnnlab.study.estimate import Throughput, cache_file, machine_key, wall_seconds
from cnnlab.study.run import DEFAULT_WORKERS, default_threads

TOTAL = re.compile(r"^total: (\d+) trials, (\d+) training images$")


def _expected_total(profile):
    """Counted here from the planned trials, independently of cnnlab's own sum: each distinct
    trial trains train_limit images (else the 60,000 less its validation split) per epoch."""
    trials, _ = load_spec(profile=profile).plan()
    images = 0
    for t in trials:
        c = t.config
        per_epoch = c["train_limit"] if c["train_limit"] is not None else 60_000 - c["val_size"]
        images += per_epoch * c["epochs"]
    return len(trials), images


def _plan(run_cli, tmp_path, *args):
    # an empty CNNLAB_CACHE_DIR: a transfer test run earlier in the session sets it
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "CNNLAB_CACHE_DIR": ""}
    proc = run_cli("study", "plan", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


@pytest.mark.parametrize("profile", ["smoke", "quick"])
def test_the_total_line_is_exact(run_cli, tmp_path, profile):
    lines = _plan(run_cli, tmp_path, "--profile", profile, "--no-measure")
    match = TOTAL.match(lines[-2])
    assert match, lines[-2]
    assert (int(match[1]), int(match[2])) == _expected_total(profile)
    assert lines[-1] == (
        "estimated wall time: not measured (--no-measure, and no cached measurement)"
    )
    assert not (tmp_path / "cache").exists()  # nothing measured, nothing written


def test_quick_trains_at_most_two_and_a_half_million_images():
    trials, images = _expected_total("quick")
    assert images <= 2_500_000


def test_the_estimate_uses_the_cached_throughput_of_this_machine(run_cli, tmp_path):
    threads = default_threads(DEFAULT_WORKERS)
    path = tmp_path / "cache" / "cnnlab" / "throughput.json"
    path.parent.mkdir(parents=True)
    entry = {"train": {"32": 500.0, "128": 1000.0, "512": 1500.0}, "infer": 5000.0,
             "trial_overhead": 2.0, "epoch_overhead": 0.5}  # fmt: skip
    path.write_text(json.dumps({machine_key(threads, DEFAULT_WORKERS): entry}))
    lines = _plan(run_cli, tmp_path, "--profile", "smoke")
    assert TOTAL.match(lines[-2])
    rate = Throughput.from_entry(entry, machine_key(threads, DEFAULT_WORKERS), cached=True)
    seconds = wall_seconds(load_spec(profile="smoke").plan()[0], rate, DEFAULT_WORKERS)
    minutes, rest = divmod(round(seconds), 60)
    assert lines[-1].startswith(f"estimated wall time: {minutes}m{rest:02d}s with 2 workers")
    assert "1,000 training images/s per worker at batch size 128" in lines[-1]
    assert f"cached in {path}" in lines[-1]


def test_throughput_is_interpolated_between_measured_batch_sizes():
    rate = Throughput({32: 400.0, 128: 1000.0, 512: 1600.0}, 4000.0, "k")
    assert rate.train_rate(128) == 1000.0
    assert rate.train_rate(64) == pytest.approx(700.0)  # half-way in log2(batch size)
    assert rate.train_rate(256) == pytest.approx(1300.0)
    assert rate.train_rate(8) == 400.0 and rate.train_rate(4096) == 1600.0  # nearest outside


def test_a_trial_costs_its_images_its_evaluations_and_its_overheads():
    rate = Throughput({128: 1000.0}, 5000.0, "k", trial_overhead=3.0, epoch_overhead=0.5)
    spec = load_spec(profile="smoke")
    trial = next(t for t in spec.plan()[0] if t.config["train_limit"] == 500)
    # 500 images x 1 epoch at 1000/s; 500 validation + 500 clean + 10,000 test at 5000/s
    expected = 0.5 + (1000 + 10_000) / 5000 + 3.0 + 0.5
    assert wall_seconds([trial], rate, 1) == pytest.approx(expected)
    assert wall_seconds([trial, trial], rate, 2) == pytest.approx(expected)


def test_the_cache_lives_under_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNLAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_file() == tmp_path / "cnnlab" / "throughput.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_file().parts[-3:] == (".cache", "cnnlab", "throughput.json")
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "own"))  # one root for every cache
    assert cache_file() == tmp_path / "own" / "throughput.json"


def test_an_estimate_measured_on_a_busy_machine_says_so(run_cli, tmp_path):
    threads = default_threads(DEFAULT_WORKERS)
    path = tmp_path / "cache" / "cnnlab" / "throughput.json"
    path.parent.mkdir(parents=True)
    entry = {"train": {"32": 500.0, "128": 1000.0, "512": 1500.0}, "infer": 5000.0}
    key = machine_key(threads, DEFAULT_WORKERS)
    path.write_text(json.dumps({key: entry | {"load_per_core": 0.2}}))
    assert "busy" not in _plan(run_cli, tmp_path, "--profile", "smoke")[-1]
    path.write_text(json.dumps({key: entry | {"load_per_core": 1.6}}))
    line = _plan(run_cli, tmp_path, "--profile", "smoke")[-1]
    assert "measured while the machine was busy (load 1.6 per core)" in line
    assert "`cnnlab study plan --remeasure` measures again" in line


def test_remeasure_replaces_the_cached_throughput_and_keeps_the_load(monkeypatch, tmp_path):
    from cnnlab.study import estimate

    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path))
    fresh = {"train": {"128": 4000.0}, "infer": 9000.0, "trial_overhead": 1.0,
             "epoch_overhead": 0.1}  # fmt: skip
    calls = []
    monkeypatch.setattr(estimate, "_measure_in_subprocesses",
                        lambda t, w: calls.append((t, w)) or dict(fresh))  # fmt: skip
    monkeypatch.setattr(estimate, "_load_per_core", lambda: 0.05)
    key = machine_key(1, 2)
    cache_file().write_text(json.dumps({key: {"train": {"128": 700.0}, "infer": 1000.0,
                                              "load_per_core": 2.0}}))  # fmt: skip
    cached = estimate.throughput(1, 2, measure=True)
    assert cached.cached and cached.busy and cached.train_rate(128) == 700.0 and not calls
    again = estimate.throughput(1, 2, measure=False, remeasure=True)
    assert calls == [(1, 2)] and not again.cached and not again.busy
    assert again.train_rate(128) == 4000.0
    stored = json.loads(cache_file().read_text())[key]
    assert stored["train"] == {"128": 4000.0} and stored["load_per_core"] == 0.05
    assert estimate.throughput(1, 2).cached  # and the new one is what later plans read
