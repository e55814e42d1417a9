"""The report's scenario parts on a fake study: each factor's regime and why, the clean
generalization gap with the learning curves, batch sizes by steps and seconds to the target,
and the optimizers' convergence curves and bracketing statement."""

import csv
import os
from pathlib import Path

import pytest

from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.analysis import analyse
from cnnlab.study.report import write_report

pytestmark = pytest.mark.slow  # the module fixture runs a whole two-worker study

SPEC = """
name: scen
seeds: 3
budget: {train_limit: 1024, epochs: 4, val_size: 500}
baseline: {preset: tutorial, schedule: cosine}
val_target: 0.8
factors:
  regularization: [none, dropout]
  regularization_small:
    kind: regularization
    levels: [none, dropout, augment]
    reference: none
    baseline: {batch_size: 32}
    budget: {train_limit: 256, epochs: 8}
    regime: few images, many epochs, so that it overfits
  batch_size: [128, 512]
  batch_size_steps: {kind: batch_size, levels: [128, 512], equal_steps: true}
  optimizer: {levels: [sgd, adam], lr_sweep: {multipliers: [0.5, 2.0], epochs: 1, extend: 1}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scen")
    (tmp / "scen.yaml").write_text(SPEC)
    url = f"sqlite:///{tmp}/s.db"
    mp = pytest.MonkeyPatch()  # the workers import the fake trainer from this folder
    here = str(Path(__file__).parent)
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    try:
        run_study(load_spec(tmp / "scen.yaml"), url, "scen", 2, trainer="fake_trainer:trainer",
                  progress=False)  # fmt: skip
    finally:
        mp.undo()
    s = st.load_study(st.open_storage(url), "scen")
    a = analyse(st.stored_spec(s), st.completed_records(s), st.stored_test_labels(s))
    html = write_report(url, "scen", tmp / "rep")
    return {"analysis": a, "md": html.with_suffix(".md").read_text(), "dir": html.parent}


def test_each_factor_section_says_its_regime_and_why(study):
    md = study["md"]
    assert (
        "Regime: its own regime (batch_size = 32, epochs = 8, train_limit = 256, instead of the "
        "study's baseline): 256 training images x 8 epochs at batch size 32 (8 steps per "
        "epoch), 500 validation images, validation target 80%. Why (the spec, fixed before any "
        "trial ran): few images, many epochs, so that it overfits" in md
    )
    assert "Regime: the study's baseline: 1,024 training images x 4 epochs at batch size 128" in md
    assert "500 validation images, validation target 80%. Levels: equal steps, fixed LR." in md


def test_the_gap_is_measured_on_clean_training_images_and_plotted_per_epoch(study):
    cells = study["analysis"].cells
    none, dropout = cells["regularization_small=none"], cells["regularization_small=dropout"]
    assert none.clean_gap and dropout.clean_gap
    assert none.gap.mean > dropout.gap.mean + 5  # the fake overfits without regularization
    md = study["md"]
    assert "(regularization_small_gap.png)" in md and "gap clean train-val (pts)" in md
    assert "training accuracy on clean training images in inference mode" in md
    rows = list(csv.DictReader((study["dir"] / "results.csv").open()))
    assert {r["gap_on_clean_train"] for r in rows} == {"True"}


def test_batch_sizes_are_compared_by_steps_and_seconds_to_the_target(study):
    cells = study["analysis"].cells
    fixed, steps = cells["batch_size=512"], cells["batch_size_steps=512"]
    assert (fixed.steps_per_epoch, fixed.steps) == (2, 8)  # 1,024 images, 4 epochs
    assert steps.steps == cells["batch_size_steps=128"].steps == 32  # equal steps: 16 epochs
    md = study["md"]
    section = md[md.index("## Batch size, equal steps, fixed LR") :]
    assert section.startswith("## Batch size, equal steps, fixed LR\n")  # in words
    assert "### Steps and seconds to 80% validation accuracy" in section
    assert "| steps to target | seconds to target |" in md
    assert "(batch_sizes_steps_to_target.png)" in md and "(batch_sizes_accuracy.png)" in md


def test_the_report_says_what_each_optimizer_is_and_adamws_weight_decay():
    from cnnlab.study.report.scenarios import describe_optimizers
    from cnnlab.study.spec import parse_spec

    data = {"budget": {"train_limit": 1000, "epochs": 2, "val_size": 500},
            "factors": {"optimizer": ["sgd", "momentum", "adamw"]}}  # fmt: skip
    spec = parse_spec(data, default_name="o")
    f = spec.factor("optimizer")
    text = describe_optimizers(f, spec.factor_baseline(f))
    assert "sgd: plain SGD; momentum: SGD with momentum 0.9;" in text
    assert "adamw: Adam with decoupled weight decay 0.004 (times the learning rate" in text
    spec = parse_spec({**data, "baseline": {"weight_decay": 0.05}}, default_name="o")
    assert "weight decay 0.05 (" in describe_optimizers(f, spec.factor_baseline(f))


def test_optimizers_show_convergence_curves_and_whether_the_rate_is_bracketed(study):
    md = study["md"]
    assert "The optimizers (Keras' implementations;" in md and "sgd: plain SGD" in md
    assert "![Mean validation accuracy against epochs at" in md
    assert "(optimizer_convergence_epochs.png)" in md
    assert "![Mean validation accuracy against training seconds at" in md
    assert "(optimizer_convergence_seconds.png)" in md
    sweeps = study["analysis"].sweeps["optimizer"]
    assert set(sweeps) == {"sgd", "adam"} and all(s.complete for s in sweeps.values())
    for s in sweeps.values():
        assert s.statement() in md
        assert ("bracketed" in s.statement()) != ("EDGE" in s.statement())


def test_the_overfitting_lesson_is_stated_with_the_gap_each_regularizer_cuts(study):
    """The fake overfits without dropout or augmentation: the section and the takeaways say
    by how much the gap shrinks, from the paired per-seed gap differences."""
    a = study["analysis"]
    by = {c.level: c for c in a.comparisons if c.factor == "regularization_small"}
    dropout = by["dropout"].gap_diff
    assert dropout.high < 0  # measured: the gap shrinks on every seed
    none = a.cells["regularization_small=none"]
    md = study["md"]
    assert f"a train-validation gap of {none.gap.mean:.2f} points" in md
    assert (f"dropout cuts the gap by {-dropout.mean:.2f} points [95% CI {-dropout.high:.2f}, "
            f"{-dropout.low:.2f}]") in md  # fmt: skip
    assert md.index("cuts the gap by") < md.index("**Contents**")  # a takeaway
    sentence = md[md.index("dropout cuts the gap by") :].split("\n")[0]
    endings = {  # worse: less accuracy, or underfitting where validation fell as well
        "better": ["less memorizing, more accuracy."],
        "worse": ["memorizing, and less accuracy.", "in this budget it underfits."],
    }.get(by["dropout"].verdict, ["without a gain in accuracy the study can vouch for."])
    assert any(e in sentence for e in endings), sentence
