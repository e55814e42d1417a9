"""Spec parsing: profiles, levels -> configs, deduplicated trials, one-line errors."""

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import load_spec, parse_spec, profile_names
from cnnlab_testing import cnnlab

BASE = {"budget": {"train_limit": 1000, "epochs": 2, "val_size": 500}}


def spec(factors, **extra):
    return parse_spec({**BASE, "factors": factors, **extra}, default_name="t")


def test_builtin_profiles_parse_and_cover_the_four_factors():
    assert {"smoke", "quick", "standard"} <= set(profile_names())
    for name in ("smoke", "quick", "standard"):
        s = load_spec(profile=name)
        kinds = {f.kind for f in s.factors}
        assert {"kernel_size", "regularization", "batch_size", "optimizer"} <= kinds
    quick, standard = load_spec(profile="quick"), load_spec(profile="standard")
    assert len(quick.seeds) >= 3 and len(standard.seeds) >= 5
    assert standard.baseline.train_limit is None  # full data
    opt = standard.factor("optimizer")
    assert {lv.label for lv in opt.levels} >= {"sgd", "momentum", "rmsprop", "adagrad", "adam",
                                               "adamw", "nadam"}  # fmt: skip
    # version 3: every factor of the four compares its levels each at its own tuned rate
    for f in standard.factors:
        if f.kind in ("kernel_size", "regularization", "batch_size", "optimizer"):
            assert f.lr_sweep is not None and all(lv.tune_lr for lv in f.levels), f.name
            assert len(f.lr_sweep.seeds) >= 2 and not set(f.lr_sweep.seeds) & set(standard.seeds)
    kernel = {lv.label for lv in standard.factor("kernel_size").levels}
    assert {"3x3", "5x5", "7x7", "3x3 same", "5x5 same", "7x7 same"} <= kernel
    small = {lv.label for lv in standard.factor("regularization_small").levels}
    assert {"l2=0.0001", "l2=0.001", "dropout=0.25", "dropout=0.5"} <= small


def test_levels_become_config_overrides():
    s = spec({
        "kernel_size": ["3x3", 7, "first7x7"],
        "regularization": {"levels": ["none", "l2", "all"], "l2": 1e-3},
    })  # fmt: skip
    k = s.factor("kernel_size")
    assert k.level("7x7").overrides == {"kernel_size": 7, "first_kernel_size": None}
    assert k.level("first 7x7").overrides == {"first_kernel_size": 7}
    r = s.factor("regularization")
    assert r.level("l2").overrides == {"l2": 1e-3, "dropout": 0.0, "batch_norm": False,
                                       "augment": False}  # fmt: skip
    assert r.level("all").overrides["batch_norm"] and r.level("all").overrides["augment"]


def test_identical_configs_share_one_trial_and_the_baseline_is_the_reference():
    s = spec({"kernel_size": [3, 5], "regularization": ["none", "dropout"]}, seeds=2)
    trials, cells = s.plan()
    keys = {c.name: c.keys for c in cells}
    # tutorial baseline = 3x3 kernels with dropout 0.5: one trial per seed serves three cells
    assert keys["baseline=baseline"] == keys["kernel_size=3x3"] == keys["regularization=dropout"]
    assert len(trials) == 2 * 3  # baseline, 5x5, none per seed
    assert s.factor("kernel_size").reference == "3x3"
    assert s.factor("regularization").reference == "dropout"
    assert len({t.key for t in trials}) == len(trials)


def test_plan_is_deterministic_and_seed_major():
    a, _ = spec({"kernel_size": [3, 5]}, seeds=[4, 7]).plan()
    b, _ = spec({"kernel_size": [3, 5]}, seeds=[4, 7]).plan()
    assert [t.key for t in a] == [t.key for t in b]
    assert [t.seed for t in a] == [4, 4, 7, 7]


