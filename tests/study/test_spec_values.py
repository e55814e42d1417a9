"""Spec values are checked when the spec is parsed, and errors say where in the spec they are."""

import re

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study.spec import load_spec, parse_spec
from cnnlab.study.spec.checks import FIELD_KINDS, MAX_EPOCHS, MAX_TRIALS

BUDGET = {"train_limit": 1000, "epochs": 2, "val_size": 500}


def parse(**fields):
    return parse_spec({"budget": BUDGET, "factors": {"kernel_size": [3, 5]}, **fields})


@pytest.mark.parametrize(
    ("yaml_text", "where", "why"),
    [
        ("seeds: [-1]", "seeds[0]", "from 0 to"),
        ("seeds: [0, 4294967296]", "seeds[1]", "from 0 to"),
        ("seeds: 1e9", "seeds", "count"),
        ("seeds: 1000000000", "seeds", "1 to 1000 seeds"),
        ("seeds: [1, true]", "seeds[1]", "whole number"),
        ("budget: {epochs: 1e26}", "budget.epochs", "whole number"),
        ("budget: {epochs: 100000000000000000000000000}", "budget.epochs", "whole number"),
        (f"budget: {{epochs: {MAX_EPOCHS + 1}}}", "budget.epochs", f"at most {MAX_EPOCHS}"),
        ("budget: {epochs: 0}", "budget.epochs", "epochs"),
        ("budget: {train_limit: 2.5}", "budget.train_limit", "whole number"),
        ("baseline: {lr: 1e400}", "baseline.lr", "finite number"),
        ("baseline: {lr: .nan}", "baseline.lr", "finite number"),
        ("baseline: {l2: .inf}", "baseline.l2", "finite number"),
        ("baseline: {dropout: 1.5}", "baseline.dropout", "dropout"),
        ("baseline: {batch_norm: 1}", "baseline.batch_norm", "true or false"),
        ("baseline: {filters: [32, 64.5]}", "baseline.filters", "whole numbers"),
        ("baseline: {preset: [tutorial]}", "baseline.preset", "unknown preset"),
        ("val_target: .nan", "val_target", "(0, 1]"),
        ("val_target: true", "val_target", "(0, 1]"),
        ("design: [ofat]", "design", "one of"),
    ],
)
def test_bad_values_fail_at_parse_time_naming_where_they_are(tmp_path, yaml_text, where, why):
    path = tmp_path / "s.yaml"
    path.write_text(f"factors: {{kernel_size: [3, 5]}}\n{yaml_text}\n")
    with pytest.raises(CnnlabError) as e:
        load_spec(path)
    message = str(e.value)
    assert message.startswith(f"invalid spec field {where}: ") and why in message, message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("factors", "where"),
    [
        ({"lr": [1e-3, float("inf")]}, "factors.lr.levels[1]"),
        ({"lr": [1e-3, "1e400"]}, "factors.lr.levels[1]"),
        ({"l2": [0.0, float("nan")]}, "factors.l2.levels[1]"),
        ({"epochs": [1, 1e26]}, "factors.epochs.levels[1]"),
        ({"epochs": [1, 10**26]}, "factors.epochs.levels[1]"),
        ({"batch_size": [32, 10**400]}, "factors.batch_size.levels[1]"),
        ({"regularization": {"levels": ["l2"], "l2": float("inf")}}, "factors.regularization.l2"),
        ({"regularization": {"levels": ["l2"], "l2": True}}, "factors.regularization.l2"),
        ({"batch_size": {"levels": [32], "lr_scaling": "linear", "warmup_epochs": float("nan")}},
         "factors.batch_size.warmup_epochs"),
        ({"optimizer": {"levels": ["sgd"], "lr_sweep": {"multipliers": [1, float("inf")]}}},
         "factors.optimizer.lr_sweep.multipliers"),
        ({"optimizer": {"levels": ["sgd"], "lr_sweep": {"epochs": True}}},
         "factors.optimizer.lr_sweep.epochs"),
        ({"optimizer": {"levels": ["sgd"], "lr_sweep": {"seeds": [-1]}}},
         "factors.optimizer.lr_sweep.seeds[0]"),
        ({"optimizer": {"levels": ["sgd", ["adam"]]}}, "factors.optimizer.levels[1]"),
        ({"kernel_size": [3, "٣"]}, "factors.kernel_size.levels[1]"),
        ({"kernel_size": {"levels": [3, 5], "reference": [3]}}, "factors.kernel_size.reference"),
        ({"kernel_size": {"kind": ["kernel_size"], "levels": [3]}}, "factors.kernel_size"),
    ],
)  # fmt: skip
def test_bad_levels_and_factor_options_name_their_place(factors, where):
    with pytest.raises(CnnlabError, match=re.escape(where)) as e:
        parse_spec({"budget": BUDGET, "factors": factors})
    assert "\n" not in str(e.value)


def test_a_range_error_of_the_config_names_the_spec_field_that_caused_it():
    with pytest.raises(CnnlabError, match=r"^invalid spec field budget\.val_size: .*val-size"):
        parse(budget={**BUDGET, "val_size": 50})
    # two values fine alone but not together: the section is named
    with pytest.raises(CnnlabError, match=r"^invalid spec field baseline: .*warmup"):
        parse(baseline={"warmup_epochs": 3, "schedule": "cosine"})


def test_a_plan_beyond_the_trial_limit_is_refused_before_planning():
    factors = {"kernel_size": [1, 3, 5, 7, 9], "lr": [1e-4, 3e-4, 1e-3, 3e-3],
               "batch_size": [16, 32, 64, 128, 256]}  # fmt: skip
    ok = parse_spec({"budget": BUDGET, "factors": factors, "design": "factorial", "seeds": 5})
    assert len(ok.plan()[0]) == 5 * 4 * 5 * 5
    seeds = MAX_TRIALS // (5 * 4 * 5) + 1
    with pytest.raises(CnnlabError, match=f"at most {MAX_TRIALS}"):
        parse_spec({"budget": BUDGET, "factors": factors, "design": "factorial", "seeds": seeds})


def test_good_numbers_in_any_spelling_are_kept():
    s = parse(baseline={"lr": 2, "l2": 0, "dropout": 0.25}, seeds=[0, 4294967295], val_target=1)
    assert s.baseline.lr == 2 and s.baseline.l2 == 0.0 and s.seeds == (0, 4294967295)
    assert s.val_target == 1.0


def test_every_config_field_has_a_known_kind():
    """A TrainConfig field of a new type must be taught to the spec's value checks."""
    assert all(not kind.startswith("any") for kind in FIELD_KINDS.values()), FIELD_KINDS
