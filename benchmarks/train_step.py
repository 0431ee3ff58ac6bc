"""Time a training step against its compute floor, in every conditioning mode.

Setting (the reference library's seh_frag defaults): the 72-fragment library, at most 9
fragments, batch 64, a 4-layer 128-wide graph transformer, trajectory balance. The reward is
QED x SA (RDKit), timed separately.

It times the library's own training step: sampling without gradients, reward, then one batched
forward + backward over every visited state (``Trainer.collect`` and ``Trainer.update``). Two
floors are timed in the same process: for training, the network's own forward + backward over
the same batch of graphs (all states of the step's trajectories in one PyG batch); for
sampling, the network's forward passes over the same states, batched as the sampler batches
them (one pass per time step over the unfinished trajectories). A step's floor is their sum.

    python benchmarks/train_step.py [--library PATH] [--steps 30] [--out benchmarks/results/train_step.md]

The other benchmarks reuse its timing (:func:`time_steps`, :func:`summarize`) and its report
helpers (:func:`machine`, :func:`markdown_table`, :func:`parse_args`).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable, Sequence

import torch

import lgfn_graph as L
from lgfn_graph.envs import FragmentStates

DEFAULT_LIB = Path(__file__).resolve().parents[2] / "shared" / "data" / "fragments" / "fragments_72.json"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """The machine a benchmark ran on, in one line (timings mean little without it)."""
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}")


def markdown_table(rows: Sequence[dict], head: Sequence[str]) -> list[str]:
    """The lines of a Markdown table of ``rows`` (dicts) in the columns ``head``; floats to 3 places."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in head) + " |"
                    for r in rows]


