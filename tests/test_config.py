"""Typed configs: dict <-> dataclass round trips, coercion, and errors that name the key and file."""

import pytest

import lgfn_graph as L
from lgfn_graph.config import (ConfigError, EvalConfig, RunConfig, apply_override, from_dict, load_config, to_dict,
                               write_config)
from lgfn_graph.task import TaskConfig


def _error(fn, *args) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args)
    return str(e.value)


def test_nested_round_trip_through_yaml(tmp_path):
    cfg = RunConfig(
        task=TaskConfig("tiny_frag", max_fragments=2, reward="qed"),
        model=L.ModelConfig(hidden=32, conditioning="logit+layer", state_flow=True),
        train=L.TrainConfig(steps=7, objective="subtb", beta=L.BetaSampler(2.0, 16.0, "log_uniform"),
                            explore_beta=L.BetaSampler(1.0, 8.0, "annealing", window=0.5)),
        eval=EvalConfig([1.0, 3.5], n=5, seed=4), out=str(tmp_path / "run"))
    data = to_dict(cfg)
    assert data["train"]["beta"] == {**to_dict(L.BetaSampler()), "low": 2.0, "high": 16.0, "kind": "log_uniform"}
    assert from_dict(RunConfig, data) == cfg
    write_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert from_dict(RunConfig, {}) == RunConfig() == load_config(None)


def test_values_are_coerced_to_the_annotated_types():
    cfg = from_dict(RunConfig, {"train": {"lr": "1e-3", "beta": {"low": 2, "high": 8}, "steps": 20.0},
                                "eval": {"betas": "1, 4,16"}, "out": 2024, "task": {"max_fragments": None}})
    assert cfg.train.lr == 1e-3 and cfg.train.steps == 20 and type(cfg.train.steps) is int
    assert type(cfg.train.beta.low) is float and cfg.eval.betas == [1.0, 4.0, 16.0] and cfg.out == "2024"
    # a section given in part keeps the rest of the field's default (U[1, 32]), not the class's
    assert from_dict(RunConfig, {"train": {"beta": {"kind": "log_uniform"}}}).train.beta == \
        L.BetaSampler(1.0, 32.0, "log_uniform")
    assert from_dict(RunConfig, {"train": {"explore_beta": None}}).train.explore_beta is None


def test_unknown_key_names_the_dotted_key_and_the_closest_one():
    assert _error(from_dict, RunConfig, {"train": {"stpes": 3}}) == \
        "unknown key 'train.stpes' (did you mean 'train.steps'?)"
    assert _error(from_dict, RunConfig, {"train": {"beta": {"hihg": 3}}}) == \
        "unknown key 'train.beta.hihg' (did you mean 'train.beta.high'?)"
    assert _error(from_dict, EvalConfig, {"zzz": 1}) == "unknown key 'zzz' (valid keys: betas, n, seed)"


@pytest.mark.parametrize("data, message", [
    ({"train": {"steps": "ten"}}, "'train.steps' must be an integer, got 'ten'"),
    ({"train": {"steps": 2.5}}, "'train.steps' must be an integer, got 2.5"),
    ({"train": {"symmetry_correction": 1}}, "'train.symmetry_correction' must be true or false, got 1"),
    ({"train": {"beta": "hot"}}, "'train.beta' must be a number or a mapping of keys to values, got 'hot'"),
    ({"train": {"beta": 0}}, "'train.beta' must be finite in float32 and > 0, got 0.0"),
    ({"eval": {"betas": [1, "hot"]}}, "'eval.betas[1]' must be a number, got 'hot'"),
    ({"task": {"max_fragments": "x"}}, "'task.max_fragments' must be an integer or null, got 'x'"),
    ({"model": {"conditioning": "lgoit"}}, "'model.conditioning' must be one of"),
    ({"train": {"beta": {"low": 8, "high": 2}}}, "'train.beta.low' must be <= high (2.0), got 8.0"),
    ({"eval": {"betas": [1, -2]}}, "'eval.betas[1]' must be finite in float32 and > 0, got -2.0"),
    ({"task": {"name": "qm9"}}, "'task.name' must be one of ('qed_frag', 'seh_frag', 'tiny_frag'), got 'qm9'"),
])
def test_bad_values_name_the_key_and_what_was_expected(data, message):
    assert _error(from_dict, RunConfig, data).startswith(message)


def test_overrides_set_nested_keys_from_yaml_scalars():
    cfg = load_config(None, ["train.steps=10", "model.conditioning=layer", "train.beta.high=64",
                             "train.explore_beta={low: 2, high: 4}", "eval.betas=[1, 8]", "task.name=tiny_frag"])
    assert cfg.train.steps == 10 and cfg.model.conditioning == "layer"
    assert cfg.train.beta == L.BetaSampler(1.0, 64.0) and cfg.train.explore_beta == L.BetaSampler(2.0, 4.0)
    assert cfg.eval.betas == [1.0, 8.0] and cfg.out == "runs/tiny_frag"
    assert load_config(None, ["train.steps=10", "train.steps=20"]).train.steps == 20  # in order
    assert apply_override({"train": {"lr": 0.1}}, RunConfig, "train.beta.low=2") == \
        {"train": {"lr": 0.1, "beta": {"low": 2}}}


@pytest.mark.parametrize("override, message", [
    ("train.stpes=10", "override 'train.stpes=10': unknown key 'train.stpes' (did you mean 'train.steps'?)"),
    ("modle.hidden=8", "override 'modle.hidden=8': unknown key 'modle' (did you mean 'model'?)"),
    ("out.x=1", "override 'out.x=1': 'out' is a string: it has no key 'x'"),
    ("train.steps", "override 'train.steps' is not key=value (e.g. train.steps=100)"),
    ("train.steps=ten", "override 'train.steps=ten': 'train.steps' must be an integer, got 'ten'"),
    ("train.beta={low: 1", "override 'train.beta={low: 1': the value is not YAML (line 1: expected ',' or '}'"),
])
def test_bad_overrides_name_the_override(override, message):
    assert _error(load_config, None, [override]).startswith(message)


def test_yaml_file_errors_name_the_file(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  stpes: 3\n")
    assert _error(load_config, typo) == f"{typo}: unknown key 'train.stpes' (did you mean 'train.steps'?)"
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  steps: [3\n")
    assert _error(load_config, broken).startswith(f"{broken}: not valid YAML (line 3:")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    assert _error(load_config, listed).startswith(f"{listed}: must be a mapping")
    assert _error(load_config, tmp_path / "nope.yaml") == f"config file not found: {tmp_path / 'nope.yaml'}"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == RunConfig()
    # an override's error is the override's, even when the file is fine
    assert _error(load_config, empty, ["eval.n=0"]) == "override 'eval.n=0': 'eval.n' must be an integer >= 1, got 0"
