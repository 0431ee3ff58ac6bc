"""Sampling a trained model at chosen temperatures, with results as CSV and a plot."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import torch

from .betas import check_beta, warn_if_far_from_training
from .files import save_png, write_csv
from .rewards import RewardFn, log_reward
from .sampler import sample_trajectories


@torch.no_grad()
def sample_molecules(gfn, env, reward: RewardFn, beta: float, n: int, batch_size: int = 128,
                     seed: int = 0) -> list[dict]:
    """Draw ``n`` molecules from the policy at ``beta`` (no exploration).

    Returns one dict per molecule: ``beta``, ``smiles``, ``reward`` and the molecule's size
    under the environment's ``size_name`` (``num_fragments``, ``num_atoms``).
    """
    rows = []
    for states, r, smiles in sample_batches(gfn, env, reward, beta, n, batch_size, seed):
        rows += [{"beta": float(beta), "smiles": s, "reward": float(x), env.size_name: int(k)}
                 for s, x, k in zip(smiles, r.tolist(), env.size(states).tolist())]
    return rows


@torch.no_grad()
def sample_batches(gfn, env, reward: RewardFn, beta: float, n: int, batch_size: int = 128,
                   seed: int = 0) -> Iterator[tuple[object, torch.Tensor, list[str]]]:
    """Draw ``n`` terminal states from the policy at ``beta`` (no exploration), ``batch_size`` at
    a time; the draws of :func:`sample_molecules` and :func:`lgfn_graph.pyg.sample_pyg`.

    Yields, per batch of ``b`` states: the env's terminal states, their rewards ``[b]`` and
    their canonical SMILES (``b`` strings). A ``beta`` far outside the model's training range
    warns once per model (:func:`lgfn_graph.betas.warn_if_far_from_training`).
    """
    check_beta(beta)
    warn_if_far_from_training(gfn, [beta])
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        traj = sample_trajectories(gfn, env, torch.full((b,), float(beta)), 0.0, g)
        mols = [env.to_mol(traj.terminal, i) for i in range(b)]
        yield traj.terminal, log_reward(reward, mols, floor=0.0).exp(), env.to_smiles(traj.terminal)
        done += b


def temperature_sweep(gfn, env, reward: RewardFn, betas: Sequence[float], n: int, out_dir: str | Path,
                      seed: int = 0) -> list[dict]:
    """Sample ``n`` molecules at each beta; write ``samples.csv``, ``summary.csv`` and
    ``mean_reward_vs_beta.png`` into ``out_dir``. Returns the summary rows."""
    out = Path(out_dir)
    warn_if_far_from_training(gfn, betas)  # first, so that one warning names every far beta
    rows, summary = [], []
    for b in betas:
        got = sample_molecules(gfn, env, reward, b, n, seed=seed)
        rows += got
        r = torch.tensor([x["reward"] for x in got])
        summary.append({"beta": float(b), "n": len(got), "mean_reward": r.mean().item(),
                        "std_reward": r.std().item() if len(got) > 1 else 0.0, "max_reward": r.max().item(),
                        "unique_fraction": len({x["smiles"] for x in got}) / len(got)})
    write_csv(out / "samples.csv", rows)
    write_csv(out / "summary.csv", summary)
    plot_reward_vs_beta(summary, out / "mean_reward_vs_beta.png")
    return summary


def plot_reward_vs_beta(summary: list[dict], path: str | Path) -> None:
    """Mean reward (with one standard deviation) against beta, log-scaled beta axis."""
    from matplotlib.figure import Figure  # not pyplot: the user's backend stays as it is

    b = [s["beta"] for s in summary]
    m = [s["mean_reward"] for s in summary]
    sd = [s["std_reward"] for s in summary]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.errorbar(b, m, yerr=sd, marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("beta (inverse temperature)")
    ax.set_ylabel("mean reward of samples")
    ax.set_title("Temperature dial: reward vs beta")
    save_png(fig, path)