def parse_args(p: argparse.ArgumentParser, argv, quick: dict) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``argv`` (``None``: the command line) with two options added: ``--out``, the output
    folder, and ``--quick``, which makes ``quick`` the defaults (options given still win).
    Returns the options and the arguments, for the report to quote."""
    p.add_argument("--out", default=str(RESULTS), help="output folder")
    p.add_argument("--quick", action="store_true", help="smallest sizes: a smoke check, not a measurement")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:
        p.set_defaults(**quick)
    return p.parse_args(argv), argv


def time_steps(env, reward, model: L.ModelConfig, batch: int, steps: int, warmup: int) -> list[dict]:
    """Run the library's own training step (``Trainer.collect`` + ``Trainer.update``) ``warmup +
    steps`` times; return the timings of the last ``steps``, one dict a step: ``sample_s``,
    ``reward_s``, ``loss_backward_s``, ``floor_s`` (the network's forward + backward over every
    state the step visited) and ``states`` (how many)."""
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(env, model)
    trainer = L.Trainer(env, gfn, reward, L.TrainConfig(steps=warmup + steps, batch_size=batch, seed=0,
                                                        beta=L.BetaSampler(1.0, 32.0)))
    records = []
    for it in range(warmup + steps):
        collected = trainer.collect()
        m = trainer.update(collected)
        traj = collected.trajectories
        # floor: one forward + backward of the network over every state this step visited
        visited = FragmentStates.cat([traj.states[t][(traj.length > t).nonzero().flatten()]
                                      for t in range(traj.actions.shape[0])])
        vb = torch.repeat_interleave(collected.beta, traj.length)
        data = env.to_graph(visited)
        t4 = time.perf_counter()
        sum(l.sum() for l in gfn.policy.logits(data, vb)).backward()
        t5 = time.perf_counter()
        trainer.optimizer.zero_grad()
        sample_floor = _sampling_floor(env, gfn, traj)
        if it >= warmup:
            records.append({"sample_s": m["time_sample"], "reward_s": m["time_reward"],
                            "loss_backward_s": m["time_train"], "floor_s": t5 - t4, "sample_floor_s": sample_floor,
                            "states": int(traj.length.sum())})
    return records


@torch.no_grad()
def _sampling_floor(env, gfn, traj) -> float:
    """Seconds of the network's forward passes over the states the sampler evaluated, batched as
    it batches them (graphs built beforehand, not timed)."""
    passes = []
    for t in range(traj.actions.shape[0]):
        alive = (traj.length > t).nonzero().flatten()
        passes.append((env.to_graph(traj.states[t][alive]), traj.beta[alive]))
    t0 = time.perf_counter()
    for data, beta in passes:
        gfn.policy.logits(data, beta)
    return time.perf_counter() - t0


def summarize(records: Sequence[dict], batch: int, reduce: Callable = statistics.mean) -> dict:
    """One summary of :func:`time_steps` records: each quantity reduced over the steps (mean by
    default; ``statistics.median`` resists a stray slow step), then the ratios of those."""
    per_step = {k: [r[k] for r in records] for k in records[0]}
    per_step["step_s"] = [r["sample_s"] + r["reward_s"] + r["loss_backward_s"] for r in records]
    per_step["net_s"] = [r["sample_s"] + r["loss_backward_s"] for r in records]
    x = {k: float(reduce(v)) for k, v in per_step.items()}
    step_floor = x["floor_s"] + x["sample_floor_s"]
    return {"step_s": x["step_s"], "sample_s": x["sample_s"], "reward_s": x["reward_s"],
            "loss_backward_s": x["loss_backward_s"], "floor_s": x["floor_s"], "sample_floor_s": x["sample_floor_s"],
            "sample_ratio": x["sample_s"] / x["sample_floor_s"], "update_ratio": x["loss_backward_s"] / x["floor_s"],
            "step_ratio": x["net_s"] / step_floor,
            "ratio_without_reward": x["net_s"] / x["floor_s"], "ratio_with_reward": x["step_s"] / x["floor_s"],
            "traj_per_s": batch / x["step_s"], "states_per_s": x["states"] / x["step_s"],
            "states_per_traj": x["states"] / batch, "states_per_step": x["states"],
            "ms_per_state": 1000 * x["step_s"] / x["states"]}


def time_mode(env, reward, mode: str, steps: int, warmup: int, batch: int) -> dict:
    """Mean timings of the 4-layer 128-wide model in conditioning ``mode``."""
    model = L.ModelConfig(hidden=128, num_layers=4, conditioning=mode)
    return {"mode": mode, **summarize(time_steps(env, reward, model, batch, steps, warmup), batch)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=str(DEFAULT_LIB))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results/train_step.md")
    a = p.parse_args(argv)
    env = L.FragmentEnv(L.FragmentLibrary.from_json(a.library), max_fragments=9)
    rows = [time_mode(env, L.qed_sa(), m, a.steps, a.warmup, a.batch_size) for m in L.policy.MODES]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = ["mode", "step_s", "sample_s", "reward_s", "loss_backward_s", "sample_floor_s", "floor_s",
            "sample_ratio", "update_ratio", "step_ratio", "ratio_without_reward", "traj_per_s", "states_per_s",
            "states_per_traj"]
    lines = [f"# Training step vs floor ({date.today()}, {machine()})", "",
             f"`python benchmarks/train_step.py --steps {a.steps}`: 72 fragments, max 9, batch {a.batch_size}, "
             f"4x128 graph transformer, TB, reward QED x SA; sampling without gradients, then one batched replay. Peak RSS {peak:.0f} MiB.", ""]
    lines += markdown_table(rows, head)
    logit = next(r for r in rows if r["mode"] == "logit")["step_s"]
    none = next(r for r in rows if r["mode"] == "none")["step_s"]
    lines += ["", "`sample_ratio`: sampling / its floor (the network's forward passes over the sampled states); "
              "`update_ratio`: loss + backward / its floor (the network's forward + backward over the batch); "
              "`step_ratio`: step without reward / the sum of both floors; `ratio_without_reward`: step without "
              "reward / the training floor alone.", "",
              f"Logit-GFN step time relative to the unconditional model: {logit / none:.3f}x."]
    text = "\n".join(lines) + "\n"
    with L.io.atomic_write(a.out) as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