def test_a_field_added_at_its_default_keeps_digests_and_keys():
    """Studies stored before a TrainConfig field existed must still resume: a config dict
    without the field (written then) hashes like one with the field at its default."""
    from dataclasses import replace

    from cnnlab.study.spec.plan import planned_trial as _trial

    s = spec({"kernel_size": [3, 5]}, seeds=1)
    old_baseline = {k: v for k, v in s.source["baseline"].items() if k != "pool_padding"}
    assert replace(s, source={**s.source, "baseline": old_baseline}).digest == s.digest
    changed = s.baseline.replace(pool_padding="same").to_dict()
    assert replace(s, source={**s.source, "baseline": changed}).digest != s.digest
    for trial in s.plan()[0]:
        old = {k: v for k, v in trial.config.items() if k != "pool_padding"}
        again = _trial(trial.kind, old, trial.label, trial.tune_lr, trial.depends_on)
        assert again.key == trial.key
        same = {**trial.config, "pool_padding": "same"}
        assert _trial(trial.kind, same, trial.label, trial.tune_lr).key != trial.key


def test_a_trial_key_holds_the_weight_decay_its_optimizer_applies():
    """adamw's config names its (default) decay, so a trial trained at another decay is run
    again rather than reused; a decay that an optimizer ignores leaves its key alone, so the
    keys of studies stored while the default decay was 0 still match for every other one."""
    from cnnlab.study.spec.plan import planned_trial as _trial

    s = spec({"optimizer": ["adam", "adamw"]}, seeds=1)
    by_label = {t.label: t for t in s.plan()[0]}
    adam, adamw = by_label["optimizer=adam seed=0"], by_label["optimizer=adamw seed=0"]
    assert adam.config["weight_decay"] is None and adamw.config["weight_decay"] == 0.004

    def again(trial, **change):
        return _trial(trial.kind, {**trial.config, **change}, trial.label, trial.tune_lr,
                      trial.depends_on).key  # fmt: skip

    assert again(adam, weight_decay=0.0) == again(adam, weight_decay=0.3) == adam.key
    assert again(adamw, weight_decay=None) == adamw.key
    assert again(adamw, weight_decay=0.0) != adamw.key  # AdamW at 0 is Adam: not this trial
    assert again(adamw, weight_decay=0.05) != adamw.key


def test_linear_lr_scaling_and_warmup():
    s = spec(
        {"batch_size": {"levels": [32, 512], "lr_scaling": "linear", "warmup_epochs": 1}},
        baseline={"schedule": "cosine"},
    )
    lv = s.factor("batch_size").level("512")
    assert lv.overrides["lr"] == pytest.approx(1e-3 * 512 / 128)
    assert lv.overrides["warmup_epochs"] == 1.0


def test_optimizer_levels_depend_on_their_lr_sweep_and_its_bracketing_rounds():
    s = spec({"optimizer": {"levels": ["sgd", "adam"],
                            "lr_sweep": {"multipliers": [0.5, 2], "epochs": 1}}})  # fmt: skip
    trials, _ = s.plan()
    sweeps = [t for t in trials if t.kind == "sweep"]
    # per optimizer: the 2-rate grid, then 2 bracketing rounds (the default cap), two seeds
    assert len(sweeps) == 16 and trials[:16] == sweeps  # sweeps are queued first
    sgd = next(t for t in trials if t.kind == "main" and t.config["optimizer"] == "sgd")
    assert sgd.tune_lr and sgd.config["lr"] is None and len(sgd.depends_on) == 8
    assert (sgd.lr_source, sgd.lr_sweep) == ("tuned", "optimizer=sgd")
    grid = [t for t in sweeps if t.key in sgd.depends_on and not t.tune_lr]
    rounds = [t for t in sweeps if t.key in sgd.depends_on and t.tune_lr]
    assert {t.config["lr"] for t in grid} == {0.025, 0.1}
    # a round's rate is chosen when it runs, from everything swept before it
    assert [t.config["lr"] for t in rounds] == [None] * 4
    assert set(rounds[0].depends_on) == {t.key for t in grid}
    assert set(rounds[2].depends_on) == {t.key for t in grid} | {t.key for t in rounds[:2]}
    assert {(t.lr_source, t.lr_sweep) for t in sweeps} == {
        ("fixed", "optimizer=sgd"),
        ("fixed", "optimizer=adam"),
    }
    assert all(t.config["epochs"] == 1 for t in sweeps)


