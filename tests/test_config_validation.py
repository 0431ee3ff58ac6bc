"""Every config field is type- and range-checked where the config is made.

The properties, for each field of every config dataclass a run reads (``TaskConfig``,
``ModelConfig``, ``TrainConfig`` and its ``BetaSampler``, ``EvalConfig``, ``RunConfig``): an
out-of-range or ill-typed value raises a ``ValueError`` naming ``Class.field`` from Python and a
``ConfigError`` naming the dotted key from a config (``'train.lr' must be ...``); any in-range
values construct, the same from Python and from plain data, and survive ``to_dict`` ->
YAML -> ``from_dict``.
"""
import math
import string
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lgfn_graph as L
from lgfn_graph.checks import SEED_MAX, is_import_path
from lgfn_graph.config import ConfigError, EvalConfig, RunConfig, from_dict, load_config, to_dict

FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# values that are no number, from Python or in a config file ("" and "hot" do not parse as one)
NOT_NUMBERS = st.sampled_from(["hot", "", True, False])


def fuzz(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- what each field accepts: (valid values, values invalid from Python and from a file alike) --
def ints(low: int, high: int | None = None, optional: bool = False):
    top = high if high is not None else low + 10**6
    bad = [st.integers(max_value=low - 1), st.floats(-1e6, 1e6).filter(lambda x: not x.is_integer()), NOT_NUMBERS]
    if high is not None:
        bad.append(st.integers(min_value=high + 1))
    valid = st.integers(low, top)
    return (st.one_of(st.none(), valid) if optional else valid), st.one_of(*bad, *([] if optional else [st.none()]))


def reals(low: float = -math.inf, high: float = math.inf, low_open: bool = False, float32: bool = False,
          optional: bool = False):
    top = min(high, FLOAT32_MAX if float32 else math.inf)

    def ok(x: float) -> bool:
        return math.isfinite(x) and (low < x if low_open else low <= x) and x <= top

    valid = st.floats(max(low, -1e300), min(top, 1e300), exclude_min=low_open, allow_nan=False, allow_infinity=False)
    bad = st.one_of(st.floats().filter(lambda x: not ok(x)), st.sampled_from([math.nan, math.inf, -math.inf]),
                    NOT_NUMBERS, *([] if optional else [st.none()]))
    return (st.one_of(st.none(), valid) if optional else valid), bad


def choices(values, optional: bool = False):
    bad = st.one_of(st.text(max_size=6).filter(lambda s: s not in values), st.integers(), st.booleans(),
                    *([] if optional else [st.none()]))
    valid = st.sampled_from(list(values))
    return (st.one_of(st.none(), valid) if optional else valid), bad


def booleans():
    return st.booleans(), st.one_of(st.integers(0, 1), st.sampled_from(["yes", "true", None]))


def paths(optional: bool = True):
    valid = st.text(string.ascii_letters + "/_.-", min_size=1, max_size=12)
    return (st.one_of(st.none(), valid) if optional else valid), st.just("")


DEVICE = (st.just("cpu"), st.sampled_from(["gpu", "", "meta", "cpu:x", "tpu"]))
POSITIVE = reals(0, low_open=True)
BETA = reals(0, low_open=True, float32=True)

# a built-in name or an import path, which is checked for its form only (nothing is imported)
_NAMED = choices(("qed_sa", "qed", "seh", "proxy"), optional=True)
REWARD = (st.one_of(_NAMED[0], st.sampled_from(["mypkg.rewards:score", "m:R", "_a.b_2:c"])),
          st.one_of(_NAMED[1].filter(lambda v: not is_import_path(v)),
                    st.sampled_from(["pkg:", ":fn", "pkg.fn", "a b:c", "pkg:a.b"])))

# (section, field) -> (valid, invalid); the section's class is the one at that key of a RunConfig
FIELDS = {
    ("task", "name"): choices(L.TASKS),
    ("task", "fragments"): paths(),
    ("task", "max_fragments"): ints(1, optional=True),
    ("task", "reward"): REWARD,
    ("task", "reward_model"): paths(),
    ("task", "proxy_weights"): paths(),
    ("task", "proxy_device"): DEVICE,
    ("task", "proxy_batch_size"): ints(1),
    ("task", "reward_workers"): ints(0),
    ("model", "hidden"): ints(1),
    ("model", "num_layers"): ints(1),
    ("model", "heads"): ints(1),
    ("model", "conv"): choices(L.nn.CONVS),
    ("model", "backbone"): choices(L.nn.BACKBONES),
    # the default backbone takes no keyword arguments; tests/nn/test_backbones.py checks those of the others
    ("model", "backbone_kwargs"): (st.sampled_from([{}, None]),
                                   st.one_of(st.integers(), st.text(max_size=4), st.just({"heads": 2}),
                                             st.just({1: 2}))),
    ("model", "conditioning"): choices(L.policy.MODES),
    ("model", "scaler"): choices(L.conditioning.SCALERS),
    ("model", "beta_encoding"): choices(L.conditioning.ENCODINGS),
    ("model", "logit_clip"): reals(0),
    ("model", "encoding_dim"): ints(2),
    ("model", "encoding_low"): reals(0, 1e6, low_open=True),
    ("model", "encoding_high"): reals(0, low_open=True),
    ("model", "backward_policy"): choices(L.policy.BACKWARD_POLICIES),
    ("model", "backward_conditioning"): choices(("logit", "none")),
    ("model", "state_flow"): booleans(),
    ("train", "steps"): ints(0),
    ("train", "batch_size"): ints(1),
    ("train", "lr"): POSITIVE,
    ("train", "lr_log_z"): POSITIVE,
    ("train", "epsilon"): reals(0, 1),
    ("train", "objective"): choices(L.OBJECTIVES),
    ("train", "subtb_lambda"): POSITIVE,
    ("train", "symmetry_correction"): booleans(),
    ("train", "seed"): ints(0, SEED_MAX),
    ("train", "grad_clip"): reals(0),
    ("train", "log_reward_floor"): POSITIVE,
    ("train", "on_invalid"): choices(("raise", "floor")),
    ("train", "checkpoint_every"): ints(0),
    ("train", "replay_capacity"): ints(0),
    ("train", "replay_fraction"): reals(0, 1),
    ("train", "replay_priority"): choices(("uniform", "reward")),
    ("train", "sample_db"): booleans(),
    ("train", "tensorboard"): booleans(),
    ("train", "backprop_through_sampling"): booleans(),
    ("train", "device"): DEVICE,
    ("train", "max_skipped_steps"): ints(1),
    ("train", "beta"): BETA,  # a number: the constant sampler
    ("train", "explore_beta"): reals(0, low_open=True, float32=True, optional=True),
    ("train.beta", "low"): reals(0, 1e6, low_open=True, float32=True),
    ("train.beta", "high"): BETA,
    ("train.beta", "kind"): choices(L.BETA_DISTRIBUTIONS),
    ("train.beta", "mean"): reals(optional=True),
    ("train.beta", "std"): POSITIVE,
    ("train.beta", "shape"): POSITIVE,
    ("train.beta", "scale"): POSITIVE,
    ("train.beta", "window"): reals(0, 1, low_open=True),
    ("eval", "betas"): (st.lists(BETA[0], min_size=1, max_size=4),
                        st.one_of(st.just([]), st.lists(BETA[0], max_size=2).flatmap(
                            lambda ok: BETA[1].map(lambda bad: [*ok, bad])))),
    ("eval", "n"): ints(1),
    ("eval", "seed"): ints(0, SEED_MAX),
    ("", "out"): paths(),
}
CLASSES = {"task": L.TaskConfig, "model": L.ModelConfig, "train": L.TrainConfig, "train.beta": L.BetaSampler,
           "eval": EvalConfig, "": RunConfig}


def test_every_field_of_every_config_is_covered():
    for section, cls in CLASSES.items():
        covered = {f for s, f in FIELDS if s == section}
        sections = {s.rpartition(".")[2] for s in CLASSES if s and s.rpartition(".")[0] == section}
        assert covered | sections == set(cls.__dataclass_fields__), cls


def _nested(section: str, name: str, value) -> dict:
    """``{"train": {"beta": {"low": value}}}`` for ``("train.beta", "low")``."""
    data = {name: value}
    for key in reversed(section.split(".") if section else []):
        data = {key: data}
    return data


@pytest.mark.parametrize("section, name", list(FIELDS), ids=[f"{s}.{n}".lstrip(".") for s, n in FIELDS])
@fuzz(15)
@given(data=st.data())
def test_a_bad_value_is_refused_naming_the_field(section, name, data):
    value = data.draw(FIELDS[section, name][1], label="value")
    cls = CLASSES[section]
    with pytest.raises(ValueError) as python:
        cls(**{name: value})
    assert str(python.value).startswith(f"{cls.__name__}.{name}"), str(python.value)
    with pytest.raises(ConfigError) as file:
        from_dict(RunConfig, _nested(section, name, value))
    key = f"{section}.{name}".lstrip(".")
    assert str(file.value).startswith(f"{key!r}" if name != "betas" else f"'{key}"), str(file.value)


@st.composite
def valid_run_data(draw) -> dict:
    """A whole run configuration of in-range values, as plain data."""
    data = {}
    for (section, name), (valid, _) in FIELDS.items():
        if section != "train.beta":
            node = data.setdefault(section, {}) if section else data
            node[name] = draw(valid)
    model, beta = data["model"], {name: draw(FIELDS["train.beta", name][0]) for s, name in FIELDS if s == "train.beta"}
    # the fields that constrain each other
    if (model["backbone"] == L.nn.BUILTIN and model["conv"] == "transformer") or model["backbone"] in L.nn.backbones.ATTENTION:
        model["hidden"] = model["heads"] * draw(st.integers(1, 8))
    if model["encoding_high"] <= model["encoding_low"]:
        model["encoding_high"] = model["encoding_low"] * 2
    beta["high"] = max(beta["high"], beta["low"])
    if data["task"]["reward_model"] is not None and data["task"]["reward"] not in (None, "proxy"):
        data["task"]["reward"] = draw(st.sampled_from([None, "proxy"]))  # the model file is the reward
    data["train"]["beta"] = draw(st.sampled_from([data["train"]["beta"], beta]))
    return data


@fuzz(75)
@given(data=valid_run_data())
def test_in_range_values_construct_the_same_from_python_and_from_data_and_round_trip(data):
    cfg = from_dict(RunConfig, data)
    train = dict(data["train"])
    if isinstance(train["beta"], dict):
        train["beta"] = L.BetaSampler(**train["beta"])
    made = RunConfig(L.TaskConfig(**data["task"]), L.ModelConfig(**data["model"]), L.TrainConfig(**train),
                     EvalConfig(**data["eval"]), data["out"])
    assert made == cfg
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    assert from_dict(RunConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg


@pytest.mark.parametrize("override, message", [
    ("train.steps=-5", "'train.steps' must be an integer >= 0, got -5"),
    ("train.lr=-1", "'train.lr' must be finite and > 0, got -1.0"),
    ("train.lr=nan", "'train.lr' must be finite and > 0, got nan"),
    ("train.epsilon=2", "'train.epsilon' must be finite and in [0, 1], got 2.0"),
    ("train.batch_size=0", "'train.batch_size' must be an integer >= 1, got 0"),
    ("model.hidden=0", "'model.hidden' must be an integer >= 1, got 0"),
    ("model.hidden=30", "'model.hidden' must be divisible by heads (4) with conv 'transformer', got 30"),
    ("train.explore_beta=0.0", "'train.explore_beta' must be finite in float32 and > 0, got 0.0"),
    ("train.beta=-4", "'train.beta' must be finite in float32 and > 0, got -4.0"),
    ("train.max_skipped_steps=0", "'train.max_skipped_steps' must be an integer >= 1, got 0"),
    ("eval.betas=0", "'eval.betas[0]' must be finite in float32 and > 0, got 0.0"),
])
def test_the_reported_overrides_are_refused(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == f"override {override!r}: {message}"


def test_a_number_means_one_beta():
    cfg = load_config(None, ["train.beta=4", "train.explore_beta=1e3", "eval.betas=1"])
    assert cfg.train.beta == L.BetaSampler.constant(4.0) and cfg.train.explore_beta == L.BetaSampler.constant(1e3)
    assert cfg.eval.betas == [1.0]
    assert L.TrainConfig(beta=4, explore_beta=2).explore_beta == L.BetaSampler.constant(2.0) == \
        L.TrainConfig(beta=2.0).beta
    assert EvalConfig(betas=8).betas == [8.0]
    assert from_dict(RunConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("make, message", [
    (lambda: L.TrainConfig(lr="1e-3"), "TrainConfig.lr must be a number, got '1e-3'"),
    (lambda: L.TrainConfig(steps=10.5), "TrainConfig.steps must be an integer, got 10.5"),
    (lambda: L.TrainConfig(beta="4"), "TrainConfig.beta must be a BetaSampler or a number, got '4'"),
    (lambda: L.ModelConfig(state_flow=1), "ModelConfig.state_flow must be True or False, got 1"),
    (lambda: L.TaskConfig(fragments=5), "TaskConfig.fragments must be a non-empty path or None, got 5"),
    (lambda: EvalConfig(betas="1,2"), "EvalConfig.betas must be a non-empty list of numbers, got '1,2'"),
    (lambda: RunConfig(train={"lr": 1.0}), "RunConfig.train must be a TrainConfig, got {'lr': 1.0}"),
])
def test_a_wrong_type_from_python_is_named(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert str(e.value) == message


def test_python_values_are_stored_in_their_plain_types():
    cfg = L.TrainConfig(steps=np.int64(5), lr=1, batch_size=8.0, sample_db=np.bool_(False))
    assert (type(cfg.steps), type(cfg.lr), type(cfg.batch_size), type(cfg.sample_db)) == (int, float, int, bool)
    assert L.TaskConfig(fragments=Path("a/b.json")).fragments == "a/b.json"
