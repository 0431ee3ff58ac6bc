"""Typed run configurations: dataclasses read from YAML files and ``key.sub=value`` overrides.

A run is one :class:`RunConfig`; its sections are the library's own config dataclasses
(:class:`TaskConfig`, :class:`ModelConfig`, :class:`TrainConfig`) and :class:`EvalConfig`.
:func:`from_dict` builds any such (nested) dataclass from plain data, checking every key and
type against the annotations, and each dataclass checks the range of every value it is given
(:mod:`lgfn_graph.checks`), so a typo or a bad value fails before anything runs and says where.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar, Union

import yaml

from .checks import SEED_MAX, FieldError, check_int, check_path, check_reals
from .files import atomic_write
from .policy import ModelConfig
from .task import TaskConfig
from .trainer import TrainConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration has an unknown key, a value of the wrong type, or a value its section rejects."""


@dataclass
class EvalConfig:
    """The temperature sweep after training.

    Args:
        betas: the betas to sample at (each finite and > 0; a single number is a list of one).
        n: molecules sampled per beta, >= 1.
        seed: of the sampling, in ``[0, 2**63 - 1]``.
    """

    betas: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    n: int = 256
    seed: int = 0

    def __post_init__(self):
        check_reals(self, "betas", 0, low_open=True, float32=True)
        check_int(self, "n", 1)
        check_int(self, "seed", 0, SEED_MAX)


