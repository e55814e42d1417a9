"""``study run`` and ``demo`` print the plan and its time estimate before any trial, and end
with each factor's verdict in the terminal (issue 26), through the command line with the fake
trainer."""

import functools
import json
import re

import pytest

import cnnlab.study
from cnnlab.study import estimate, load_spec
from cnnlab.study import run as run_module
from cnnlab.study import storage as st
from cnnlab.study.analysis import analyse
from cnnlab.study.analysis.takeaways import takeaways
from cnnlab_testing import call_main


@pytest.fixture
def fake_cli(fake_env, tmp_path):
    """``cnnlab`` in this process, its studies trained by the fake (one worker, no progress
    bar), wide enough that no table row wraps, with a cache folder of its own."""
    real = run_module.run_study
    fake_env.setattr(run_module, "run_study", functools.partial(
        real, trainer="fake_trainer:trainer", progress=False))  # fmt: skip
    fake_env.setenv("COLUMNS", "200")
    fake_env.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    return fake_env


def _verdict_rows(out: str) -> dict[str, list[str]]:
    """The verdict table's rows by factor: its cells, stripped."""
    table = out[out.index("verdicts: study") :]
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in table.splitlines() if "│" in ln]
    return {r[0]: r[1:] for r in rows if r and r[0] != "factor"}


def _analysis(url: str, name: str):
    study = st.load_study(st.open_storage(url), name)
    return analyse(st.stored_spec(study), st.completed_records(study),
                   st.stored_test_labels(study))  # fmt: skip


def test_study_run_prints_its_plan_first_and_ends_with_the_verdicts(
    fake_cli, capsys, small_spec, tmp_path
):
    url = f"sqlite:///{tmp_path}/s.db"
    spec = load_spec(small_spec)
    threads = run_module.default_threads(1)
    cache = tmp_path / "cache" / "throughput.json"  # this machine measured: 1,000 images/s
    cache.parent.mkdir()
    entry = {"train": {"32": 1000.0, "128": 1000.0, "512": 1000.0}, "infer": 10000.0}
    cache.write_text(json.dumps({estimate.machine_key(threads, 1): entry}))
    r = call_main(capsys, "study", "run", small_spec, "--storage", url, "--workers", 1)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    plan = out.index("plan: study small, 2 seeds")
    table = out[plan : out.index("total:")]
    rows = dict(re.findall(r"│ (Kernel \(filter\) size)\s+│ (.+?)\s+│", table))
    assert rows == {"Kernel (filter) size": "3x3 (ref), 5x5, 7x7"}
    images = estimate.total_images(spec.plan()[0])
    assert f"total: 6 trials, {images} training images" in out  # 3 levels x 2 seeds
    assert re.search(rf"│\s+6 │\s+{images:,} │", table)  # the factor's trials and images
    rate = estimate.throughput(threads, 1, measure=False)
    seconds = estimate.wall_seconds(spec.plan()[0], rate, 1)
    assert (f"estimated wall time: {estimate_duration(seconds)} with 1 workers, from 1,000 "
            "training images/s") in out  # fmt: skip
    done = out.index("small: 6/6 trials complete")
    verdicts = out.index("verdicts: study small (6/6 trials)")
    assert plan < done < verdicts  # the plan before the trials, the verdicts after them
    (t,) = takeaways(_analysis(url, "small"))
    d = t.diff
    assert _verdict_rows(out) == {"Kernel (filter) size": [
        t.best, t.versus + " (ref)" * (t.versus == "3x3"),
        f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]", t.verdict]}  # fmt: skip
    assert t.best in ("5x5", "3x3")  # the fake: 5x5 +0.4 points, 7x7 -2 points


def estimate_duration(seconds: float) -> str:
    from cnnlab.study.terminal import duration

    return duration(seconds)


def test_demo_prints_the_plan_first_and_ends_with_verdicts_and_the_report(
    fake_cli, capsys, small_spec, tmp_path
):
    real = cnnlab.study.load_spec
    fake_cli.setattr(cnnlab.study, "load_spec", lambda *a, profile=None, **k: real(small_spec))
    url = f"sqlite:///{tmp_path}/s.db"
    r = call_main(capsys, "demo", "--storage", url, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    plan, verdicts = out.index("plan: study small"), out.index("verdicts: study small")
    report = out.index(f"report: {tmp_path / 'rep' / 'report.html'}")
    assert out.index("total: 6 trials") < verdicts < report and plan < verdicts
    assert list(_verdict_rows(out)) == ["Kernel (filter) size"]
    # a machine without a cached throughput says so rather than spend 30 s measuring it
    assert "estimated wall time: not measured on this machine yet (`cnnlab study plan`" in out
    assert not (tmp_path / "cache" / "throughput.json").exists()


def test_a_bad_storage_is_one_line_before_the_plan(fake_cli, capsys, small_spec):
    r = call_main(capsys, "study", "run", small_spec, "--storage", "notaurl")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "invalid --storage URL" in r.stderr and "plan:" not in r.stdout
