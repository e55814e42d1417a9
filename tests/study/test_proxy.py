"""Whether the learning-rate sweeps' shorter budget chooses the rate the full budget would
(issue 23): each sweep of the baseline's own network against the full budget's rates."""

import pytest

from cnnlab.study.analysis.proxy import ProxyCheck, ProxyRow, proxy_check
from cnnlab.study.analysis.sweeps import SweepSummary
from cnnlab.study.spec import parse_spec

SWEEP = {"multipliers": [0.5, 2.0], "epochs": 1, "extend": 1}
FACTORS = {
    "learning_rate": {"kind": "lr", "levels": [0.002, 0.004, 0.008], "reference": 0.004},
    "kernel_size": {"levels": [3, "5x5 same"], "tune_lr": True, "lr_sweep": SWEEP},
    "batch_size": {"levels": [128, 512], "tune_lr": True, "lr_sweep": SWEEP},
}


def _spec(factors=FACTORS):
    return parse_spec(
        {"budget": {"train_limit": 2048, "epochs": 4, "val_size": 500},
         "baseline": {"schedule": "cosine", "lr": 0.004}, "factors": factors},
        default_name="t",
    )  # fmt: skip


def _sweeps(spec, chosen):
    """factor -> level -> a summary that chose ``chosen[level]`` (complete)."""
    out = {}
    for f in spec.factors:
        for lv in f.levels:
            name = f"{f.name}={lv.label}"
            if f.lr_sweep is None or name not in chosen:
                continue
            s = SweepSummary(lv.label, 0.004, planned=0, extend=1)
            s.choice = {"chosen": chosen[name], "candidates": []}
            out.setdefault(f.name, {})[lv.label] = s
    return out


VAL = {"learning_rate=0.002": (88.0, 3), "learning_rate=0.004": (89.5, 3),
       "learning_rate=0.008": (89.1, 2)}  # fmt: skip


def test_only_sweeps_of_the_baselines_network_are_checked_and_equal_sweeps_share_a_row():
    spec = _spec()
    chosen = {"kernel_size=3x3": 0.008, "kernel_size=5x5 same": 0.004,
              "batch_size=128": 0.008, "batch_size=512": 0.016}  # fmt: skip
    check = proxy_check(spec, spec.plan(), _sweeps(spec, chosen), VAL)
    assert check is not None and check.factor == "learning_rate" and check.epochs == 4
    assert check.grid == pytest.approx({0.002: 88.0, 0.004: 89.5, 0.008: 89.1})
    assert check.best == 0.004 and check.seeds == 2 and check.step == pytest.approx(2.0)
    # 5x5 same padding and batch 512 train other networks; 3x3 and batch 128 are the baseline's
    # own network, tuned by one shared sweep (the same trials)
    assert [r.sweeps for r in check.rows] == [["kernel_size=3x3", "batch_size=128"]]
    row = check.rows[0]
    assert row.epochs == 1 and row.chosen == 0.008 and row.ratio(check.best) == 2.0
    assert check.within_step(row)


def test_agreement_is_one_grid_step_and_the_statement_counts_it():
    check = ProxyCheck("learning_rate", 12, 5, {0.002: 88.0, 0.004: 89.5, 0.008: 89.1})
    near = ProxyRow(["kernel_size=3x3"], 4, (5, 6), 0.0057, True)
    far = ProxyRow(["regularization=dropout"], 4, (5, 6), 0.0161, True)
    low = ProxyRow(["optimizer=adam"], 4, (5, 6), 0.00199, True)
    running = ProxyRow(["batch_size=128"], 4, (5, 6), 0.05, False)
    check.rows = [near, far, low, running]
    assert [check.within_step(r) for r in (near, far, low)] == [True, False, False]
    text = check.statement()
    assert "best validation accuracy came at lr 0.004" in text
    assert "1 of 3 completed sweeps" in text and "x2" in text
    assert "may be trained at a rate the full budget would not choose" in text
    check.rows = [near]
    assert "the shorter proxy chose the full budget's rate" in check.statement()
    check.rows = [running]
    assert check.statement() == "No sweep of the baseline network has completed yet."


