"""The mode-seeking study as a script (:mod:`lgfn_graph.studies.mode_seeking`).

``python tasks/mode_seeking.py ARGS`` is ``lgfn study mode_seeking ARGS``: ``--help`` lists the
options, ``--quick`` makes a smoke run of seconds.
"""
from __future__ import annotations

import sys
from typing import Sequence

from lgfn_graph.cli import main as lgfn


def main(argv: Sequence[str] | None = None) -> int:
    """``lgfn study mode_seeking`` with ``argv`` (default: the process's arguments); the exit status."""
    return lgfn(["study", "mode_seeking", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
