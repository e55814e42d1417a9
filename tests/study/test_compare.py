"""``cnnlab study compare``: two studies side by side, comparison by comparison.

Study A runs the fake trainer; study B runs it with batch norm's effect reversed
(``fake_trainer.name(batch_norm_effect=-0.02)``), drops kernel size 5 and adds a batch-size
factor. So kernel 7x7 (-2 points in both) must agree, batch norm (+2 in A, -2 in B) must
disagree in verdict and direction, and kernel 5x5 / batch size 512 are each in one study only.
"""

import os
from pathlib import Path

import pytest

from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.analysis import analyse
from cnnlab.study.report.compare import compare_studies, format_markdown

SPEC_A = """
name: a
seeds: 3
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  kernel_size: [3, 5, 7]
  regularization: [dropout, batch_norm]
"""

SPEC_B = """
name: b
seeds: 3
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  kernel_size: [3, 7]
  regularization: [dropout, batch_norm]
  batch_size: [128, 512]
"""

HERE = Path(__file__).parent  # the workers import the fake trainer from here
KERNEL_7 = ("kernel_size", "7x7", "3x3")
BATCH_NORM = ("regularization", "batch_norm", "dropout")
KERNEL_5 = ("kernel_size", "5x5", "3x3")
BATCH_512 = ("batch_size", "512", "128")


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    mp = pytest.MonkeyPatch()
    mp.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    )
    urls = {}
    try:
        reversed_bn = 'fake_trainer:{"batch_norm_effect": -0.02}'  # fake_trainer.name(...)
        for name, text, trainer in (("a", SPEC_A, "fake_trainer:trainer"),
                                    ("b", SPEC_B, reversed_bn)):  # fmt: skip
            (tmp / f"{name}.yaml").write_text(text)
            urls[name] = f"sqlite:///{tmp}/{name}.db"
            run_study(load_spec(tmp / f"{name}.yaml"), urls[name], name, 1, trainer=trainer,
                      progress=False)  # fmt: skip
    finally:
        mp.undo()
    return {"a": urls["a"], "b": urls["b"], "dir": tmp}


@pytest.fixture(scope="module")
def result(two_studies):
    return compare_studies(two_studies["a"], "a", two_studies["b"], "b")


def _pairs(result):
    return {(p.factor, p.level, p.reference): p for p in result.pairs}


def test_a_comparison_both_studies_find_agrees_in_verdict_and_direction(result):
    p = _pairs(result)[KERNEL_7]
    assert p.shared
    assert (p.a.verdict, p.b.verdict) == ("worse", "worse")
    assert p.verdicts_agree and p.same_direction


def test_an_effect_reversed_in_one_study_disagrees_in_verdict_and_direction(result):
    p = _pairs(result)[BATCH_NORM]
    assert (p.a.verdict, p.b.verdict) == ("better", "worse")
    assert p.a.diff.mean > 0 > p.b.diff.mean
    assert not p.verdicts_agree and not p.same_direction


def test_a_comparison_in_one_study_only_is_listed_as_such(result):
    pairs = _pairs(result)
    assert pairs[KERNEL_5].a is not None and pairs[KERNEL_5].b is None
    assert pairs[BATCH_512].a is None and pairs[BATCH_512].b is not None
    assert set(pairs) == {KERNEL_7, BATCH_NORM, KERNEL_5, BATCH_512}
    assert len(result.shared) == 2


@pytest.mark.parametrize("margin", [0.5, 4.0])
def test_each_side_is_exactly_that_studys_own_analysis(two_studies, margin):
    """Nothing recomputed: the differences, CIs and verdicts are those ``study report``
    shows for each study at the same margin δ."""
    result = compare_studies(two_studies["a"], "a", two_studies["b"], "b", margin=margin)
    assert result.margin == margin
    for side in ("a", "b"):
        study = st.load_study(st.open_storage(two_studies[side]), side)
        own = analyse(st.stored_spec(study), st.completed_records(study),
                      st.stored_test_labels(study), margin=margin)  # fmt: skip
        mine = {(c.factor, c.level, c.reference): c for c in own.comparisons}
        for key, pair in _pairs(result).items():
            c = getattr(pair, side)
            if c is not None:
                assert (c.diff, c.verdict, c.holm_pvalue) == (
                    mine[key].diff, mine[key].verdict, mine[key].holm_pvalue,
                )  # fmt: skip