def test_no_check_without_a_factor_of_learning_rates_or_with_one_rate_done():
    spec = _spec({k: v for k, v in FACTORS.items() if k != "learning_rate"})
    assert proxy_check(spec, spec.plan(), {}, VAL) is None
    spec = _spec()
    assert proxy_check(spec, spec.plan(), {}, {"learning_rate=0.004": (90.0, 3)}) is None


E2E_SPEC = """
name: proxy
seeds: 2
budget: {train_limit: 1024, epochs: 3, val_size: 500}
baseline: {preset: tutorial, schedule: cosine, lr: 0.004}
factors:
  learning_rate: {kind: lr, levels: [0.002, 0.004, 0.008], reference: 0.004}
  kernel_size:
    levels: [3, 5x5 same]
    tune_lr: true
    lr_sweep: {multipliers: [0.5, 2.0], epochs: 1, extend: 1}
"""


@pytest.mark.slow
def test_the_report_checks_the_sweeps_against_the_full_budget(tmp_path, fake_env, monkeypatch):
    from cnnlab.study import load_spec, run_study
    from cnnlab.study import storage as st
    from cnnlab.study.analysis import analyse
    from cnnlab.study.report import write_report

    path = tmp_path / "proxy.yaml"
    path.write_text(E2E_SPEC)
    url = f"sqlite:///{tmp_path}/s.db"
    run_study(load_spec(path), url, "proxy", 1, trainer="fake_trainer:trainer", progress=False)
    study = st.load_study(st.open_storage(url), "proxy")
    records = st.completed_records(study)
    a = analyse(st.stored_spec(study), records, st.stored_test_labels(study))
    check = a.proxy
    assert check is not None and [r.sweeps for r in check.rows] == [["kernel_size=3x3"]]
    # the full budget's best rate is the one with the best mean validation accuracy of the
    # study's seeds, recomputed here from the trials themselves
    by_lr = {}
    for r in records.values():
        if r.kind == "main" and r.config.get("lr") is not None:  # the learning_rate levels
            by_lr.setdefault(r.lr if r.lr is not None else r.config["lr"], []).append(r.value)
    means = {lr: sum(v) / len(v) for lr, v in by_lr.items() if len(v) == 2}
    assert check.best == max(means, key=means.get)
    row = check.rows[0]
    tuned = {
        r.lr
        for r in records.values()
        if r.kind == "main" and r.config.get("lr") is None and r.config["padding"] == "valid"
    }
    assert tuned == {row.chosen}  # the rate the 3x3 level's study trials trained at
    assert row.complete and row.epochs == 1 and row.seeds == (2, 3)
    md = write_report(url, "proxy", tmp_path / "rep").with_suffix(".md").read_text()
    section = md.split("### Do the shorter sweeps choose the full budget's rate?")[1]
    assert f"best validation accuracy came at lr {check.best:g}" in section
    within = "yes" if check.within_step(row) else "no"
    assert f"| kernel_size=3x3 | 1 | 2, 3 | {row.chosen:.3g} |" in section
    assert f"| {within} | yes |" in section
    # while only the sweeps have run, the factor's section already shows what they chose
    every = st.completed_records

    def sweeps_only(study):
        return {k: r for k, r in every(study).items() if r.kind == "sweep"}

    monkeypatch.setattr(st, "completed_records", sweeps_only)
    md = write_report(url, "proxy", tmp_path / "early").with_suffix(".md").read_text()
    kernel = md.split("## Kernel (filter) size")[1].split("\n## ")[0]
    assert "No completed trials for this factor yet." in kernel
    assert "### Learning-rate sweep (validation split), bracketed" in kernel
    assert f"3x3: chose lr {row.chosen:.3g}" in kernel
    assert "Do the shorter sweeps" not in md  # nothing to check against yet
