"""Type and range checks of configuration values, shared by every config dataclass.

Each ``check_*`` reads one field of a dataclass instance (call it from ``__post_init__``),
raises :class:`FieldError` naming ``Class.field`` when the value has the wrong type or is out of
range, and stores it back in its plain type (``int``, ``float``, ``bool``, ``str``): a config
built in Python with ``lr=1``, a NumPy number or a ``Path`` writes the same YAML as one read from
a file. :func:`lgfn_graph.config.from_dict` turns a :class:`FieldError` into a
:class:`~lgfn_graph.config.ConfigError` naming the dotted key (``'train.lr'``).
"""
from __future__ import annotations

import importlib
import math
import numbers
import os
import re
from typing import Any, Sequence

import numpy as np
import torch


# torch generators take seeds below 2**64, and distributed training adds the rank to the seed
SEED_MAX = 2**63 - 1
_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class FieldError(ValueError):
    """A config field has a value of the wrong type or out of range.

    Attributes:
        field: the field, e.g. ``"lr"`` or ``"betas[2]"``.
        problem: what is wrong with it, e.g. ``"must be finite and > 0, got -1.0"``.
    """

    def __init__(self, obj: Any, field: str, problem: str):
        super().__init__(f"{type(obj).__name__}.{field} {problem}")
        self.field, self.problem = field, problem


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or NumPy); ``True`` and ``False`` are not."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_real(obj: Any, name: str, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
               float32: bool = False, optional: bool = False) -> None:
    """``obj.name`` must be a finite number in ``[low, high]`` (``(low, high]`` if ``low_open``;
    finite as a float32 too if ``float32``, for values that become float32 tensors), or ``None``
    if ``optional``; it is stored as a ``float``."""
    value = getattr(obj, name)
    if not (optional and value is None):
        setattr(obj, name, _real(obj, name, value, low, high, low_open, float32, optional))


def check_reals(obj: Any, name: str, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
                float32: bool = False) -> None:
    """``obj.name`` must be a non-empty list of numbers as :func:`check_real` checks one; a single
    number is a list of one. Errors name the entry (``betas[2]``)."""
    value = getattr(obj, name)
    if is_number(value):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise FieldError(obj, name, f"must be a non-empty list of numbers, got {value!r}")
    setattr(obj, name, [_real(obj, f"{name}[{i}]", v, low, high, low_open, float32) for i, v in enumerate(value)])


def check_int(obj: Any, name: str, low: int = 0, high: int | None = None, *, optional: bool = False) -> None:
    """``obj.name`` must be an integer in ``[low, high]`` (a float that is one counts), or
    ``None`` if ``optional``; it is stored as an ``int``."""
    value = getattr(obj, name)
    if optional and value is None:
        return
    integral = isinstance(value, numbers.Integral) or (is_number(value) and float(value).is_integer())
    if not is_number(value) or not integral:
        raise FieldError(obj, name, f"must be an integer{' or None' if optional else ''}, got {value!r}")
    if not low <= value <= (math.inf if high is None else high):
        raise FieldError(obj, name, f"must be an integer {_range(low, high)}, got {value!r}")
    setattr(obj, name, int(value))


def check_bool(obj: Any, name: str) -> None:
    """``obj.name`` must be ``True`` or ``False`` (not ``1`` or ``"yes"``)."""
    value = getattr(obj, name)
    if not isinstance(value, (bool, np.bool_)):
        raise FieldError(obj, name, f"must be True or False, got {value!r}")
    setattr(obj, name, bool(value))


def check_choice(obj: Any, name: str, choices: Sequence[str], *, optional: bool = False) -> None:
    """``obj.name`` must be one of ``choices`` (or ``None`` if ``optional``)."""
    value = getattr(obj, name)
    if not (optional and value is None) and not (isinstance(value, str) and value in choices):
        raise FieldError(obj, name, f"must be one of {tuple(choices)}{' or None' if optional else ''}, got {value!r}")


_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_import_path(value: Any) -> bool:
    """Whether ``value`` is a string of the form ``package.module:name``."""
    return isinstance(value, str) and _IMPORT_PATH.fullmatch(value) is not None


