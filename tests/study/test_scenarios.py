"""Scenarios as spec data: each factor may run in its own regime (baseline and budget
overrides, a validation target, the reason why), batch sizes at equal optimizer steps, and
optimizer sweeps on seeds that the tuned trials do not use."""

import math

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import parse_spec
from cnnlab.study.spec.plan import steps_per_epoch

BASE = {"budget": {"train_limit": 2048, "epochs": 4, "val_size": 500},
        "baseline": {"schedule": "cosine"}}  # fmt: skip


def spec(factors, **extra):
    return parse_spec({**BASE, "factors": factors, **extra}, default_name="t")


def configs(s, factor):
    """level -> the configs its trials train, one per seed."""
    trials, cells = s.plan()
    by_key = {t.key: t for t in trials}
    return {c.levels[0][1]: [by_key[k].config for k in c.keys]
            for c in cells if c.levels[0][0] == factor}  # fmt: skip


SMALL = {
    "kind": "regularization",
    "levels": ["none", "dropout", "augment"],
    "baseline": {"dropout": 0.0, "batch_size": 32},
    "budget": {"train_limit": 300, "epochs": 30},
    "val_target": 0.7,
    "regime": "few images,\n many epochs: it overfits",
}


def test_a_factor_regime_overrides_the_baseline_and_budget_of_its_trials_only():
    s = spec({"kernel_size": [3, 5], "reg_small": SMALL}, seeds=2)
    small = configs(s, "reg_small")
    for cfgs in small.values():
        assert len(cfgs) == 2
        for cfg in cfgs:
            assert (cfg["train_limit"], cfg["epochs"], cfg["batch_size"]) == (300, 30, 32)
    assert small["none"][0]["dropout"] == 0.0 and small["dropout"][0]["dropout"] == 0.5
    assert small["augment"][0]["augment"] is True and small["augment"][0]["dropout"] == 0.0
    for cfg in configs(s, "kernel_size")["5x5"]:  # the other factor keeps the study's regime
        assert (cfg["train_limit"], cfg["epochs"], cfg["batch_size"]) == (2048, 4, 128)
    f = s.factor("reg_small")
    assert f.reference == "none"  # the level that trains the regime's own baseline
    assert f.regime.changes == {"dropout": 0.0, "batch_size": 32, "train_limit": 300,
                                "epochs": 30}  # fmt: skip
    assert f.regime.text == "few images, many epochs: it overfits"
    assert s.val_target_of(f) == 0.7 and s.val_target_of(s.factor("kernel_size")) == 0.85


def test_a_factor_without_a_regime_keeps_its_trial_keys():
    """Adding a factor with its own regime changes nothing for the others (keys are hashes of
    what a trial trains), so older studies keep their completed trials."""
    alone = spec({"kernel_size": [3, 5]}, seeds=2)
    beside = spec({"kernel_size": [3, 5], "reg_small": SMALL}, seeds=2)
    cells = {c.name: c.keys for c in alone.plan()[1]}
    for c in beside.plan()[1]:
        if c.name in cells:
            assert c.keys == cells[c.name]


def test_identical_configs_in_two_regimes_share_a_trial_and_different_ones_do_not():
    s = spec({"regularization": ["none", "dropout"], "reg_small": SMALL}, seeds=1)
    keys = {c.name: c.keys for c in s.plan()[1]}
    assert keys["regularization=dropout"] == keys["baseline=baseline"]
    assert keys["reg_small=none"] != keys["regularization=none"]  # 300 images vs 2048


def test_equal_steps_levels_scale_epochs_and_warmup_with_the_batch_size():
    steps = {"kind": "batch_size", "levels": [32, 64, 128, 512], "equal_steps": True,
             "lr_scaling": "linear", "warmup_epochs": 1}  # fmt: skip
    s = spec({"steps": steps})
    cfgs = {lv: c[0] for lv, c in configs(s, "steps").items()}
    assert {lv: c["epochs"] for lv, c in cfgs.items()} == {"32": 1, "64": 2, "128": 4, "512": 16}
    assert {lv: c["warmup_epochs"] for lv, c in cfgs.items()} == {
        "32": 0.25, "64": 0.5, "128": 1.0, "512": 4.0}  # fmt: skip
    assert cfgs["512"]["lr"] == pytest.approx(4e-3) and cfgs["32"]["lr"] == pytest.approx(2.5e-4)
    steps = {lv: steps_per_epoch(c) * c["epochs"] for lv, c in cfgs.items()}
    assert set(steps.values()) == {64}  # 2,048 images: the same number of steps at each
    assert s.factor("steps").reference == "128"


