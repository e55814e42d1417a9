"""Property: whatever a spec holds, parsing either gives a spec whose plan is finite and
plannable, or raises CnnlabError with one line. No other exception may escape."""

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.errors import CnnlabError
from cnnlab.fmnist.config import PRESETS, TrainConfig
from cnnlab.study.spec import parse_spec, spec_from_source
from cnnlab.study.spec.factors import FACTOR_KINDS, REGULARIZATION_LEVELS
from cnnlab.study.spec.file import parse_text

FIELDS = sorted(TrainConfig.__dataclass_fields__)
# words the parser knows, so that random specs often reach deep into it
WORDS = [*FIELDS, *FACTOR_KINDS, *REGULARIZATION_LEVELS, *PRESETS, "levels", "kind",
         "reference", "lr_scaling", "linear", "warmup_epochs", "tune_lr", "lr_sweep",
         "multipliers", "seeds", "ofat", "factorial", "3x3", "first7x7", "adam", "sgd", "cosine",
         "../x", "a;b"]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-3, max_value=600)
    | st.floats()
    | st.sampled_from([1e-3, 0.5, 1e26, 1e400, -1.0])
    | st.text(max_size=10)
    | st.sampled_from(WORDS)
)
keys = st.sampled_from(WORDS) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(keys, kids, max_size=4),
    max_leaves=25,
)
factor_defs = st.lists(values, min_size=1, max_size=4) | st.dictionaries(
    st.sampled_from(
        [
            "levels",
            "kind",
            "reference",
            "l2",
            "dropout",
            "lr_scaling",
            "warmup_epochs",
            "tune_lr",
            "lr_sweep",
        ]
    ),  # fmt: skip
    values | st.lists(values, min_size=1, max_size=4),
    max_size=4,
)
junk_specs = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["study", "../x", "a;b", ""]) | values,
        "description": values,
        "design": st.sampled_from(["ofat", "factorial"]) | values,
        "seeds": st.integers(min_value=-2, max_value=4) | values,
        "budget": st.dictionaries(st.sampled_from(["epochs", "train_limit", "val_size"]), values),
        "baseline": st.dictionaries(st.sampled_from([*FIELDS, "preset"]), values, max_size=3),
        "val_target": st.floats() | values,
        "factors": st.dictionaries(st.sampled_from(WORDS) | keys, factor_defs, max_size=3),
    },
)


def levels(*choices):
    return st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True)


def mostly(good, bad=values):
    """Good values seven times in eight, so that many specs get past all their checks."""
    return st.one_of(*[good] * 7, bad)


sweep = st.fixed_dictionaries(
    {},
    optional={
        "multipliers": mostly(st.lists(st.sampled_from([0.3, 1, 3.0]), min_size=1, max_size=2)),
        "epochs": mostly(st.integers(1, 3)),
        "seeds": mostly(st.integers(1, 2) | st.lists(st.integers(0, 9), min_size=1, max_size=2)),
    },
)
good_factors = st.fixed_dictionaries(
    {},
    optional={
        "kernel_size": mostly(levels(1, 3, 5, 7, 13, "5x5", "first7x7", "first 5x5"), factor_defs),
        "regularization": mostly(levels(*REGULARIZATION_LEVELS), factor_defs),
        "batch_size": mostly(levels(16, 128, 512), factor_defs),
        "batch_size_scaled": mostly(
            st.fixed_dictionaries(
                {
                    "kind": st.just("batch_size"),
                    "levels": levels(32, 256),
                    "lr_scaling": mostly(st.just("linear")),
                    "warmup_epochs": mostly(st.just(0)),
                },
            ),  # fmt: skip
            factor_defs,
        ),
        "optimizer": mostly(
            st.fixed_dictionaries(
                {"levels": levels("adam", "sgd", "rmsprop")},
                optional={"lr_sweep": mostly(sweep), "tune_lr": mostly(st.booleans())},
            ),
            factor_defs,
        ),
        "lr": mostly(levels(1e-4, 1e-3, 3e-3), factor_defs),
        "dropout": mostly(levels(0.0, 0.3, 0.6), factor_defs),
    },
)
# valid specs with some parts replaced by junk: they reach planning, and every check on the way
near_valid_specs = st.fixed_dictionaries(
    {"factors": good_factors},
    optional={
        "name": mostly(st.sampled_from(["s", "my-study.v2"])),
        "design": mostly(st.sampled_from(["ofat", "factorial"])),
        "seeds": mostly(st.integers(1, 3) | st.lists(st.integers(0, 9), min_size=1, max_size=3)),
        "budget": st.fixed_dictionaries(
            {},
            optional={
                "epochs": mostly(st.integers(1, 3)),
                "train_limit": mostly(st.integers(100, 2000)),
                "val_size": mostly(st.integers(100, 1000)),
            },
        ),
        "baseline": st.fixed_dictionaries(
            {},
            optional={
                "preset": mostly(st.sampled_from(list(PRESETS))),
                "schedule": mostly(st.sampled_from(["constant", "cosine"])),
                "lr": mostly(st.floats(1e-4, 0.1)),
                "dropout": mostly(st.floats(0, 0.9)),
            },
        ),
        "val_target": mostly(st.floats(0.1, 1.0)),
    },
)
specs = junk_specs | near_valid_specs

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


def _check(data):
    try:
        spec = parse_spec(data)
    except CnnlabError as e:
        assert "\n" not in str(e)
        return
    trials, cells = spec.plan()
    assert trials and cells and spec.digest
    assert all(_finite(v) for t in trials for v in t.config.values())
    assert spec_from_source(spec.source).digest == spec.digest  # what a study stores reloads


@pytest.mark.slow
@FUZZ
@given(specs)
def test_random_specs_parse_or_fail_with_one_cnnlab_error(data):
    _check(data)


@FUZZ
@given(values)
def test_any_value_as_a_whole_spec_fails_cleanly(data):
    _check(data)


@pytest.mark.slow
@FUZZ
@given(specs, st.sampled_from(["yaml", "toml"]))
def test_spec_text_round_trip_through_the_file_parser(data, fmt):
    """As YAML text, the same specs take the file path: loader, limits, then the parser."""
    text = yaml.safe_dump(data) if fmt == "yaml" else _toml_ish(data)
    try:
        _check(parse_text(text, fmt, "fuzz"))
    except CnnlabError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.text(max_size=200), st.sampled_from(["yaml", "toml"]))
def test_random_text_is_read_or_refused_in_one_line(text, fmt):
    try:
        parse_text(text, fmt, "fuzz")
    except CnnlabError as e:
        assert "\n" not in str(e)


def _toml_ish(data) -> str:
    """Key = value lines from repr: often invalid TOML, which must fail cleanly too."""
    return "\n".join(f"{k} = {v!r}".replace("None", '""') for k, v in data.items())
