"""The offline generalization study as a script (:mod:`lgfn_graph.studies.offline_generalization`).

``python tasks/offline_generalization.py ARGS`` is ``lgfn study offline_generalization ARGS``: ``--help`` lists the
options, ``--quick`` makes a smoke run of seconds.
"""
from __future__ import annotations

import sys
from typing import Sequence

from lgfn_graph.cli import main as lgfn


def main(argv: Sequence[str] | None = None) -> int:
    """``lgfn study offline_generalization`` with ``argv`` (default: the process's arguments); the exit status."""
    return lgfn(["study", "offline_generalization", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