def test_equal_steps_without_lr_scaling_keeps_the_rate_and_shares_the_reference():
    s = spec({"steps": {"kind": "batch_size", "levels": [64, 128], "equal_steps": True}})
    cfgs = configs(s, "steps")
    assert cfgs["64"][0]["epochs"] == 2 and cfgs["64"][0]["lr"] == 1e-3
    assert s.plan()[1][0].keys == next(c.keys for c in s.plan()[1] if c.name == "steps=128")


def test_square_root_lr_scaling():
    s = spec({"b": {"kind": "batch_size", "levels": [32, 512], "lr_scaling": "sqrt"}})
    assert s.factor("b").level("512").overrides["lr"] == pytest.approx(1e-3 * math.sqrt(4))
    assert s.factor("b").level("32").overrides["lr"] == pytest.approx(1e-3 * math.sqrt(0.25))


def test_the_lr_sweep_uses_seeds_the_study_does_not():
    sweep = {"multipliers": [0.5, 2], "extend": 1}
    s = spec({"optimizer": {"levels": ["sgd", "adam"], "lr_sweep": sweep}}, seeds=3)
    trials, cells = s.plan()
    sweep_seeds = {t.seed for t in trials if t.kind == "sweep"}
    main_seeds = {t.seed for t in trials if t.kind == "main" and t.tune_lr}
    assert main_seeds == {0, 1, 2} and sweep_seeds == {3, 4}  # two by default
    # the seed-0 main trial of sgd is no re-run of a sweep trial
    assert not {t.key for t in trials if t.kind == "sweep"} & {k for c in cells for k in c.keys}


def test_an_lr_sweep_on_study_seeds_is_refused():
    with pytest.raises(CnnlabError, match=r"lr_sweep\.seeds: seed\(s\) \[0\] are also study"):
        spec({"optimizer": {"levels": ["sgd"], "lr_sweep": {"seeds": [0]}}}, seeds=2)
    s = spec({"optimizer": {"levels": ["sgd"], "lr_sweep": {"seeds": [7, 8]}}}, seeds=2)
    assert {t.seed for t in s.plan()[0] if t.kind == "sweep"} == {7, 8}


def test_the_sweep_has_its_own_budget_inside_the_factors_regime():
    sweep = {"epochs": 2, "train_limit": 500, "extend": 0}
    s = spec({"optimizer": {"levels": ["sgd"], "budget": {"epochs": 6}, "lr_sweep": sweep}})
    trials, _ = s.plan()
    sweep = [t.config for t in trials if t.kind == "sweep"]
    main = [t.config for t in trials if t.kind == "main" and t.tune_lr]
    assert {(c["epochs"], c["train_limit"]) for c in sweep} == {(2, 500)}
    assert {(c["epochs"], c["train_limit"]) for c in main} == {(6, 2048)}


@pytest.mark.parametrize(
    "factor, where",
    [
        ({**SMALL, "budget": {"batch_size": 3}}, "unknown field(s) in factors.f.budget"),
        ({**SMALL, "baseline": {"seed": 3}}, "unknown field(s) in factors.f.baseline"),
        ({**SMALL, "baseline": {"dropout": 1.5}}, "factors.f.baseline.dropout"),
        ({**SMALL, "budget": {"epochs": "many"}}, "factors.f.budget.epochs"),
        ({**SMALL, "baseline": [1]}, "factors.f.baseline"),
        ({**SMALL, "val_target": 2}, "factors.f.val_target"),
        ({**SMALL, "regime": ["x"]}, "factors.f.regime"),
        ({"kind": "batch_size", "levels": [48], "equal_steps": True}, "factors.f.levels[0]"),
        ({"kind": "batch_size", "levels": [64], "equal_steps": "yes"}, "factors.f.equal_steps"),
        ({"kind": "batch_size", "levels": [64], "lr_scaling": "cube"}, "factors.f.lr_scaling"),
        ({"kind": "optimizer", "levels": ["sgd"], "lr_sweep": {"extend": 11}},
         "factors.f.lr_sweep.extend"),
        ({"kind": "optimizer", "levels": ["sgd"], "lr_sweep": {"multipliers": [1.0], "extend": 1}},
         "factors.f.lr_sweep.extend"),
        ({"kind": "optimizer", "levels": ["sgd"], "lr_sweep": {"train_limit": 5}},
         "factors.f.lr_sweep.train_limit"),
    ],
)  # fmt: skip
def test_bad_regimes_are_refused_in_one_line_naming_the_field(factor, where):
    with pytest.raises(CnnlabError) as e:
        spec({"f": factor})
    assert where in str(e.value) and "\n" not in str(e.value)


def test_a_factorial_design_refuses_per_factor_regimes():
    with pytest.raises(CnnlabError, match="factors.b: a factorial design"):
        spec({"lr": [0.001, 0.003],
              "b": {"kind": "batch_size", "levels": [64, 128], "budget": {"epochs": 2}}},
             design="factorial")  # fmt: skip