@dataclass
class RunConfig:
    """Everything a run needs: what to learn, the model, training, the sweep and where to write.

    The defaults are ``make run``'s: the ``qed_frag`` task, a 4-layer 128-wide Logit-GFN and
    1000 steps of trajectory balance with beta ~ U[1, 32], checkpointed every 250 steps.

    Args:
        task, model, train, eval: the sections.
        out: the output folder, a non-empty path (``None``: ``runs/<task name>``).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(checkpoint_every=250))
    eval: EvalConfig = field(default_factory=EvalConfig)
    out: str | None = None

    def __post_init__(self):
        for name, cls in (("task", TaskConfig), ("model", ModelConfig), ("train", TrainConfig), ("eval", EvalConfig)):
            if not isinstance(getattr(self, name), cls):
                raise FieldError(self, name, f"must be a {cls.__name__}, got {getattr(self, name)!r}")
        check_path(self, "out")
        if self.out is None:
            self.out = f"runs/{self.task.name}"


# -- dicts <-> dataclasses ------------------------------------------------------------------------
def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build the dataclass ``cls`` from a (nested) dict, coercing values to the annotated types.

    Keys missing from ``data`` keep their defaults. A nested dataclass given as a dict starts
    from the field's default, so ``{"train": {"beta": {"high": 64}}}`` moves only the top of
    the default beta range; one with a ``from_number`` classmethod also reads a number
    (``{"train": {"beta": 4}}`` is :meth:`BetaSampler.from_number`, the constant 4). Numbers
    become ``float`` where a float is expected (and strings such as ``"1e-3"``, which YAML
    leaves as text, too); a comma-separated string or a single value fills a list.

    Args:
        cls: a dataclass whose fields are annotated ``int``, ``float``, ``str``, ``bool``,
            ``list[...]``, ``dict[...]`` (a mapping passed as it is, for the dataclass to
            check), a dataclass, or any of these ``| None``.
        data: the values, e.g. a parsed YAML file.
        path: the dotted key of ``data`` itself, used in error messages.

    Raises:
        ConfigError: naming the full dotted key, for an unknown key (with the closest valid
            one), a missing required key, a value of the wrong type, or a value that ``cls``
            rejects (``'train.lr' must be finite and > 0, got -1.0``).
    """
    if not isinstance(data, dict):
        what = "a number or a mapping" if hasattr(cls, "from_number") else "a mapping"
        raise ConfigError(f"{_where(path)} must be {what} of keys to values, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown(str(key), list(fields), path))
    missing = [n for n, f in fields.items() if n not in data and _default(f) is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {_join(path, missing[0])!r}")
    kwargs = {name: _coerce(value, hints[name], _join(path, name), _default(fields[name]))
              for name, value in data.items()}
    return _build(lambda: cls(**kwargs), path)


def _build(make: Callable[[], T], path: str, whole: bool = False) -> T:
    """``make()``, with a ``ValueError`` raised as a :class:`ConfigError` naming ``path``: the
    dotted key of the field at fault when ``make`` builds the dataclass at ``path``, ``path``
    itself when the value there is ``whole`` (a number read by ``from_number``)."""
    try:
        return make()
    except FieldError as e:
        raise ConfigError(f"{(path if whole else _join(path, e.field))!r} {e.problem}") from None
    except ValueError as e:
        raise ConfigError(f"{_where(path)}: {e}") from None


def to_dict(obj: Any) -> Any:
    """The plain-data form of a (nested) dataclass, the inverse of :func:`from_dict`."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(value: Any, tp: Any, path: str, default: Any = dataclasses.MISSING, expected: str | None = None) -> Any:
    """``value`` as type ``tp``; ``expected`` describes ``tp`` in errors (``tp`` itself if ``None``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    expected = expected or _describe(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{path}: from_dict reads only 'X | None' unions, not {tp}")
        if value is None and len(inner) < len(args):
            return None
        return _coerce(value, inner[0], path, default, expected)
    if dataclasses.is_dataclass(tp):
        number = _scalar(value, float, path) if hasattr(tp, "from_number") else dataclasses.MISSING
        if number is not dataclasses.MISSING:
            return _build(lambda: tp.from_number(number), path, whole=True)
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            value = _merge(to_dict(default), value)
        return from_dict(tp, value, path)
    if tp is dict or origin is dict:
        # a free-form mapping (``ModelConfig.backbone_kwargs``): its owner checks keys and values
        if not isinstance(value, dict) and value is not None:
            raise ConfigError(f"{path!r} must be {expected}, got {_show(value)}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, (list, dict)) and value is not None:
            value = [value]  # eval.betas=4: one beta
        if not isinstance(value, list):
            raise ConfigError(f"{path!r} must be {expected}, got {_show(value)}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    scalar = _scalar(value, tp, path)
    if scalar is dataclasses.MISSING:
        raise ConfigError(f"{path!r} must be {expected}, got {_show(value)}")
    return scalar


def _scalar(value: Any, tp: Any, path: str) -> Any:
    """``value`` as ``tp``, or ``MISSING`` when it cannot be one. ``bool`` is never a number here."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool:
        return value if isinstance(value, bool) else dataclasses.MISSING
    if tp is str:
        return value if isinstance(value, str) else str(value) if number else dataclasses.MISSING
    if tp not in (int, float):
        raise TypeError(f"{path}: from_dict cannot read a field annotated {tp!r}")
    if isinstance(value, str):
        # YAML 1.1 reads 1e-3 and 1.0e3 as text; accept any spelling Python reads as a number
        try:
            value, number = float(value), True
        except ValueError:
            return dataclasses.MISSING
    if not number:
        return dataclasses.MISSING
    if tp is float:
        return float(value)
    return int(value) if float(value).is_integer() else dataclasses.MISSING


def _merge(base: dict, new: dict) -> dict:
    """``base`` updated by ``new``, recursively for dicts in both."""
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _unknown(key: str, valid: list[str], path: str) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {_join(path, close[0])!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"unknown key {_join(path, key)!r} ({hint})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(path: str) -> str:
    return repr(path) if path else "the configuration"


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of ({_describe(typing.get_args(tp)[0])})"
    if tp is dict or typing.get_origin(tp) is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


# -- YAML files and overrides ---------------------------------------------------------------------
def apply_override(data: dict, cls: type, override: str) -> dict:
    """A copy of ``data`` with one ``key.sub=value`` override set, its value read as YAML
    (``train.steps=10``, ``model.conditioning=layer``, ``train.beta={low: 1, high: 64}``).

    Raises:
        ConfigError: the override is not ``key=value``, its value is not YAML, or its key is
            not one of ``cls``'s (with the closest valid key).
    """
    key, sep, text = override.partition("=")
    names = key.strip().split(".")
    if not sep or not all(names):
        raise ConfigError(f"override {override!r} is not key=value (e.g. train.steps=100)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {override!r}: the value is not YAML ({_yaml_problem(e)})") from None
    try:
        _check_key(cls, names)
    except ConfigError as e:
        raise ConfigError(f"override {override!r}: {e}") from None
    out = copy.deepcopy(data)
    node = out
    for name in names[:-1]:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    node[names[-1]] = value
    return out


def _check_key(cls: type, names: list[str]) -> None:
    """Raise :class:`ConfigError` unless the dotted key ``names`` is a field path of ``cls``."""
    tp = cls
    for i, name in enumerate(names):
        path = ".".join(names[:i])
        if typing.get_origin(tp) in (Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if tp is dict or typing.get_origin(tp) is dict:
            return  # any key of a free-form mapping (model.backbone_kwargs.dropout=0.1)
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{path!r} is {_describe(tp)}: it has no key {name!r}")
        fields = [f.name for f in dataclasses.fields(tp) if f.init]
        if name not in fields:
            raise ConfigError(_unknown(name, fields, path))
        tp = typing.get_type_hints(tp)[name]


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file (an empty file is ``{}``); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (task, model, train, eval, out), "
                          f"got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Sequence[str] = (),
                base: str | Path | None = None) -> RunConfig:
    """The :class:`RunConfig` of a YAML file (``None``: the defaults) and ``key=value`` overrides,
    applied in order. ``base`` (e.g. a run folder's ``config.yaml``, skipped when absent) is read
    first and ``path``'s sections are merged on top of it. An error names the file or the
    override that caused it."""
    data = read_yaml(base) if base is not None and Path(base).is_file() else {}
    if path is not None:
        data = _merge(data, read_yaml(path))
    source = " with ".join(str(p) for p in (base, path) if p is not None) or "defaults"
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    for override in overrides:
        data = apply_override(data, RunConfig, override)
        try:
            cfg = from_dict(RunConfig, data)
        except ConfigError as e:
            raise ConfigError(f"override {override!r}: {e}") from None
    return cfg


def write_config(cfg: RunConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically); :func:`load_config` reads it back to an equal config."""
    with atomic_write(path) as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """The gist of a YAML error, on one line: ``line 3: expected ...``."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    gist = problem or " ".join(str(e).split())
    return f"line {mark.line + 1}: {gist}" if mark is not None else gist
