"""Command-line usage errors, shared by ``lgfn`` and the studies it runs: argparse's complaint as
an exception, so that every user error reaches :func:`lgfn_graph.cli.main` and is printed in one
line."""
from __future__ import annotations

import argparse


class UsageError(Exception):
    """The command line itself is wrong (argparse's complaint, kept to one line)."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` that raises :class:`UsageError` where argparse would
    print the usage and exit."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")
