"""Nuisance hyperparameters tuned per level: any factor kind can compare its levels each at its
own tuned learning rate (issue 23), kernel sizes with `same` padding, regularization strength
grids, and where every trial's learning rate comes from (results.csv's lr_source)."""

import math
import re

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import parse_spec

BASE = {"budget": {"train_limit": 2048, "epochs": 4, "val_size": 500},
        "baseline": {"schedule": "cosine", "lr": 0.004}}  # fmt: skip


def spec(factors, **extra):
    return parse_spec({**BASE, "factors": factors, **extra}, default_name="t")


def sweep_rates(trials, sweep):
    return sorted({t.config["lr"] for t in trials
                   if t.kind == "sweep" and t.lr_sweep == sweep and t.config["lr"]})  # fmt: skip


def test_every_level_of_a_tuned_kernel_factor_sweeps_around_the_baselines_rate():
    s = spec({"kernel_size": {"levels": [3, "5x5 same"], "tune_lr": True,
                              "lr_sweep": {"multipliers": [0.5, 2.0], "extend": 1}}})  # fmt: skip
    trials, cells = s.plan()
    for level in ("3x3", "5x5 same"):
        assert sweep_rates(trials, f"kernel_size={level}") == pytest.approx([0.002, 0.008])
    by_key = {t.key: t for t in trials}
    main = [by_key[k] for c in cells if c.levels == (("kernel_size", "5x5 same"),)
            for k in c.keys]  # fmt: skip
    assert all(t.tune_lr and t.config["lr"] is None for t in main)
    assert {(t.lr_source, t.lr_sweep) for t in main} == {("tuned", "kernel_size=5x5 same")}
    # each level's sweep is its own: the 5x5 trials depend on no 3x3 sweep trial
    three = {t.key for t in trials if t.lr_sweep == "kernel_size=3x3"}
    assert three and not three & set(main[0].depends_on)
    # the baseline cell keeps the baseline's rate, and says so
    base = [by_key[k] for c in cells if c.levels == (("baseline", "baseline"),) for k in c.keys]
    assert {(t.lr_source, t.config["lr"]) for t in base} == {("baseline", 0.004)}


def test_a_tuned_batch_size_sweeps_around_its_scaled_rate():
    s = spec({"batch_size": {"levels": [32, 128], "lr_scaling": "sqrt", "tune_lr": True,
                             "lr_sweep": {"multipliers": [0.5, 2.0], "extend": 0}}})  # fmt: skip
    trials, _ = s.plan()
    scaled = 0.004 * math.sqrt(32 / 128)
    assert sweep_rates(trials, "batch_size=32") == pytest.approx([scaled / 2, scaled * 2])
    assert sweep_rates(trials, "batch_size=128") == pytest.approx([0.002, 0.008])


def test_untuned_levels_name_a_fixed_or_the_baselines_rate():
    s = spec({"batch_size": {"levels": [32, 128], "lr_scaling": "sqrt"},
              "regularization": ["none", "dropout"]})  # fmt: skip
    trials, cells = s.plan()
    by_key = {t.key: t for t in trials}
    source = {c.name: {by_key[k].lr_source for k in c.keys} for c in cells}
    assert source["batch_size=32"] == {"fixed"}  # the scaling rule fixes its rate
    assert source["regularization=dropout"] == {"baseline"}
    assert all(t.lr_sweep == "" for t in trials)


def test_sweeps_run_on_two_seeds_the_study_does_not_use_by_default():
    s = spec({"regularization": {"levels": ["none", "l2"], "tune_lr": True}}, seeds=3)
    assert s.factor("regularization").lr_sweep.seeds == (3, 4)


def test_kernel_levels_can_fix_the_padding_so_size_is_not_also_map_size():
    f = spec({"kernel_size": [3, "5x5 same", "7same", "first7x7 valid", "5"]}).factor("kernel_size")
    got = {lv.label: lv.overrides for lv in f.levels}
    assert got["5x5 same"] == {"kernel_size": 5, "first_kernel_size": None, "padding": "same"}
    assert got["7x7 same"]["padding"] == "same"
    assert got["first 7x7 valid"] == {"first_kernel_size": 7, "padding": "valid"}
    assert "padding" not in got["5x5"]  # the baseline's padding


def test_regularization_levels_can_form_a_strength_grid():
    f = spec({"regularization": ["none", "l2=1e-4", "l2=0.001", "dropout=0.25", "augment",
                                 "augment_no_erasing"]}).factor("regularization")  # fmt: skip
    got = {lv.label: lv.overrides for lv in f.levels}
    assert got["l2=0.0001"]["l2"] == 1e-4 and got["l2=0.001"]["l2"] == 1e-3
    assert got["dropout=0.25"] == {"l2": 0.0, "dropout": 0.25, "batch_norm": False,
                                   "augment": False}  # fmt: skip
    assert got["augment"]["augment"] and "erasing" not in got["augment"]  # the config's 0.5
    assert got["augment_no_erasing"] == got["augment"] | {"erasing": 0.0}


