"""The default task: fragment-built molecules rewarded by QED x synthetic accessibility.

Needs RDKit alone (no download). Trains a Logit-GFN with beta ~ U[1, 32], then samples at
several betas and writes into ``--out``:

* ``checkpoint.pt``: the trained model (reload with ``lgfn_graph.load_model``);
* ``metrics.jsonl``: one line of training metrics per step;
* ``samples.csv``: every sampled molecule with its beta and reward;
* ``summary.csv`` and ``mean_reward_vs_beta.png``: mean reward against beta.

Run: ``python tasks/qed_frag.py --out runs/qed_frag`` (what ``make run`` does).
"""
from __future__ import annotations

import argparse

import lgfn_graph as L
from lgfn_graph.run import add_training_args, parse_betas, train_and_sweep


def make_task(library: str | None = None, max_fragments: int = 8):
    """The environment and reward of the task: ``(env, reward)``."""
    lib = L.FragmentLibrary.from_json(library) if library else L.FragmentLibrary.default()
    return L.FragmentEnv(lib, max_fragments=max_fragments), L.qed_sa()


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(p, out="runs/qed_frag", max_fragments=8, beta_high=32.0, eval_betas="1,2,4,8,16,32,64")
    p.add_argument("--library", default=None, help="fragment library JSON (default: the shipped one)")
    a = p.parse_args(argv)
    parse_betas(a.eval_betas)  # fail before training
    return train_and_sweep(*make_task(a.library, a.max_fragments), a)


if __name__ == "__main__":
    main()
