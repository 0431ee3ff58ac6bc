"""A small fragment task whose every state can be enumerated, for exact evaluation.

Four fragments (``lgfn_graph.task.TINY_FRAGMENTS``), at most three per molecule, reward QED
(RDKit): 98 states (97 terminal), so :mod:`lgfn_graph.exact` computes the model's terminal
distribution and the target :math:`R(x)^\\beta / Z(\\beta)` exactly. ``benchmarks/exact_l1.py``
and the exactness tests train on it; ``lgfn train task.name=tiny_frag`` trains on it too.
"""
from __future__ import annotations

from lgfn_graph.task import TaskConfig, build_task


def make_task(max_fragments: int = 3):
    """The environment and reward of the task: ``(env, reward)``."""
    return build_task(TaskConfig("tiny_frag", max_fragments=max_fragments))
