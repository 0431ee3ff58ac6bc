"""The command line every study shares: a typed configuration from a YAML file, ``--quick``,
``--out``, ``--seeds``, ``--modes`` and ``key=value`` overrides, applied in that order."""
from __future__ import annotations

import argparse
from typing import Sequence, TypeVar

from ..config import ConfigError, apply_override, from_dict, read_yaml
from ..usage import ArgumentParser

T = TypeVar("T")


def study_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options of ``lgfn study NAME``; a bad one raises :class:`~lgfn_graph.usage.UsageError`,
    which ``lgfn`` reports in one line like every other user error."""
    p = ArgumentParser(prog=f"lgfn study {name}", description=description)
    p.add_argument("--config", help="YAML study configuration (default: the built-in one)")
    p.add_argument("--out", help="output folder (overrides the config's out)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2 (overrides the config's seeds)")
    p.add_argument("--modes", help="comma-separated conditioning modes among logit, layer, logit+layer, none "
                                   "(overrides the config's conditionings)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run of seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the runs that have finished")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="configuration overrides, applied last and in order (e.g. train.steps=200)")
    return p


def study_config(cls: type[T], args: argparse.Namespace, quick: Sequence[str]) -> T:
    """The configuration ``cls`` that ``args`` describe: the YAML file (or the defaults), then
    the ``quick`` overrides if ``--quick``, then ``--out``, ``--seeds`` and ``--modes``, then the
    ``key=value`` overrides. An error names the file or the override that caused it.

    Raises:
        ConfigError: an unknown key (with the closest valid one), a bad type or value.
    """
    data = read_yaml(args.config) if args.config else {}
    _build(cls, data, args.config or "the defaults")
    for override in quick if args.quick else ():
        data = apply_override(data, cls, override)
    # lists are given as comma-separated text, which from_dict splits
    named = {"out": args.out, "seeds": args.seeds, "conditionings": args.modes}
    data = {**data, **{k: v for k, v in named.items() if v is not None}}
    cfg = _build(cls, data, "the command line")
    for override in args.overrides:
        data = apply_override(data, cls, override)
        cfg = _build(cls, data, f"override {override!r}")
    return cfg


def _build(cls: type[T], data: dict, where: str) -> T:
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
