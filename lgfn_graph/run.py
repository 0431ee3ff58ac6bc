"""Command-line plumbing shared by the runnable tasks: options, train, sample, write outputs."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .betas import BetaSampler, check_beta
from .evaluate import temperature_sweep
from .io import atomic_write
from .policy import MODES, ModelConfig, TemperatureGFlowNet
from .trainer import TrainConfig, Trainer


def add_training_args(p: argparse.ArgumentParser, out: str, max_fragments: int, beta_high: float,
                      eval_betas: str) -> argparse.ArgumentParser:
    """The options every fragment task shares (model, training, sampling), with its defaults."""
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--max-fragments", type=int, default=max_fragments)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditioning", default="logit", choices=MODES)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--beta-low", type=float, default=1.0)
    p.add_argument("--beta-high", type=float, default=beta_high)
    p.add_argument("--eval-betas", default=eval_betas, help="comma-separated betas to sample at")
    p.add_argument("--eval-n", type=int, default=256, help="molecules per beta")
    p.add_argument("--no-progress", action="store_true")
    return p


def train_and_sweep(env, reward, a: argparse.Namespace) -> list[dict]:
    """Train on ``(env, reward)`` with the options of :func:`add_training_args`, sample at each
    of ``--eval-betas``, print a table and write every output into ``--out``. Returns the
    summary rows of :func:`lgfn_graph.temperature_sweep`."""
    torch.manual_seed(a.seed)
    model = ModelConfig(hidden=a.hidden, num_layers=a.num_layers, conditioning=a.conditioning)
    gfn = TemperatureGFlowNet.build(env, model)
    cfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, seed=a.seed,
                        beta=BetaSampler(a.beta_low, a.beta_high), checkpoint_every=250)
    out = Path(a.out)
    t0 = time.time()
    Trainer(env, gfn, reward, cfg, out).train(progress=not a.no_progress)
    train_s = time.time() - t0
    summary = temperature_sweep(gfn, env, reward, parse_betas(a.eval_betas), a.eval_n, out, seed=a.seed)
    print(f"trained {a.steps} steps in {train_s:.0f} s; outputs in {out}/")
    print("beta  mean_reward  max_reward  unique")
    for s in summary:
        print(f"{s['beta']:>5g}  {s['mean_reward']:11.3f}  {s['max_reward']:10.3f}  {s['unique_fraction']:6.2f}")
    with atomic_write(out / "run.json") as f:
        json.dump({"args": vars(a), "train_seconds": train_s, "summary": summary}, f, indent=1)
    return summary


def parse_betas(text: str) -> list[float]:
    """``"1,4,16"`` -> ``[1.0, 4.0, 16.0]``; raises naming ``--eval-betas`` for a bad value."""
    return [check_beta(float(b), "--eval-betas").item() for b in text.split(",")]