def test_a_sweep_can_be_centred_on_rates_an_earlier_study_chose():
    fine = {"multipliers": [0.5, 0.71, 1.0, 1.41, 2.0], "extend": 0,
            "centers": {"sgd": 0.4, "adam": 0.008}}  # fmt: skip
    s = spec({"optimizer": {"levels": ["sgd", "adam", "nadam"], "lr_sweep": fine}})
    trials, _ = s.plan()
    x = [0.5, 0.71, 1.0, 1.41, 2.0]
    assert sweep_rates(trials, "optimizer=sgd") == pytest.approx([0.4 * m for m in x])
    assert sweep_rates(trials, "optimizer=adam") == pytest.approx([0.008 * m for m in x])
    # a level the mapping leaves out keeps its default rate as the centre
    assert sweep_rates(trials, "optimizer=nadam") == pytest.approx([0.001 * m for m in x])
    assert s.factor("optimizer").lr_sweep.centers == (("adam", 0.008), ("sgd", 0.4))
    # any kind: a batch size's key may be a number, as YAML reads it
    b = spec(
        {
            "batch_size": {
                "levels": [32, 128],
                "tune_lr": True,
                "lr_sweep": {"multipliers": [0.5, 2.0], "centers": {32: 0.001}},
            }
        }
    )
    assert sweep_rates(b.plan()[0], "batch_size=32") == pytest.approx([0.0005, 0.002])


@pytest.mark.parametrize(
    ("centers", "message"),
    [
        ({"nesterov": 0.1}, "'nesterov' is not one of the levels (sgd, adam)"),
        ({"adam": 0}, "factors.optimizer.lr_sweep.centers.adam: must be a learning rate"),
        ({"adam": "fast"}, "factors.optimizer.lr_sweep.centers.adam: must be a learning rate"),
        ({"adam": 1000}, "factors.optimizer.lr_sweep.centers.adam: must be a learning rate"),
        ([0.1], "factors.optimizer.lr_sweep.centers: must map levels to learning rates"),
    ],
)
def test_bad_sweep_centres_name_the_field(centers, message):
    with pytest.raises(CnnlabError, match=re.escape(message)):
        spec({"optimizer": {"levels": ["sgd", "adam"], "lr_sweep": {"centers": centers}}})


@pytest.mark.parametrize(
    ("factors", "where"),
    [
        ({"lr": {"levels": [0.001, 0.01], "tune_lr": True}}, "factors.lr.tune_lr"),
        (
            {"kernel_size": {"levels": [3], "lr_sweep": {"extend": 1}}},
            "factors.kernel_size.lr_sweep",
        ),
        ({"kernel_size": {"levels": [3], "tune_lr": "yes"}}, "factors.kernel_size.tune_lr"),
        ({"regularization": ["none", "l2=2"]}, "factors.regularization.levels[1]"),
        ({"regularization": ["none", "dropout=1"]}, "factors.regularization.levels[1]"),
        ({"regularization": ["none", "dropout=x"]}, "factors.regularization.levels[1]"),
        ({"regularization": ["none", "batch_norm=0.5"]}, "factors.regularization.levels[1]"),
        ({"kernel_size": ["5x5 full"]}, "factors.kernel_size.levels[0]"),
    ],
)
def test_bad_tuning_and_level_syntax_name_the_field(factors, where):
    with pytest.raises(CnnlabError, match=f"^invalid spec field {re.escape(where)}: "):
        spec(factors)


ENGINE_SPEC = """
name: tuned
seeds: 2
budget: {train_limit: 1000, epochs: 1, val_size: 500}
factors:
  kernel_size: {levels: [3, 5], tune_lr: true, lr_sweep: {multipliers: [0.5, 2.0], extend: 1}}
"""


@pytest.mark.slow
def test_the_engine_trains_each_tuned_level_at_its_own_sweeps_choice(tmp_path, fake_env):
    from cnnlab.study import load_spec, run_study
    from cnnlab.study import storage as st
    from cnnlab.study.report import results_rows
    from cnnlab.study.tuning import choose_lr

    path = tmp_path / "tuned.yaml"
    path.write_text(ENGINE_SPEC)
    spec = load_spec(path)
    url = f"sqlite:///{tmp_path}/s.db"
    run_study(spec, url, "tuned", 1, trainer="fake_trainer:trainer", progress=False)
    records = st.completed_records(st.load_study(st.open_storage(url), "tuned"))
    rows = results_rows(spec, records)
    assert len(rows) == len(records) == len(spec.plan()[0])
    for level in ("3x3", "5x5"):
        name = f"kernel_size={level}"
        sweep = [r for r in rows if r["kind"] == "sweep" and r["lr_sweep"] == name]
        assert len(sweep) == 6 and {r["lr_source"] for r in sweep} == {"fixed"}
        chosen = choose_lr((r["lr_used"], r["val_accuracy"]) for r in sweep)["chosen"]
        main = [r for r in rows if r["kind"] == "main" and r["lr_sweep"] == name]
        assert len(main) == 2 and {r["lr_source"] for r in main} == {"tuned"}
        assert [r["lr_used"] for r in main] == pytest.approx([chosen, chosen])
    base = [r for r in rows if r["cells"].startswith("baseline")]
    assert {r["lr_source"] for r in base} == {"baseline"}
