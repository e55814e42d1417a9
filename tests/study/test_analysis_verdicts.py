"""Verdicts, Holm families and the reconciling sentences, on studies whose numbers are chosen
by hand (trial records built directly: no training, no storage)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.anova import AnovaRM

from cnnlab.errors import CnnlabError
from cnnlab.study.analysis import analyse, stats
from cnnlab.study.spec import parse_spec
from cnnlab.study.storage import TrialRecord

N_TEST = 1000
LABELS = np.arange(N_TEST) % 10
REF = [85.0, 86.0, 84.5, 85.5]  # the baseline, shared by every factor's reference level


def _spec(factors, seeds=4):
    return parse_spec({"name": "hand", "seeds": seeds, "factors": factors,
                       "budget": {"train_limit": 1000, "epochs": 1, "val_size": 500}})  # fmt: skip


def _record(key, seed, accuracy_points):
    k = round(accuracy_points * N_TEST / 100)
    pred = np.where(np.arange(N_TEST) < k, LABELS, (LABELS + 1) % 10)  # the first k are right
    acc = accuracy_points / 100
    return TrialRecord(
        key=key, kind="main", label=key, seed=seed, number=0, config={}, lr=0.001,
        metrics={"test_accuracy": acc, "macro_f1": acc, "test_loss": 1 - acc,
                 "train_seconds": 1.0, "params": 1000},
        history=[{"epoch": 1, "train_accuracy": acc, "val_accuracy": acc}], seconds=1.0,
        value=acc, test_pred=pred, lr_choice=None,
    )  # fmt: skip


def _records(spec, accuracies):
    """``accuracies``: cell name -> test accuracy (points) per seed; cells not named are the
    baseline (REF)."""
    out = {}
    for cell in spec.plan()[1]:
        for i, key in enumerate(cell.keys):
            values = accuracies.get(cell.name)
            if values is not None or key not in out:
                out[key] = _record(key, spec.seeds[i], values[i] if values else REF[i])
    return out


def _plus(deltas):
    return [r + d for r, d in zip(REF, deltas, strict=True)]


FOUR_VERDICTS = {
    "kernel_size=5x5": _plus([1.1, 1.2, 0.9, 1.2]),  # about +1 in every seed
    "kernel_size=7x7": _plus([-2.0, -1.9, -2.1, -1.9]),
    "batch_size=32": _plus([0.1, -0.1, 0.0, 0.1]),  # within 0.1 of the reference
    "batch_size=512": _plus([1.5, -1.0, 1.4, -1.1]),  # +0.2 +- 1.4
}


@pytest.fixture(scope="module")
def four():
    spec = _spec({"kernel_size": [3, 5, 7], "batch_size": [32, 128, 512]})
    return spec, analyse(spec, _records(spec, FOUR_VERDICTS), LABELS)


def _by(analysis):
    return {(c.factor, c.level): c for c in analysis.comparisons}


def test_each_of_the_four_verdicts(four):
    by = _by(four[1])
    assert by[("kernel_size", "5x5")].verdict == stats.BETTER
    assert by[("kernel_size", "7x7")].verdict == stats.WORSE
    assert by[("batch_size", "32")].verdict == stats.EQUIVALENT
    assert by[("batch_size", "512")].verdict == stats.UNRESOLVED
    assert [c.significant for c in four[1].comparisons] == [True, True, False, False]


def test_verdicts_are_holm_adjusted_over_the_whole_study(four):
    spec, analysis = four
    by = _by(analysis)
    cells = ("kernel_size=5x5", "kernel_size=7x7", "batch_size=32", "batch_size=512")
    raw = [sps.ttest_rel(FOUR_VERDICTS[c], REF).pvalue for c in cells]
    study = stats.holm(raw)  # over all four comparisons
    within = stats.holm(raw[:2])  # over the two kernel sizes only: shown beside it
    assert by[("kernel_size", "5x5")].holm_pvalue == pytest.approx(study[0])
    assert by[("kernel_size", "7x7")].holm_pvalue == pytest.approx(study[1])
    assert by[("kernel_size", "5x5")].factor_holm_pvalue == pytest.approx(within[0])
    assert {c.family for c in analysis.comparisons} == {4}
    assert {c.factor_family for c in analysis.comparisons} == {2}
    # alone in a study, the kernel sizes' study-wide p is the within-factor p of this one
    alone = _spec({"kernel_size": [3, 5, 7]})
    solo = _by(analyse(alone, _records(alone, FOUR_VERDICTS), LABELS))
    assert solo[("kernel_size", "5x5")].holm_pvalue == pytest.approx(within[0])


def test_no_difference_needs_an_equivalence_test_adjusted_over_the_study(four):
    c = _by(four[1])[("batch_size", "32")]
    tost = [stats.tost_pvalue(x.diff, 0.5) for x in four[1].comparisons]
    assert c.equivalence_pvalue == pytest.approx(stats.holm(tost)[2])
    assert c.equivalence_pvalue < 0.05 and c.verdict == stats.EQUIVALENT
    # a difference that is certainly small but not certain enough to be within a tight margin
    unsure = stats.Interval(4, 0.3, 0.5, -0.5, 1.1)
    assert stats.tost_pvalue(unsure, 0.5) > 0.05
    assert stats.verdict(unsure, 0.5, 0.5, equivalence_pvalue=0.2) == stats.UNRESOLVED


def test_unresolved_says_how_many_seeds_would_resolve_it(four):
    c = _by(four[1])[("batch_size", "512")]
    assert c.seeds_needed == stats.seeds_to_resolve(c.diff, 0.5, alpha=0.05 / 4)
    assert c.seeds_needed > c.n
    assert f"about {c.seeds_needed} seeds would resolve it" in c.sentence
    # the sd behind it comes from 4 seeds: the figure is given with the range its interval allows
    low, high = c.seeds_needed_range
    assert low < c.seeds_needed < high
    assert f"its 95% interval gives {low} to {high} seeds" in c.sentence
    assert c.sentence.startswith("batch_size = 512 vs 128: +0.20 points (95% CI ")


def test_sentences_put_the_effect_size_first(four):
    by = _by(four[1])
    seven = by[("kernel_size", "7x7")]
    assert seven.sentence.startswith(
        f"kernel_size = 7x7 vs 3x3: -1.98 points (95% CI {seven.diff.low:+.2f} to "
        f"{seven.diff.high:+.2f}, n = 4 seeds) — worse: paired t, Holm-adjusted p"
    )
    assert "over the study's 4 comparisons (within kernel_size alone: " in seven.sentence
    same = by[("batch_size", "32")]
    assert "— no difference detected: an equivalence test at ±0.50 points" in same.sentence


def test_the_margin_is_a_parameter(four):
    spec, _ = four
    records = _records(spec, FOUR_VERDICTS)
    strict = _by(analyse(spec, records, LABELS, margin=0.1))
    assert strict[("batch_size", "32")].verdict == stats.UNRESOLVED
    assert "inside ±0.10" not in strict[("batch_size", "32")].sentence
    with pytest.raises(CnnlabError, match="margin"):
        analyse(spec, records, LABELS, margin=0)


def test_mcnemar_is_per_seed_and_outside_holm(four):
    c = _by(four[1])[("kernel_size", "7x7")]
    assert len(c.mcnemar) == c.n == 4
    for i, m in enumerate(c.mcnemar):
        # the first k images are right: 7x7 loses exactly the images between its k and REF's
        lost = round(REF[i] * 10) - round(FOUR_VERDICTS["kernel_size=7x7"][i] * 10)
        assert (m.b, m.c) == (lost, 0)
        assert m.pvalue == pytest.approx(stats.mcnemar(lost, 0).pvalue)
    assert not hasattr(c, "mcnemar_holm_pvalue")


def test_reconciliation_when_both_agree(four):
    spec, analysis = four
    line = analysis.conclusions["kernel_size"][0]
    frame = pd.DataFrame(
        [{"level": lv, "seed": i, "acc": v}
         for lv, values in (("3x3", REF), ("5x5", FOUR_VERDICTS["kernel_size=5x5"]),
                            ("7x7", FOUR_VERDICTS["kernel_size=7x7"]))
         for i, v in enumerate(values)]
    )  # fmt: skip
    ref = AnovaRM(frame, "acc", "seed", within=["level"]).fit().anova_table.loc["level"]
    assert line.startswith(
        f"kernel_size matters overall (seed-blocked ANOVA F(2, 6) = {ref['F Value']:.2f}, p "
    )
    assert "and 2 of 2 levels differ from 3x3 after Holm over the study's 4 comparisons" in line
    assert line.endswith(f"the largest difference is 7x7 at {_ci(_by(analysis), '7x7')} (worse).")


def _ci(by, level):
    d = by[("kernel_size", level)].diff
    return f"{d.mean:+.2f} points [{d.low:+.2f}, {d.high:+.2f}]"


def test_reconciliation_when_the_factor_matters_but_no_single_level_does():
    """The situation of issue 13: a clear factor-level effect, yet with 3 seeds and Holm no
    pairwise comparison passes; the sentence says both and names the largest difference."""
    spec = _spec({"kernel_size": [3, 5, 7]}, seeds=3)
    accuracies = {"kernel_size=5x5": [r + d for r, d in zip(REF, [1.0, 0.4, 1.6], strict=False)],
                  "kernel_size=7x7": [r + d for r, d in zip(REF, [-1.4, -0.8, -2.0],
                                                            strict=False)]}  # fmt: skip
    a = analyse(spec, _records(spec, accuracies), LABELS)
    imp = next(i for i in a.importance if i.term == "kernel_size")
    assert imp.pvalue < 0.05 and not any(c.significant for c in a.comparisons)
    line = a.conclusions["kernel_size"][0]
    assert line.startswith("kernel_size matters overall (seed-blocked ANOVA F(2, 4) = ")
    assert (
        "but no single level differs from 3x3 after Holm over the study's 2 comparisons with "
        "3 seeds; the largest difference is 7x7 at -1.40 points [" in line
    )


def test_reconciliation_when_neither_detects_a_difference(four):
    line = four[1].conclusions["batch_size"][0]
    assert line.startswith("batch_size: neither the factor-level test (seed-blocked ANOVA F(2, 6)")
    assert "nor any single comparison with 128 after Holm detects a difference with 4 seeds" in line
    assert line.endswith("(unresolved).")


def test_reconciliation_when_one_contrast_is_found_but_not_the_factor():
    spec = _spec({"kernel_size": [3, 5, 7, 9]})
    a = analyse(spec, _records(spec, {
        "kernel_size=5x5": _plus([0.5, 0.5, 0.51, 0.49]),  # small and perfectly consistent
        "kernel_size=7x7": _plus([3.0, -3.0, 2.0, -2.0]),  # large noise, no mean effect
        "kernel_size=9x9": _plus([-3.0, 3.0, -2.0, 2.0]),
    }), LABELS)  # fmt: skip
    assert _by(a)[("kernel_size", "5x5")].verdict == stats.BETTER
    line = a.conclusions["kernel_size"][0]
    assert line.startswith("kernel_size: the factor-level test does not detect an effect (")
    assert "yet 1 of 3 levels differs from 3x3 after Holm" in line


def test_identical_differences_are_not_tested_and_leave_the_family():
    spec = _spec({"kernel_size": [3, 5, 7]})
    a = analyse(spec, _records(spec, {
        "kernel_size=5x5": _plus([1.0, 1.0, 1.0, 1.0]),  # the same gain in every seed
        "kernel_size=7x7": _plus([-2.0, -1.9, -2.1, -1.9]),
    }), LABELS)  # fmt: skip
    by = _by(a)
    five = by[("kernel_size", "5x5")]
    assert five.identical and five.verdict == stats.UNTESTABLE
    assert math.isnan(five.holm_pvalue) and math.isnan(five.diff.low)
    assert "+1.00 points in every one of the 4 seeds — no test possible" in five.sentence
    seven = by[("kernel_size", "7x7")]
    assert seven.family == 1  # only the tested comparison is corrected
    assert seven.holm_pvalue == pytest.approx(seven.t_pvalue)
    line = a.conclusions["kernel_size"][0]
    assert "after Holm over the study's 1 comparison with 4 seeds" in line


def test_importance_is_partial_omega_squared_of_the_blocked_anova(four):
    spec, analysis = four
    imp = {i.term: i for i in analysis.importance}
    table = [REF, FOUR_VERDICTS["kernel_size=5x5"], FOUR_VERDICTS["kernel_size=7x7"]]
    rows = [{"kernel_size": str(i), "seed": str(j)} for i in range(3) for j in range(4)]
    expected = stats.blocked_anova(rows, [v for r in table for v in r], ["kernel_size"])
    assert imp["kernel_size"].omega_squared == pytest.approx(expected["kernel_size"].omega_squared)
    assert imp["kernel_size"].seeds == 4
    assert analysis.importance[0].term == "kernel_size"  # -2 and +1 points outweigh batch size


def test_importance_ranks_by_the_spread_of_level_means_with_a_seed_bootstrap_interval(four):
    imp = {i.term: i for i in four[1].importance}
    kernel = imp["kernel_size"]
    means = [np.mean(REF), np.mean(FOUR_VERDICTS["kernel_size=5x5"]),
             np.mean(FOUR_VERDICTS["kernel_size=7x7"])]  # fmt: skip
    assert kernel.spread == pytest.approx(max(means) - min(means))
    assert kernel.spread_low <= kernel.spread <= kernel.spread_high
    # consistent effects (+1, -2 in every seed) give a narrow interval, noise a wide one
    batch = imp["batch_size"]
    assert kernel.spread_high - kernel.spread_low < batch.spread_high - batch.spread_low
    assert [i.term for i in four[1].importance] == ["kernel_size", "batch_size"]


def test_importance_uses_only_seeds_complete_for_every_level(four):
    spec, _ = four
    records = _records(spec, FOUR_VERDICTS)
    seven = next(c for c in spec.plan()[1] if c.name == "kernel_size=7x7")
    del records[seven.keys[3]]  # the last seed of 7x7 is still running
    imp = {i.term: i for i in analyse(spec, records, LABELS).importance}
    assert imp["kernel_size"].seeds == 3 and imp["batch_size"].seeds == 4
    assert (imp["kernel_size"].df, imp["kernel_size"].df_error) == (2, 4)


def test_time_ratios_pair_only_trials_timed_in_the_same_environment():
    """A study resumed on another CPU, and one trial slowed by another job: seeds 0 and 1
    timed both levels on machine a (5x5 took 1.5x the time of 3x3), seed 2 too but its 5x5
    ran beside another job (6x), seed 3 timed 3x3 on a machine eight times slower. The median
    of the same-machine ratios says 1.5; mean times say 3.0 over the seeds of one machine and
    0.95 (faster) over every seed."""
    from dataclasses import replace

    spec = _spec({"kernel_size": [3, 5]}, seeds=4)
    records = _records(spec, {"kernel_size=5x5": [86.0, 87.0, 85.0, 86.0]})
    cells = {c.name: c.keys for c in spec.plan()[1]}
    five, three = cells["kernel_size=5x5"], cells["kernel_size=3x3"]
    where = {five[0]: ("a", 15.0), three[0]: ("a", 10.0), five[1]: ("a", 15.0),
             three[1]: ("a", 10.0), five[2]: ("a", 60.0), three[2]: ("a", 10.0),
             five[3]: ("a", 15.0), three[3]: ("b", 80.0)}  # fmt: skip
    for key, (env, seconds) in where.items():
        r = records[key]
        records[key] = replace(r, environment=env,
                               metrics={**r.metrics, "train_seconds": seconds})  # fmt: skip
    c = _by(analyse(spec, records, LABELS))[("kernel_size", "5x5")]
    assert c.n == 4 and c.time_ratio == pytest.approx(1.5)
    for key in three:
        records[key] = replace(records[key], environment="b")
    c = _by(analyse(spec, records, LABELS))[("kernel_size", "5x5")]
    assert math.isnan(c.time_ratio)  # no seed timed in one environment: no ratio


def test_test_loss_and_ece_get_their_own_paired_verdicts_holm_within_the_factor():
    spec = _spec({"regularization": {"levels": ["none", "dropout", "l2", "batch_norm"],
                                     "reference": "none"}})  # fmt: skip
    loss = {
        "regularization=none": [1.70, 1.80, 1.75, 1.72],
        "regularization=dropout": [0.65, 0.70, 0.62, 0.66],  # lower in every seed
        "regularization=l2": [1.60, 1.95, 1.50, 1.90],  # noise around the reference
        "regularization=batch_norm": [1.80, 1.90, 1.85, 1.83],
    }  # +0.1 in every seed: higher
    ece = {
        "regularization=none": [0.15, 0.16, 0.15, 0.14],
        "regularization=dropout": [0.08, 0.09, 0.07, None],  # one seed has no ECE
        "regularization=l2": [0.14, 0.17, 0.13, 0.16],
        "regularization=batch_norm": [0.15, 0.16, 0.15, 0.14],
    }  # identical: no test
    records = _records(spec, {})
    for cell in spec.plan()[1]:
        for i, key in enumerate(cell.keys):
            if cell.name in loss:
                records[key].metrics["test_loss"] = loss[cell.name][i]
                records[key].metrics["ece"] = ece[cell.name][i]
    by = _by(analyse(spec, records, LABELS))
    dropout, l2, bn = (
        by[("regularization", lv)].measures for lv in ("dropout", "l2", "batch_norm")
    )
    assert dropout["test_loss"].verdict == "lower" and bn["test_loss"].verdict == "higher"
    assert l2["test_loss"].verdict == stats.UNRESOLVED
    raw = [sps.ttest_rel(loss[f"regularization={lv}"], loss["regularization=none"]).pvalue
           for lv in ("dropout", "l2", "batch_norm")]  # fmt: skip
    order = np.argsort(raw)  # Holm by hand over the factor's three loss comparisons
    expected, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        expected[i] = running
    got = [m["test_loss"].holm_pvalue for m in (dropout, l2, bn)]
    assert got == pytest.approx(expected)
    # ECE: the seed without one is left out of dropout's pairs; identical differences no test
    assert dropout["ece"].paired.n == 3 and dropout["ece"].verdict == "lower"
    assert dropout["ece"].paired.diff.mean == pytest.approx((-0.07 - 0.07 - 0.08) / 3)
    assert bn["ece"].verdict == stats.UNTESTABLE and math.isnan(bn["ece"].holm_pvalue)
    # accuracy is the same in every cell: the accuracy verdicts do not see these measures
    assert {by[("regularization", lv)].verdict for lv in ("dropout", "l2")} == {stats.UNTESTABLE}


def test_budget_dependence_pairs_each_levels_difference_across_the_two_budgets():
    """The optimizers at 4 and at 2 epochs: SGD trails Adam by 3 points at 2 epochs and by 1
    at 4 (the change, -2, depends on the budget); momentum trails by 0.5 at both."""
    spec = parse_spec({"name": "b", "seeds": 4, "budget": {"train_limit": 1000, "epochs": 4,
                                                          "val_size": 500},
                       "factors": {"optimizer": ["adam", "sgd", "momentum"],
                                   "optimizer_short": {"kind": "optimizer",
                                                       "levels": ["adam", "sgd", "momentum"],
                                                       "budget": {"epochs": 2}}}})  # fmt: skip
    noise = [0.1, -0.1, 0.05, -0.05]
    accuracies = {
        "optimizer=sgd": [r - 1.0 + n for r, n in zip(REF, noise, strict=True)],
        "optimizer_short=sgd": [r - 3.0 - n for r, n in zip(REF, noise, strict=True)],
        "optimizer=momentum": [r - 0.5 + n for r, n in zip(REF, noise, strict=True)],
        "optimizer_short=momentum": [r - 0.5 + n for r, n in zip(REF, noise, strict=True)],
    }
    a = analyse(spec, _records(spec, accuracies), LABELS)
    assert set(a.budgets) == {"optimizer_short"}  # only the shorter factor gets the table
    dep = a.budgets["optimizer_short"]
    assert (dep.longer, dep.longer_epochs, dep.shorter_epochs) == ("optimizer", 4, 2)
    rows = {r.level: r for r in dep.rows}
    assert rows["sgd"].longer.mean == pytest.approx(-1.0)
    assert rows["sgd"].shorter.mean == pytest.approx(-3.0)
    assert rows["sgd"].change.diff.mean == pytest.approx(-2.0) and rows["sgd"].change.n == 4
    assert rows["sgd"].change.diff.high < 0  # it depends on the budget
    assert rows["momentum"].change.identical  # the same -0.5 at both: nothing to test
    from cnnlab.report import Report
    from cnnlab.study.report.budgets import budget_part

    rep = Report("t")
    budget_part(rep, a, spec.factor("optimizer_short"))
    md = rep.to_markdown()
    assert "### Does the ranking depend on the budget? 2 against 4 epochs" in md
    assert "| sgd | -1.00 [" in md and "| yes |" in md
    assert "| momentum | -0.50 [" in md and "| no test possible |" in md
    assert "4 epochs: adam > momentum > sgd; 2 epochs: adam > momentum > sgd." in md
    # a factor of another kind, or at the same budget, is never paired
    other = _spec({"kernel_size": [3, 5], "optimizer": ["adam", "sgd"]})
    assert analyse(other, _records(other, {}), LABELS).budgets == {}
    # nor batch sizes at equal optimizer steps, whose levels set their own epochs (1 at 64,
    # 8 at 512): fewer epochs at the factor's baseline does not make it a shorter budget
    steps = parse_spec({"name": "s", "seeds": 2, "budget": {"train_limit": 2048, "epochs": 4,
                                                           "val_size": 500},
                        "factors": {"batch_size": [64, 128, 512],
                                    "batch_size_steps": {"kind": "batch_size",
                                                         "levels": [64, 128, 512],
                                                         "equal_steps": True,
                                                         "budget": {"epochs": 2}}}})  # fmt: skip
    assert analyse(steps, _records(steps, {}), LABELS).budgets == {}
