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
import json
import time
from pathlib import Path

import torch

import lgfn_graph as L


def make_task(library: str | None = None, max_fragments: int = 8):
    """The environment and reward of the task: ``(env, reward)``."""
    lib = L.FragmentLibrary.from_json(library) if library else L.FragmentLibrary.default()
    return L.FragmentEnv(lib, max_fragments=max_fragments), L.qed_sa()


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/qed_frag", help="output folder")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditioning", default="logit", choices=L.policy.MODES)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--library", default=None, help="fragment library JSON (default: the shipped one)")
    p.add_argument("--max-fragments", type=int, default=8)
    p.add_argument("--beta-low", type=float, default=1.0)
    p.add_argument("--beta-high", type=float, default=32.0)
    p.add_argument("--eval-betas", default="1,2,4,8,16,32,64", help="comma-separated betas to sample at")
    p.add_argument("--eval-n", type=int, default=256, help="molecules per beta")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    betas = [L.check_beta(float(b), "--eval-betas").item() for b in a.eval_betas.split(",")]
    env, reward = make_task(a.library, a.max_fragments)
    torch.manual_seed(a.seed)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=a.hidden, num_layers=a.num_layers,
                                                         conditioning=a.conditioning))
    cfg = L.TrainConfig(steps=a.steps, batch_size=a.batch_size, seed=a.seed,
                        beta=L.BetaSampler(a.beta_low, a.beta_high), checkpoint_every=250)
    out = Path(a.out)
    t0 = time.time()
    L.Trainer(env, gfn, reward, cfg, out).train(progress=not a.no_progress)
    train_s = time.time() - t0
    summary = L.temperature_sweep(gfn, env, reward, betas, a.eval_n, out, seed=a.seed)
    print(f"trained {a.steps} steps in {train_s:.0f} s; outputs in {out}/")
    print("beta  mean_reward  max_reward  unique")
    for s in summary:
        print(f"{s['beta']:>5g}  {s['mean_reward']:11.3f}  {s['max_reward']:10.3f}  {s['unique_fraction']:6.2f}")
    with L.io.atomic_write(out / "run.json") as f:
        json.dump({"args": vars(a), "train_seconds": train_s, "summary": summary}, f, indent=1)
    return summary


if __name__ == "__main__":
    main()
