"""The seed-blocked ANOVA against hand computation and statsmodels (AnovaRM, OLS)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.formula.api import ols
from statsmodels.stats.anova import AnovaRM, anova_lm

from cnnlab.study.analysis import stats


def _one_factor(table):
    """levels x seeds table -> rows and values for blocked_anova (and a long DataFrame)."""
    rows, values = [], []
    for i, level in enumerate(table):
        for j, v in enumerate(level):
            rows.append({"level": f"L{i}", "seed": str(j)})
            values.append(float(v))
    frame = pd.DataFrame([{**r, "acc": v} for r, v in zip(rows, values, strict=True)])
    return rows, values, frame


def test_two_levels_by_hand_equal_the_paired_t_test():
    # reference 1 2 3, level 2 5 5: differences 1 3 2 (mean 2, sd 1) -> t = 2 / (1 / sqrt 3)
    # SS_level = 6, SS_seed = 2 * (1.5^2 + 0.5^2 + 1^2) = 7, SS_total = 14, SS_error = 1
    # F = 6 / (1 / 2) = 12 = t^2; partial omega^2 = 1 * (6 - 0.5) / (6 + 1 + 7 + 7 / 2) = 11/35
    rows, values, _ = _one_factor([[1, 2, 3], [2, 5, 5]])
    term = stats.blocked_anova(rows, values, ["level"])["level"]
    assert (term.df, term.df_error) == (1, 2)
    assert term.f_statistic == pytest.approx(12.0)
    assert term.pvalue == pytest.approx(sps.ttest_rel([2, 5, 5], [1, 2, 3]).pvalue)
    assert term.omega_squared == pytest.approx(11 / 35)


def test_three_levels_match_anovarm_and_omega_squared_by_hand():
    table = [[1, 2, 3], [2, 4, 4], [3, 5, 7]]
    rows, values, frame = _one_factor(table)
    term = stats.blocked_anova(rows, values, ["level"])["level"]
    ref = AnovaRM(frame, "acc", "seed", within=["level"]).fit().anova_table.loc["level"]
    assert term.f_statistic == pytest.approx(ref["F Value"])
    assert term.pvalue == pytest.approx(ref["Pr > F"])
    assert (term.df, term.df_error) == (ref["Num DF"], ref["Den DF"])
    # grand mean 31/9; SS_level 122/9, SS_seed 98/9, SS_error 16/9 (df 4), MS_seed 49/9:
    # omega^2 = 2 * (61/9 - 4/9) / (122/9 + 16/9 + 98/9 + 49/9) = 114 / 285 = 0.4
    assert term.omega_squared == pytest.approx(0.4)


def test_random_tables_match_anovarm():
    rng = np.random.default_rng(7)
    for levels, seeds in ((4, 5), (2, 6), (5, 3)):
        seed_effect = rng.normal(0, 2, seeds)  # seeds shift every level alike
        table = rng.normal(85, 0.5, (levels, seeds)) + seed_effect + rng.normal(0, 1, (levels, 1))
        rows, values, frame = _one_factor(table)
        term = stats.blocked_anova(rows, values, ["level"])["level"]
        ref = AnovaRM(frame, "acc", "seed", within=["level"]).fit().anova_table.loc["level"]
        assert term.f_statistic == pytest.approx(ref["F Value"])
        assert term.pvalue == pytest.approx(ref["Pr > F"])


def test_blocking_by_seed_removes_the_seed_spread_from_the_error():
    """A small consistent effect under a large seed-to-seed spread: the one-way ANOVA drowns
    it, the seed-blocked ANOVA finds it."""
    seed_effect = np.array([-3.0, 0.0, 3.0, 1.5])
    table = np.array([seed_effect + 85.0, seed_effect + 85.6 + np.array([0.1, -0.1, 0.0, 0.05])])
    rows, values, _ = _one_factor(table)
    blocked = stats.blocked_anova(rows, values, ["level"])["level"]
    assert blocked.pvalue < 0.001
    assert sps.f_oneway(*table).pvalue > 0.5


def test_factorial_terms_match_statsmodels_ols():
    rng = np.random.default_rng(3)
    rows, values = [], []
    for seed in range(3):
        for a in ("a0", "a1"):
            for b in ("b0", "b1", "b2"):
                y = 85 + (a == "a1") * 1.0 + {"b0": 0, "b1": 0.5, "b2": -1}[b]
                y += (a == "a1" and b == "b2") * 0.8 + seed * 0.7 + rng.normal(0, 0.3)
                rows.append({"a": a, "b": b, "seed": str(seed)})
                values.append(y)
    terms = stats.blocked_anova(rows, values, ["a", "b"])
    frame = pd.DataFrame([{**r, "acc": v} for r, v in zip(rows, values, strict=True)])
    ref = anova_lm(ols("acc ~ C(a) * C(b) + C(seed)", data=frame).fit())
    for term, name in (("a", "C(a)"), ("b", "C(b)"), ("a x b", "C(a):C(b)")):
        assert terms[term].f_statistic == pytest.approx(ref.loc[name, "F"]), term
        assert terms[term].pvalue == pytest.approx(ref.loc[name, "PR(>F)"]), term
        assert terms[term].df == ref.loc[name, "df"]
        assert terms[term].df_error == ref.loc["Residual", "df"]
    # the same formula, by hand from the OLS table
    ss, df = ref["sum_sq"], ref["df"]
    ms_e, ss_e = ss["Residual"] / df["Residual"], ss["Residual"]
    ss_s, ms_s = ss["C(seed)"], ss["C(seed)"] / df["C(seed)"]
    expected = df["C(a)"] * (ss["C(a)"] / df["C(a)"] - ms_e) / (ss["C(a)"] + ss_e + ss_s + ms_s)
    assert terms["a"].omega_squared == pytest.approx(expected)


def test_omega_squared_is_not_inflated_by_noise_unlike_eta_squared():
    """Under no effect, 3 levels x 3 seeds: eta^2 (SS_level / SS_total without the seed) averages
    far above zero; partial omega^2 averages about zero."""
    rng = np.random.default_rng(11)
    omegas, etas = [], []
    for _ in range(1500):
        table = rng.normal(0, 1, (3, 3)) + rng.normal(0, 1, 3)  # seed effects, no level effect
        rows, values, _ = _one_factor(table)
        omegas.append(stats.blocked_anova(rows, values, ["level"])["level"].omega_squared)
        y = np.asarray(values)
        ss_level = 3 * ((table.mean(axis=1) - y.mean()) ** 2).sum()
        etas.append(ss_level / ((y - y.mean()) ** 2).sum())
    assert np.mean(etas) > 0.15
    assert abs(np.mean(omegas)) < 0.03


def test_an_unbalanced_table_is_refused():
    rows, values, _ = _one_factor([[1, 2, 3], [2, 5, 5]])
    with pytest.raises(ValueError, match="once per seed"):
        stats.blocked_anova(rows[:-1], values[:-1], ["level"])


def test_no_residual_variance_gives_no_test_rather_than_p_zero():
    # perfectly additive: level + seed explain everything, the error is exactly zero
    rows, values, _ = _one_factor([[1, 2, 3], [3, 4, 5]])
    term = stats.blocked_anova(rows, values, ["level"])["level"]
    assert math.isnan(term.f_statistic) and math.isnan(term.pvalue)
    assert math.isnan(term.omega_squared)


def test_one_seed_gives_no_test():
    rows, values, _ = _one_factor([[1], [2], [4]])
    term = stats.blocked_anova(rows, values, ["level"])["level"]
    assert math.isnan(term.pvalue) and term.df_error == 0
