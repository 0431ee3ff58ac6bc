"""Command-line usage errors, shared by ``lgfn`` and the studies it runs: argparse's complaint as
an exception, so that every user error reaches :func:`lgfn_graph.cli.main` and is printed in one
line."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """The command line itself is wrong (argparse's complaint, kept to one line)."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that raises :class:`UsageError` where argparse would
    print the usage and exit, and takes ``key=value`` overrides (a positional named ``overrides``)
    before, between or after the options."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_args(self, args=None, namespace=None):
        # argparse gives a key=value positional only its first run of values, so overrides after
        # an option (a=1 --out X b=2) come back unparsed: they are overrides too, in order
        ns, extra = self.parse_known_args(args, namespace)
        takes_overrides = isinstance(getattr(ns, "overrides", None), list)
        unknown = [a for a in extra if a.startswith("-") or not takes_overrides]
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        if extra:
            ns.overrides += extra
        return ns
