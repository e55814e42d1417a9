"""Bracketing on the engine: a fake trainer whose SGD has a known best learning rate (9x its
default), swept from a x0.3/1/3 grid whose best rate sits at the top edge."""

import pytest

from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.analysis import analyse
from cnnlab.study.tuning import INTERIOR, UPPER_EDGE

SPEC = """
name: bracket
seeds: 2
budget: {{train_limit: 1000, epochs: 1, val_size: 500}}
factors:
  optimizer:
    levels: [sgd]
    lr_sweep: {{multipliers: [0.3, 1.0, 3.0], extend: {extend}}}
"""


def _run(tmp_path, fake_trainer, extend=None, text=None, name="bracket"):
    """The spec (SPEC with ``extend``, or ``text``) run with SGD's best rate at 9x its
    default: the spec, its records and their analysis."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text or SPEC.format(extend=extend))
    spec = load_spec(path)
    url = f"sqlite:///{tmp_path}/s.db"
    run_study(spec, url, name, 1, trainer=fake_trainer.name(sgd_best=9), progress=False)
    study = st.load_study(st.open_storage(url), name)
    records = st.completed_records(study)
    return spec, records, analyse(spec, records, st.stored_test_labels(study))


@pytest.mark.slow
def test_the_grid_is_extended_until_the_best_rate_is_interior(tmp_path, fake_trainer):
    spec, records, a = _run(tmp_path, fake_trainer, extend=2)
    sweep = a.sweeps["optimizer"]["sgd"]
    # grid 0.015, 0.05, 0.15 (best at the top edge) -> 0.45 (still the edge) -> 1.35 (worse)
    # two sweep seeds by default: each rate twice
    rates = [0.015, 0.015, 0.05, 0.05, 0.15, 0.15, 0.45, 0.45, 1.35, 1.35]
    assert [r.lr for r in sweep.runs] == pytest.approx(rates)
    assert [r.round for r in sweep.runs] == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    assert sweep.choice["chosen"] == pytest.approx(0.45) and sweep.position == INTERIOR
    assert "bracketed" in sweep.statement() and "EDGE" not in sweep.statement()
    tuned = [r for r in records.values() if r.kind == "main" and r.config["optimizer"] == "sgd"]
    assert [r.lr for r in tuned] == pytest.approx([0.45, 0.45])
    # test accuracy comes from the study's seeds; the sweep ran on two others
    assert {r.seed for r in tuned} == {0, 1} and {r.seed for r in sweep.runs} == {2, 3}
    assert spec.factor("optimizer").lr_sweep.seeds == (2, 3)


@pytest.mark.slow
def test_at_the_cap_the_report_says_the_best_rate_is_at_the_edge(tmp_path, fake_trainer):
    _, records, a = _run(tmp_path, fake_trainer, extend=1)
    sweep = a.sweeps["optimizer"]["sgd"]
    assert sorted({r.lr for r in sweep.runs}) == pytest.approx([0.015, 0.05, 0.15, 0.45])
    assert sweep.choice["chosen"] == pytest.approx(0.45) and sweep.position == UPPER_EDGE
    text = sweep.statement()
    assert "AT THE UPPER EDGE of the rates tried (0.015 to 0.45)" in text
    assert "after 1 of 1 bracketing rounds (the cap, lr_sweep.extend)" in text
    assert "may be higher" in text


CENTRED = """
name: centred
seeds: 2
budget: {train_limit: 1000, epochs: 1, val_size: 500}
factors:
  optimizer:
    levels: [sgd]
    lr_sweep: {multipliers: [0.5, 0.71, 1.0, 1.41, 2.0], extend: 1, centers: {sgd: 0.4}}
"""


@pytest.mark.slow
def test_a_finer_sweep_centred_on_a_known_rate_says_so(tmp_path, fake_trainer):
    from cnnlab.study.report import write_report

    _, _, a = _run(tmp_path, fake_trainer, text=CENTRED, name="centred")
    sweep = a.sweeps["optimizer"]["sgd"]
    # the grid multiplies the given centre, 0.4, not sgd's default 0.05; its best rate (0.45,
    # 9x the default) lies inside it, so the one round refines between two grid rates
    grid = sorted({r.lr for r in sweep.runs if r.round == 0})
    assert grid == pytest.approx([0.2, 0.284, 0.4, 0.564, 0.8])
    refined = {r.lr for r in sweep.runs if r.round == 1}
    assert len(refined) == 1 and 0.284 < refined.pop() < 0.8
    assert sweep.position == INTERIOR and 0.284 < sweep.choice["chosen"] < 0.8
    times = f"(x{sweep.choice['chosen'] / 0.4:.3g} the centre lr_sweep.centers gives it, 0.4)"
    assert times in sweep.statement()
    report = write_report(f"sqlite:///{tmp_path}/s.db", "centred", tmp_path / "rep")
    md = report.with_suffix(".md").read_text()
    assert "multiples 0.5, 0.71, 1, 1.41, 2 of the rate the spec centred its sweep on " in md
    assert "(lr_sweep.centers: sgd 0.4)" in md
