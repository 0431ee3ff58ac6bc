"""The default task: fragment-built molecules rewarded by QED x synthetic accessibility.

Needs RDKit alone (no download). Trains a Logit-GFN with beta ~ U[1, 32], then samples at
several betas and writes into ``--out``:

* ``checkpoint.pt``: the trained model (reload with ``lgfn_graph.load_model``);
* ``metrics.jsonl``: one line of training metrics per step;
* ``samples.csv``: every sampled molecule with its beta and reward;
* ``summary.csv`` and ``mean_reward_vs_beta.png``: mean reward against beta;
* ``config.yaml`` and ``run.json``: the run's configuration (``lgfn train --config`` reads it).

Run: ``python tasks/qed_frag.py --out runs/qed_frag`` (what ``make run`` does); the same run is
``lgfn train --config configs/qed_frag.yaml``.
"""
from __future__ import annotations

import argparse

from lgfn_graph.run import add_training_args, config_from_args, train_and_sweep
from lgfn_graph.task import TaskConfig


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(p, out="runs/qed_frag", max_fragments=8, beta_high=32.0, eval_betas="1,2,4,8,16,32,64")
    p.add_argument("--library", default=None, help="fragment library JSON (default: the shipped one)")
    a = p.parse_args(argv)
    cfg = config_from_args(a, TaskConfig("qed_frag", fragments=a.library, max_fragments=a.max_fragments))
    return train_and_sweep(cfg, resume=a.resume_or_start, progress=not a.no_progress)


if __name__ == "__main__":
    main()
