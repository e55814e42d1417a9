"""How a trial looks to optuna-dashboard: learning curves as intermediate values, the seed as a
user attribute (not a "hyperparameter"), and studies stored before that still resume."""

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import TrialState

from cnnlab.errors import CnnlabError
from cnnlab.study import load_spec, run_study
from cnnlab.study import storage as st
from cnnlab.study.storage import _optuna
from cnnlab.study.storage.format import DIGEST_ATTR, PLAN_ATTRS, SPEC_ATTR, plain
from cnnlab.study.storage.queue import _param_space, _param_value


def _complete(url, name):
    study = st.load_study(st.open_storage(url), name)
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def test_each_completed_trial_reports_its_validation_curve_as_intermediate_values(
    finished_fake_study,
):
    trials = _complete(finished_fake_study["url"], "fake")
    assert trials
    for t in trials:
        history = t.user_attrs["history"]
        curve = {row["epoch"]: row["val_accuracy"] for row in history}
        assert t.intermediate_values == curve
        assert t.intermediate_values[max(curve)] == t.value  # the last epoch is the value
    # sweeps train fewer epochs than main trials: each curve is the trial's own
    assert {len(t.intermediate_values) for t in trials} == {1, 2}


def test_the_seed_is_a_user_attribute_and_not_a_param(finished_fake_study):
    trials = _complete(finished_fake_study["url"], "fake")
    for t in trials:
        assert "seed" not in t.params and "seed" not in t.distributions
        assert t.user_attrs["seed"] == t.user_attrs["config"]["seed"]
    varied = set().union(*(t.params for t in trials))
    assert {"kernel_size", "batch_size", "optimizer"} <= varied  # design fields stay params
    main = {t.user_attrs["seed"] for t in trials if t.user_attrs["kind"] == "main"}
    sweep = {t.user_attrs["seed"] for t in trials if t.user_attrs["kind"] == "sweep"}
    assert main == {0, 1, 2}  # the spec's seeds
    assert sweep and not sweep & main  # the LR sweep tunes on seeds the study does not use


def _enqueue_old_format(url, name, spec):
    """A study as cnnlab stored it before the seed left the params: seed param + user attr."""
    trials, _ = spec.plan()
    study = optuna.create_study(storage=st.open_storage(url), study_name=name, direction="maximize")
    study.set_user_attr(SPEC_ATTR, spec.source)
    study.set_user_attr(DIGEST_ATTR, spec.digest)
    space = _param_space(trials)
    seeds = [t.seed for t in trials]
    for t in trials:
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING,
            params={**{k: _param_value(t.config[k]) for k in space}, "seed": t.seed},
            distributions={**space, "seed": IntDistribution(min(seeds), max(seeds))},
            user_attrs={a: plain(getattr(t, a)) for a in PLAN_ATTRS},
        ))  # fmt: skip
    return study


@pytest.mark.slow
def test_a_study_stored_with_the_seed_as_a_param_resumes_and_reads_back(
    small_spec, tmp_path, fake_env
):
    url = f"sqlite:///{tmp_path}/old.db"
    spec = load_spec(small_spec)
    _enqueue_old_format(url, "small", spec)
    summary = run_study(spec, url, "small", 1, trainer="fake_trainer:trainer", progress=False)
    planned = len(spec.plan()[0])
    assert (summary.enqueued, summary.complete) == (0, planned)  # nothing queued twice
    study = st.load_study(st.open_storage(url), "small")
    records = st.completed_records(study)
    assert len(records) == planned
    for t in study.get_trials(deepcopy=False):
        assert t.params["seed"] == t.user_attrs["seed"] == records[t.user_attrs["key"]].seed
        assert len(t.intermediate_values) == t.user_attrs["config"]["epochs"] == 2


def test_a_requeued_old_trial_keeps_its_seed_as_a_user_attribute_only(small_spec, tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    study = _enqueue_old_format(url, "small", load_spec(small_spec))
    old = study.get_trials()[0]
    assert _optuna.set_state(study, _optuna.trial_id(old), TrialState.FAIL)
    assert st.requeue(study, _optuna.get_trial(study, _optuna.trial_id(old)))
    copy = study.get_trials()[-1]
    assert copy.state == TrialState.WAITING and copy.number != old.number
    assert "seed" not in copy.params and copy.user_attrs["seed"] == old.params["seed"]
    assert copy.params == {k: v for k, v in old.params.items() if k != "seed"}


def test_a_spec_of_an_older_format_is_one_line_and_weight_decay_0_is_kept(tmp_path):
    """Version 1 wrote an unset weight decay out as 0.0; no study of it is read (the published
    ones were migrated), it is refused in one line. A spec that asks for 0.0 keeps it."""
    from cnnlab.study.spec import parse_spec
    from cnnlab.study.storage.format import SPEC_FORMAT, SPEC_FORMAT_ATTR

    data = {"budget": {"train_limit": 1000, "epochs": 2, "val_size": 500}, "seeds": 1,
            "factors": {"optimizer": ["adam", "adamw"]}}  # fmt: skip
    spec = parse_spec(data, default_name="opt")
    url = f"sqlite:///{tmp_path}/s.db"
    store = st.open_storage(url)
    old = optuna.create_study(storage=store, study_name="old")  # as version 1 stored it
    old.set_user_attr(SPEC_ATTR, spec.source)
    old.set_user_attr(DIGEST_ATTR, spec.digest)
    with pytest.raises(CnnlabError, match="stored by an older cnnlab"):
        st.stored_spec(old)

    keys = {t.key for t in spec.plan()[0]}
    zero = parse_spec({**data, "baseline": {"weight_decay": 0.0}}, default_name="zero")
    study, _ = st.prepare_study(url, store, "zero", zero)
    assert study.user_attrs[SPEC_FORMAT_ATTR] == SPEC_FORMAT
    kept = {t.label: t for t in st.stored_spec(study).plan()[0]}
    assert kept["optimizer=adamw seed=0"].config["weight_decay"] == 0.0
    assert {t.key for t in kept.values()} == {t.key for t in zero.plan()[0]} != keys