def test_factorial_design_crosses_levels():
    s = spec({"batch_size": [32, 256], "lr": [0.001, 0.003]}, design="factorial", seeds=2)
    trials, cells = s.plan()
    assert len(cells) == 4 and len(trials) == 8
    assert {c.name for c in cells} >= {"batch_size=32, lr=0.001", "batch_size=256, lr=0.003"}


@pytest.mark.parametrize(
    ("factors", "extra", "field"),
    [
        ({"colour": [1, 2]}, {}, "colour"),
        ({"kernel_size": []}, {}, "factors.kernel_size.levels"),
        ({"kernel_size": ["9x3"]}, {}, "factors.kernel_size.levels[0]"),
        ({"kernel_size": [3, 13]}, {}, "factors.kernel_size.levels[1]"),
        ({"regularization": ["none", "magic"]}, {}, "factors.regularization.levels[1]"),
        ({"optimizer": ["adam", "lion"]}, {}, "factors.optimizer.levels[1]"),
        ({"batch_size": [0]}, {}, "factors.batch_size.levels[0]"),
        ({"dropout": [0.2, 1.5]}, {}, "factors.dropout.levels[1]"),
        ({"kernel_size": [3, 3]}, {}, "factors.kernel_size.levels"),
        ({"kernel_size": [3]}, {"seeds": 0}, "seeds"),
        ({"kernel_size": [3]}, {"design": "latin"}, "design"),
        ({"kernel_size": {"levels": [3], "reference": "5x5"}}, {}, "reference"),
        ({"batch_size": {"levels": [32], "lr_scaling": "linear"}}, {}, "warmup_epochs"),
        ({"kernel_size": {"levels": [3], "speed": 2}}, {}, "speed"),
    ],
)
def test_bad_specs_name_the_field(factors, extra, field):
    with pytest.raises(CnnlabError, match=field.replace("[", r"\[").replace("]", r"\]")):
        spec(factors, **extra)


def test_unknown_top_level_and_baseline_fields():
    with pytest.raises(CnnlabError, match="factorz"):
        parse_spec({"factorz": {}})
    with pytest.raises(CnnlabError, match="kernal_size"):
        parse_spec({"baseline": {"kernal_size": 3}, "factors": {"kernel_size": [3]}})
    with pytest.raises(CnnlabError, match="factors"):
        parse_spec({"factors": {}})


def test_spec_files_yaml_and_toml(tmp_path):
    (tmp_path / "s.toml").write_text(
        "seeds = 2\n[budget]\ntrain_limit = 500\n[factors]\nkernel_size = [3, 5]\n"
    )
    s = load_spec(tmp_path / "s.toml")
    assert s.name == "s" and s.seeds == (0, 1) and s.baseline.train_limit == 500
    (tmp_path / "bad.yaml").write_text("factors: [unclosed\n")
    with pytest.raises(CnnlabError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(CnnlabError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(CnnlabError, match="unknown profile"):
        load_spec(profile="huge")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("factors:\n  colour: [1, 2]\n", "unknown factor 'colour'"),
        ("factors:\n  kernel_size: {levels: [3, 'big']}\n", "factors.kernel_size.levels[1]"),
        ("factors:\n  regularization: {levels: []}\n", "factors.regularization.levels"),
    ],
)
def test_cli_bad_spec_is_one_line_and_exit_2(tmp_path, text, needle):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    proc = cnnlab("study", "run", path, "--storage", f"sqlite:///{tmp_path}/s.db")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: ") and needle in lines[0]
    assert not (tmp_path / "s.db").exists()  # nothing created before the spec is valid
