"""The shared config behaviour, checked on both pipelines' configs."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.configs import FrozenConfig, declarations
from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import TrainConfig
from cnnlab.transfer.config import TransferConfig


@pytest.mark.parametrize(
    "config",
    [TrainConfig(filters=(16, 32, 64), l2=1e-4), TransferConfig(arch="resnet50", limit=20)],
    ids=["fmnist", "transfer"],
)
def test_config_round_trips_through_json(config):
    data = json.loads(json.dumps(config.to_dict()))
    assert type(config).from_dict(data) == config
    assert config.replace(seed=7).seed == 7 and config.seed == 0


@pytest.mark.parametrize("cls", [TrainConfig, TransferConfig])
def test_unknown_field_is_named(cls):
    with pytest.raises(CnnlabError, match="unknown config field.*colour"):
        cls.from_dict({**cls().to_dict(), "colour": "red"})


def test_to_dict_gives_lists_for_tuples():
    assert TrainConfig(filters=(8, 16)).to_dict()["filters"] == [8, 16]
    assert TrainConfig.from_dict({"filters": [8, 16]}).filters == (8, 16)


def test_validation_still_runs_from_dict():
    with pytest.raises(CnnlabError, match="filters"):
        TrainConfig.from_dict({"filters": [8, 16, 32, 64]})
    with pytest.raises(CnnlabError, match="strategy"):
        TransferConfig.from_dict({"strategy": "everything"})


# -- every field is checked by its declaration, whatever the source --------------------------


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (TrainConfig, {"l2": float("nan")}, "invalid --l2: must be a finite number, got nan"),
        (TrainConfig, {"lr": float("inf")}, "invalid --lr: must be a finite number, got inf"),
        (TrainConfig, {"lr": 10**400}, "invalid --lr: must be a finite number"),
        (TrainConfig, {"lr": "1e400"}, "invalid --lr: must be a number, got '1e400'"),
        (TrainConfig, {"lr": float("inf")}, "invalid --lr: must be a finite number, got inf"),
        (TrainConfig, {"seed": -1}, "invalid --seed: must be >= 0, got -1"),
        (TrainConfig, {"epochs": 0}, "invalid --epochs: must be >= 1, got 0"),
        (TrainConfig, {"epochs": 1e26}, "invalid --epochs: must be a whole number, got 1e+26"),
        (TrainConfig, {"epochs": 10**26}, "invalid --epochs: must be <= 1000"),
        (TrainConfig, {"epochs": "3"}, "invalid --epochs: must be a whole number, got '3'"),
        (TrainConfig, {"batch_size": True}, "invalid --batch-size: must be a whole number"),
        (TrainConfig, {"augment": 1}, "invalid --augment: must be true or false, got 1"),
        (TrainConfig, {"optimizer": 3}, "invalid --optimizer: must be text, got 3"),
        (TrainConfig, {"filters": [32, "64"]}, "invalid --filters: must be a list of one or"),
        (TrainConfig, {"filters": 32}, "invalid --filters: must be a list of one or more"),
        (TrainConfig, {"dropout": None}, "invalid --dropout: must be a number, got None"),
        (TransferConfig, {"lr": float("inf")}, "invalid --lr: must be a finite number, got inf"),
        (TransferConfig, {"seed": -1}, "invalid --seed: must be >= 0, got -1"),
        (TransferConfig, {"epochs": 0}, "invalid --epochs: must be >= 1, got 0"),
        (TransferConfig, {"image_size": "224"}, "invalid --image-size: must be a whole number"),
        (TransferConfig, {"mixup": float("nan")}, "invalid --mixup: must be a finite number"),
        (TransferConfig, {"weights": "no\x00file"}, "invalid --weights: 'no\\x00file' is"),
    ],
)
def test_each_bad_value_is_one_error_naming_the_flag(cls, data, message):
    with pytest.raises(CnnlabError) as error:
        cls.from_dict(data)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_field_is_checked_on_its_own_before_the_rules_that_relate_fields():
    # epochs 0 is wrong in itself; it is not reported as a warm-up that outlasts the run
    with pytest.raises(CnnlabError, match="^invalid --epochs:"):
        TrainConfig(epochs=0, warmup_epochs=0.5)
    with pytest.raises(CnnlabError, match="^invalid --warmup-epochs: must be less than --epochs"):
        TrainConfig(epochs=2, warmup_epochs=2)


def test_from_dict_needs_a_mapping_and_names_unknown_keys_of_any_type():
    with pytest.raises(CnnlabError, match="must be a mapping"):
        TrainConfig.from_dict([("epochs", 3)])
    with pytest.raises(CnnlabError, match="unknown config field.*: 1, colour"):
        TransferConfig.from_dict({1: 2, "colour": "red"})


def test_every_field_declares_help_and_numbers_declare_a_range():
    for cls in (TrainConfig, TransferConfig):
        for d in declarations(cls):
            assert d.help, f"{cls.__name__}.{d.name} has no help"
            if d.kind in (int, float, tuple):
                assert {d.ge, d.gt} != {None}, f"{cls.__name__}.{d.name} has no lower bound"


def test_a_field_without_a_declaration_is_a_programming_error():
    @dataclasses.dataclass(frozen=True)
    class Loose(FrozenConfig):
        size: int = 3

    with pytest.raises(TypeError, match="Loose.size is not declared with option"):
        declarations(Loose)


# -- fuzz: whatever a spec file or config.json holds, only CnnlabError escapes ---------------

_ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(10**400),
    st.floats(),  # nan and infinities included
    st.text(max_size=12),
    st.lists(st.integers(), max_size=4),
    st.lists(st.one_of(st.text(max_size=3), st.floats()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _plausible(d) -> st.SearchStrategy:
    """Values near what the field allows, so that fuzzing also reaches the cross-field rules."""
    if d.choices:
        return st.sampled_from(d.choices)
    low = next((b for b in (d.ge, d.gt) if b is not None), -5)
    high = next((b for b in (d.le, d.lt) if b is not None), low + 100)
    if d.kind is bool:
        return st.booleans()
    if d.kind is int:
        return st.integers(int(low) - 2, int(min(high, 10**6)) + 2)
    if d.kind is float:
        return st.floats(low - 1, min(high, 1e6) + 1)
    if d.kind is tuple:
        return st.lists(st.integers(int(low) - 1, 300), min_size=0, max_size=5)
    return st.text(max_size=12)


def _configs(cls) -> st.SearchStrategy:
    fields = {d.name: st.one_of(_plausible(d), _ANYTHING) for d in declarations(cls)}
    extra = st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), _ANYTHING, max_size=1)
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda data: st.one_of(st.just(data), extra.map(lambda more: data | more))
    )


@pytest.mark.parametrize("cls", [TrainConfig, TransferConfig])
@settings(max_examples=400, deadline=None, database=None)
@given(data=st.data())
def test_from_dict_of_random_values_and_types_raises_only_cnnlab_error(cls, data):
    raw = data.draw(_configs(cls))
    try:
        config = cls.from_dict(raw)
    except CnnlabError as error:
        message = str(error)
        assert message.startswith(("invalid --", "unknown config field")) and "\n" not in message
        return
    # what is accepted is a finite, JSON-ready config that reads back as itself
    text = json.dumps(config.to_dict(), allow_nan=False)
    assert cls.from_dict(json.loads(text)) == config