def test_the_summary_counts_agreement_over_shared_comparisons(result):
    lines = result.summary()
    assert lines[-1] == "agree: 1 of 2 comparisons (same direction: 1 of 2)"
    assert "significant in B: 2; same direction in A: 1 of 2" in lines
    assert "only in A: 1; only in B: 1 (not counted in the agreement)" in lines


def test_the_command_prints_every_row_and_writes_the_same_as_markdown(run_cli, two_studies):
    out = two_studies["dir"] / "compare.md"
    r = run_cli("study", "compare", two_studies["a"], "a", two_studies["b"], "b",
                "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = next(ln for ln in lines if ln.startswith("regularization = batch_norm vs dropout"))
    assert "better" in row and "worse" in row and row.split()[-3:] == ["no", "opposite", "-"]
    assert "only in A" in next(ln for ln in lines if ln.startswith("kernel_size = 5x5 vs 3x3"))
    assert "agree: 1 of 2 comparisons (same direction: 1 of 2)" in lines
    md = out.read_text()
    assert "| kernel_size = 7x7 vs 3x3 |" in md and "| yes | same |" in md
    assert md.count("\n| ") == 2 + 4  # header, separator, one row per comparison
    assert "agree: 1 of 2 comparisons (same direction: 1 of 2)" in md


def test_markdown_escapes_nothing_it_does_not_need_to(result):
    md = format_markdown(result)
    assert md.startswith("# Study comparison: a (A) vs b (B)")
    assert "\\|" not in md


def test_a_missing_storage_file_is_one_line_and_nothing_is_created(run_cli, two_studies, tmp_path):
    r = run_cli("study", "compare", two_studies["a"], "a", "sqlite:///missing.db", "b")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("cnnlab: error: ")
    assert "missing.db" in r.stderr
    assert not (tmp_path / "missing.db").exists()
    assert r.stdout == ""


def test_a_missing_study_name_says_which_studies_exist(run_cli, two_studies):
    r = run_cli("study", "compare", two_studies["a"], "nope", two_studies["b"], "b")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "'nope'" in r.stderr and "studies here: a" in r.stderr


def test_out_under_a_file_is_one_line_before_any_study_is_read(run_cli, two_studies, tmp_path):
    (tmp_path / "notes").write_text("mine\n")
    r = run_cli("study", "compare", two_studies["a"], "a", two_studies["b"], "b",
                "--out", str(tmp_path / "notes" / "c.md"))  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "is a file, not a directory" in r.stderr
    assert r.stdout == ""  # refused before either study is read
    assert (tmp_path / "notes").read_text() == "mine\n"


def test_out_naming_a_folder_is_one_line(run_cli, two_studies, tmp_path):
    r = run_cli("study", "compare", two_studies["a"], "a", two_studies["b"], "b",
                "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "is a directory" in r.stderr and r.stdout == ""


def test_out_in_a_new_folder_creates_it(run_cli, two_studies, tmp_path):
    out = tmp_path / "new" / "deeper" / "c.md"
    r = run_cli("study", "compare", two_studies["a"], "a", two_studies["b"], "b",
                "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "agree:" in out.read_text()


def _run_fake_study(spec: str, name: str, folder, monkeypatch) -> str:
    """Run ``spec`` with the fake trainer into a SQLite file in ``folder``; its URL."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    )
    (folder / f"{name}.yaml").write_text(spec)
    url = f"sqlite:///{folder}/{name}.db"
    run_study(load_spec(folder / f"{name}.yaml"), url, name, 1,
              trainer="fake_trainer:trainer", progress=False)  # fmt: skip
    return url


SPEC_TUNED = """
name: tuned
seeds: 3
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  kernel_size:
    levels: [3, 7]
    tune_lr: true
    lr_sweep: {multipliers: [0.5, 2.0], extend: 0}
"""


def test_a_level_at_the_baselines_rate_in_one_study_and_tuned_in_the_other_says_so(
    two_studies, tmp_path, monkeypatch
):
    from cnnlab.study.report.compare import format_text, rate_source

    url = _run_fake_study(SPEC_TUNED, "tuned", tmp_path, monkeypatch)
    result = compare_studies(two_studies["a"], "a", url, "tuned")
    assert rate_source(result.a, "kernel_size", "7x7") == "baseline"
    assert rate_source(result.b, "kernel_size", "7x7") == "tuned"
    text = format_text(result)
    row = next(line for line in text.splitlines() if line.startswith("kernel_size = 7x7 vs 3x3"))
    assert "baseline 0.001" in row and "tuned " in row
    moved = [line for line in result.summary() if line.startswith("learning rate from another")]
    kept = sum(p.verdicts_agree for p in result.shared)
    assert moved == [
        "learning rate from another source in A and B, all else equal (e.g. the baseline's vs "
        f"the level's own tuned rate): 1 comparisons, verdict kept in {kept}, changed in "
        f"{1 - kept}"
    ]
    assert result.changes(_pairs(result)[KERNEL_7]) == []


SPEC_REGIME = """
name: regime
seeds: 3
budget: {train_limit: 1000, epochs: 2, val_size: 500}
factors:
  regularization:
    levels: [dropout, batch_norm]
    baseline: {batch_size: 64}
    budget: {train_limit: 1000, epochs: 3, val_size: 500}
"""


def test_a_comparison_trained_another_way_names_what_changed(two_studies, tmp_path, monkeypatch):
    """The same comparison in another regime (more epochs, another batch size): its row says
    so, and its verdict is not counted as a change the learning rate made."""
    from cnnlab.study.report.compare import format_text

    url = _run_fake_study(SPEC_REGIME, "regime", tmp_path, monkeypatch)
    result = compare_studies(two_studies["a"], "a", url, "regime")
    pair = _pairs(result)[BATCH_NORM]
    assert result.changes(pair) == ["batch_size 128 → 64", "epochs 2 → 3"]
    assert not result.rate_moved(pair)
    row = next(line for line in format_text(result).splitlines()
               if line.startswith("regularization = batch_norm vs dropout"))  # fmt: skip
    assert row.endswith("batch_size 128 → 64; epochs 2 → 3")
    kept = int(pair.verdicts_agree)
    assert (
        "trained another way in A and B besides the rate (budget, regime or the level's "
        f"settings: the last column): 1 comparisons, verdict kept in {kept}, changed in "
        f"{1 - kept}"
    ) in result.summary()
    assert not any(line.startswith("learning rate from another") for line in result.summary())


# the same factor tuned on another grid, which shares no rate with SPEC_TUNED's
SPEC_TUNED_AGAIN = SPEC_TUNED.replace("name: tuned", "name: again").replace(
    "[0.5, 2.0]", "[0.25, 4.0]"
)


def test_a_reference_whose_rate_another_sweep_moved_is_named_and_counted_apart(
    two_studies, tmp_path, monkeypatch
):
    """Both studies tune every level, on other grids: the source is the same (``tuned``), the
    rates are not, and the reference's move is what a reader of the difference must see."""
    from cnnlab.study.report.compare import format_text

    tuned = _run_fake_study(SPEC_TUNED, "tuned", tmp_path, monkeypatch)
    again = _run_fake_study(SPEC_TUNED_AGAIN, "again", tmp_path, monkeypatch)
    result = compare_studies(tuned, "tuned", again, "again")
    pair = _pairs(result)[KERNEL_7]
    assert not result.rate_moved(pair) and result.changes(pair) == []
    a = result.a.analysis.cells["kernel_size=3x3"].lr
    b = result.b.analysis.cells["kernel_size=3x3"].lr
    assert a != pytest.approx(b)  # the grids share no rate: x0.5/x2 against x0.25/x4
    expected = f"3x3's rate {a:.3g} → {b:.3g}"
    assert result.reference_rate(pair) == expected
    row = next(line for line in format_text(result).splitlines()
               if line.startswith("kernel_size = 7x7 vs 3x3"))  # fmt: skip
    assert row.endswith(expected)
    kept = int(pair.verdicts_agree)
    assert (
        "the same source of the learning rate, another rate (the level's or its reference's: "
        f"another sweep chose it), all else equal: 1 comparisons, verdict kept in {kept}, "
        f"changed in {1 - kept}"
    ) in result.summary()


def test_the_same_rates_in_both_studies_name_no_rate_change(two_studies):
    """Study A against B: every level at the baseline's rate in both, so nothing moved."""
    result = compare_studies(two_studies["a"], "a", two_studies["b"], "b")
    pair = _pairs(result)[KERNEL_7]
    assert not result.rate_values_moved(pair) and result.reference_rate(pair) is None
    assert not any(line.startswith("the same source") for line in result.summary())