def import_object(path: str) -> Any:
    """The object an import path ``package.module:name`` names. Imports the module, which runs
    its code: call it only on paths the user gave, never on one read from a file they were handed."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def import_failure(path: str, error: Exception) -> str:
    """Why ``import_object(path)`` failed, in words for an error message."""
    hint = "; is its folder on PYTHONPATH? (PYTHONPATH=. lgfn ...)" if isinstance(error, ModuleNotFoundError) else ""
    return f"cannot import {path!r} ({type(error).__name__}: {error}){hint}"


def check_choice_or_import_path(obj: Any, name: str, choices: Sequence[str], *, optional: bool = False) -> None:
    """``obj.name`` must be one of ``choices``, an import path ``package.module:name`` (checked
    for its form only: nothing is imported), or ``None`` if ``optional``."""
    value = getattr(obj, name)
    if not (optional and value is None) and not (isinstance(value, str) and value in choices) \
            and not is_import_path(value):
        raise FieldError(obj, name, f"must be one of {tuple(choices)}, an import path 'package.module:name'"
                                    f"{' or None' if optional else ''}, got {value!r}")


def check_mapping(obj: Any, name: str) -> None:
    """``obj.name`` must be a mapping of string keys to plain data (``None``, booleans, numbers,
    strings, and lists and mappings of them), which YAML files and checkpoints both hold; it is
    stored as a ``dict`` (``None`` as ``{}``). Errors name the entry (``backbone_kwargs.deg``)."""
    value = getattr(obj, name)
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise FieldError(obj, name, f"must be a mapping of names to values, got {value!r}")
    plain = {}
    for key, v in value.items():
        if not isinstance(key, str):
            raise FieldError(obj, name, f"must have string keys, got {key!r}")
        try:
            plain[key] = _plain(v)
        except TypeError as e:
            raise FieldError(obj, f"{name}.{key}", f"must be plain data (numbers, strings, lists, mappings), "
                                                   f"got {e}") from None
    setattr(obj, name, plain)


def _plain(value: Any) -> Any:
    """A copy of ``value`` with tuples as lists (YAML's safe dumper writes no tuples); a
    ``TypeError`` naming the first value that is not plain data."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} {value!r}")


def check_path(obj: Any, name: str, *, optional: bool = True) -> None:
    """``obj.name`` must be a non-empty path (a string or ``os.PathLike``), or ``None`` if
    ``optional``; it is stored as a ``str``. An empty string is an error rather than "no path":
    ``""`` would silently mean the current folder or the default."""
    value = getattr(obj, name)
    if optional and value is None:
        return
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise FieldError(obj, name, f"must be a non-empty path{' or None' if optional else ''}, got {value!r}")
    setattr(obj, name, text)


def parse_device(value: Any) -> torch.device:
    """The CPU or CUDA device that ``value`` (a string such as ``"cuda:1"`` or a ``torch.device``)
    names. Raises ``ValueError`` saying what is wrong, worded to follow a field or option name:
    not a device, a device of another kind, or CUDA where this torch sees none."""
    try:
        dev = torch.device(value) if isinstance(value, (str, torch.device)) else None
    except RuntimeError:
        dev = None
    if dev is None:
        raise ValueError(f"must name a torch device ('cpu', 'cuda', 'cuda:1'), got {value!r}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"must be a CPU or CUDA device, got {value!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"is {value!r}, but this torch sees no CUDA device "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})")
    return dev


def check_device(obj: Any, name: str) -> None:
    """``obj.name`` must name a CPU or (available) CUDA device (:func:`parse_device`); a
    ``torch.device`` is stored as its name."""
    value = getattr(obj, name)
    try:
        dev = parse_device(value)
    except ValueError as e:
        raise FieldError(obj, name, str(e)) from None
    setattr(obj, name, value if isinstance(value, str) else str(dev))


def _real(obj: Any, field: str, value: Any, low: float, high: float, low_open: bool, float32: bool,
          optional: bool = False) -> float:
    if not is_number(value):
        raise FieldError(obj, field, f"must be a number{' or None' if optional else ''}, got {value!r}")
    value = float(value)
    finite = math.isfinite(value) and (not float32 or abs(value) <= _FLOAT32_MAX)
    if not (finite and (low < value if low_open else low <= value) and value <= high):
        rng = _range(low, high, low_open)
        raise FieldError(obj, field, f"must be finite{' in float32' if float32 else ''}"
                                     f"{' and ' + rng if rng else ''}, got {value!r}")
    return value


def _range(low: float, high: float | None, low_open: bool = False) -> str:
    """``"> 0"``, ``">= 1"``, ``"in [0, 1]"``, ``"in (0, 1]"`` or ``""`` (no bound)."""
    high = math.inf if high is None else high
    if math.isinf(high):
        return "" if math.isinf(low) else f"{'>' if low_open else '>='} {_number(low)}"
    return f"in {'(' if low_open else '['}{_number(low)}, {_number(high)}]"


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"
