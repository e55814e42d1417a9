"""The shared config behaviour, checked on both pipelines' configs."""

import json

import pytest

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
