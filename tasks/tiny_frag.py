"""A small fragment task whose every state can be enumerated, for exact evaluation.

Four fragments, at most three per molecule, reward QED (RDKit): 98 states (97 terminal), so
:mod:`lgfn_graph.exact` computes the model's terminal distribution and the target
:math:`R(x)^\\beta / Z(\\beta)` exactly. ``benchmarks/exact_l1.py`` and the exactness tests
train on it.
"""
from __future__ import annotations

import lgfn_graph as L

FRAGMENTS = [
    ("c1ccccc1", [0, 3]),   # benzene, para stems
    ("C1CCNCC1", [3]),      # piperidine, at N
    ("C(=O)O", [0, 2]),     # carboxyl: at C or at O
    ("F", [0]),
]


def make_task(max_fragments: int = 3):
    """The environment and reward of the task: ``(env, reward)``."""
    lib = L.FragmentLibrary.from_pairs(FRAGMENTS, name="tiny_frag")
    return L.FragmentEnv(lib, max_fragments=max_fragments), L.QED()
