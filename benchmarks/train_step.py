"""Time a training step against its compute floor, in every conditioning mode.

Setting (the reference library's seh_frag defaults): the 72-fragment library, at most 9
fragments, batch 64, a 4-layer 128-wide graph transformer, trajectory balance. The reward is
QED x SA (RDKit) or, with ``--reward seh``, the sEH proxy (``$LGFN_SEH_PROXY`` or the shared
data file), timed separately from the library's own work.

It times the library's own training step (``Trainer.collect`` and ``Trainer.update``): on-policy
sampling that keeps the gradients of its model passes, the reward, then the loss and one
backward pass through the sampling passes (``TrainConfig.backprop_through_sampling``). Three
more things are timed in the same process over the same states:

* the sampling floor: the network's own forward passes over the states the sampler evaluated,
  batched as the sampler batches them (one pass per time step over the unfinished
  trajectories), graphs built beforehand;
* the training floor: the network's own forward + backward over every state of the step in one
  batch of graphs;
* sampling for inference: the library sampling the same trajectories without gradients (the
  same random draws), as ``lgfn sample`` does.

A step's floor is the sum of the two floors; the target is a step (reward excluded) within 1.5x
of it. The ratio to the training floor alone is reported too.

    python benchmarks/train_step.py [--library PATH] [--reward qed_sa|seh] [--steps 20] [--reward-workers N]
        [--out benchmarks/results/train_step.md]

``--reward-workers N`` adds, for each mode, a row with the reward scored in ``N`` processes
(:class:`~lgfn_graph.ParallelReward`), interleaved with the others.

The modes' steps are interleaved, one step of each in turn, so that a machine whose speed drifts
slows every mode alike; each quantity is the median over the measured steps.

The other benchmarks reuse its timing (:func:`time_steps`, :func:`summarize`) and its report
helpers (:func:`machine`, :func:`dict_table`, :func:`parse_args`).
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_LIB = SHARED / "fragments" / "fragments_72.json"
DEFAULT_SEH = SHARED / "seh_proxy" / "best_params.pkl.gz"
RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """The machine a benchmark ran on, in one line (timings mean little without it)."""
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}")


def dict_table(rows: Sequence[dict], head: Sequence[str]) -> list[str]:
    """The lines of a Markdown table (:func:`lgfn_graph.files.markdown_table`) of ``rows`` (dicts)
    in the columns ``head``; floats to 3 places."""
    cells = [[f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in head] for r in rows]
    return L.files.markdown_table(head, cells).split("\n")


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
    """:func:`time_interleaved` for one model: its records."""
    return time_interleaved(env, reward, {"model": model}, batch, steps, warmup)["model"]


def time_interleaved(env, reward, models: dict[str, L.ModelConfig], batch: int, steps: int,
                     warmup: int) -> dict[str, list[dict]]:
    """Run the library's own training step (``Trainer.collect`` + ``Trainer.update``) ``warmup +
    steps`` times for each model, one step of each in turn (in a rotating order), so that a
    machine whose speed drifts slows every model alike. ``reward``: one for every model, or a
    dict with one per model's name. Returns, per model, the timings of the
    last ``steps`` steps, one dict a step: ``sample_s``, ``reward_s``, ``loss_backward_s``,
    ``infer_sample_s`` (the same trajectories sampled without gradients), ``sample_floor_s``,
    ``floor_s`` (the network's forward + backward over every state the step visited) and
    ``states`` (how many) and ``nodes`` (their fragments, summed)."""
    trainers = {}
    for name, model in models.items():
        torch.manual_seed(0)
        cfg = L.TrainConfig(steps=warmup + steps, batch_size=batch, seed=0, beta=L.BetaSampler(1.0, 32.0))
        scorer = reward[name] if isinstance(reward, dict) else reward
        trainers[name] = L.Trainer(env, L.TemperatureGFlowNet.build(env, model), scorer, cfg)
    records = {name: [] for name in models}
    names = list(models)
    for it in range(warmup + steps):
        for name in names[it % len(names):] + names[:it % len(names)]:
            r = _timed_step(trainers[name])
            if it >= warmup:
                records[name].append(r)
    return records


def _timed_step(trainer: L.Trainer) -> dict:
    """One training step of ``trainer`` and the floors over its states, timed."""
    env, gfn = trainer.env, trainer.gfn
    infer = _inference_sampling(trainer)
    collected = trainer.collect()
    m = trainer.update(collected)
    traj = collected.trajectories
    assert torch.equal(infer[1].actions, traj.actions)  # the same draws: the same states
    # floor: one forward + backward of the network over every state this step visited
    visited = FragmentStates.cat([traj.states[t][(traj.length > t).nonzero().flatten()]
                                  for t in range(traj.actions.shape[0])])
    vb = torch.repeat_interleave(collected.beta, traj.length)
    data = env.to_graph(visited)
    t0 = time.perf_counter()
    sum(l.sum() for l in gfn.policy.logits(data, vb)).backward()
    floor = time.perf_counter() - t0
    trainer.optimizer.zero_grad()
    return {"sample_s": m["time_sample"], "reward_s": m["time_reward"], "loss_backward_s": m["time_train"],
            "infer_sample_s": infer[0], "floor_s": floor, "sample_floor_s": _sampling_floor(env, gfn, traj),
            "states": int(traj.length.sum()), "nodes": int(visited.n.sum())}


def _inference_sampling(trainer: L.Trainer) -> tuple[float, L.Trajectories]:
    """Seconds to sample, without gradients, the trajectories the trainer's next ``collect`` will
    sample (a copy of its generator makes the same draws), and those trajectories."""
    c = trainer.config
    g = torch.Generator().manual_seed(0)
    g.set_state(trainer.generator.get_state())
    beta = c.beta.sample(c.batch_size, g, trainer.step / max(c.steps, 1))
    t0 = time.perf_counter()
    traj = L.sample_trajectories(trainer.gfn, trainer.env, beta, c.epsilon, g)
    return time.perf_counter() - t0, traj


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
            "loss_backward_s": x["loss_backward_s"], "infer_sample_s": x["infer_sample_s"],
            "floor_s": x["floor_s"], "sample_floor_s": x["sample_floor_s"],
            "infer_ratio": x["infer_sample_s"] / x["sample_floor_s"],
            "step_ratio": x["net_s"] / step_floor,
            "ratio_without_reward": x["net_s"] / x["floor_s"], "ratio_with_reward": x["step_s"] / x["floor_s"],
            "traj_per_s": batch / x["step_s"], "states_per_s": x["states"] / x["step_s"],
            "infer_traj_per_s": batch / x["infer_sample_s"],
            "states_per_traj": x["states"] / batch, "states_per_step": x["states"], "nodes_per_step": x["nodes"],
            "ms_per_state": 1000 * x["step_s"] / x["states"]}


def build_reward(name: str):
    """The benchmark's reward: ``"qed_sa"`` (RDKit) or ``"seh"`` (the sEH proxy, from
    ``$LGFN_SEH_PROXY`` or the shared data folder beside the checkout)."""
    if name == "qed_sa":
        return L.qed_sa()
    weights = os.environ.get("LGFN_SEH_PROXY") or str(DEFAULT_SEH)
    return L.SEHReward(weights)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=str(DEFAULT_LIB))
    p.add_argument("--reward", choices=("qed_sa", "seh"), default="qed_sa")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--modes", default=",".join(L.policy.MODES))
    p.add_argument("--reward-workers", type=int, default=0,
                   help="also time each mode with the reward scored in this many processes (ParallelReward)")
    p.add_argument("--out", default="benchmarks/results/train_step.md")
    a = p.parse_args(argv)
    env = L.FragmentEnv(L.FragmentLibrary.from_json(a.library), max_fragments=9)
    modes = a.modes.split(",")
    models = {m: L.ModelConfig(hidden=128, num_layers=4, conditioning=m) for m in modes}
    reward = build_reward(a.reward)
    rewards = {m: reward for m in modes}
    if a.reward_workers > 1:
        pooled = L.ParallelReward(reward, a.reward_workers)
        pooled.start(wait=True)  # the workers' imports are not part of any step
        for m in modes:  # a row per mode and reward placement, all interleaved
            row = f"{m}, {a.reward_workers} reward workers"
            models[row], rewards[row] = models[m], pooled
    timed = time_interleaved(env, rewards, models, a.batch_size, a.steps, a.warmup)
    rows = [{"mode": m, **summarize(timed[m], a.batch_size, statistics.median)} for m in models]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = ["mode", "step_s", "sample_s", "reward_s", "loss_backward_s", "sample_floor_s", "floor_s", "step_ratio",
            "ratio_without_reward", "ratio_with_reward", "traj_per_s", "states_per_s", "infer_sample_s",
            "infer_ratio", "infer_traj_per_s", "states_per_traj"]
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"# Training step vs floor ({date.today()}, {machine()})", "",
             f"`python benchmarks/train_step.py {argv_text}`: 72 fragments, max 9, batch {a.batch_size}, 4x128 "
             f"graph transformer, TB, reward {a.reward}; median of {a.steps} steps after {a.warmup} warm-up steps, "
             f"the modes' steps interleaved (so that the machine's drift hits every mode alike). "
             f"On-policy sampling keeps its gradients; the step back-propagates through it. Peak RSS of the "
             f"process (every mode): {peak:.0f} MiB.", ""]
    lines += dict_table(rows, head)
    lines += ["", "Seconds: `step_s` = `sample_s` (sampling, with gradients) + `reward_s` + `loss_backward_s` "
              "(loss, backward, gradient clip and Adam). Floors: `sample_floor_s`, the network's forward passes "
              "over the sampled states, batched as the sampler batches them; `floor_s`, its forward + backward "
              "over all the step's states in one batch. `step_ratio` = (step - reward) / (sum of both floors): "
              "the target is at most 1.5. `ratio_without_reward` = (step - reward) / `floor_s`; "
              "`ratio_with_reward` = step / `floor_s`. `infer_*`: the same trajectories sampled without "
              "gradients (as `lgfn sample` does), against the sampling floor."]
    if a.reward_workers > 1:
        lines += ["", f"Rows `<mode>, {a.reward_workers} reward workers`: the same model and draws with the reward "
                      f"scored in {a.reward_workers} processes (`task.reward_workers={a.reward_workers}`, "
                      "`ParallelReward`), which give the same scores; the workers were up before the warm-up."]
    if "logit" in modes and "none" in modes:
        net = {r["mode"]: (r["step_s"] - r["reward_s"]) / r["states_per_step"] for r in rows}
        lines += ["", f"Logit-GFN's step without the reward, per state visited, relative to the unconditional "
                      f"model's: {net['logit'] / net['none']:.3f}x (target: at most 1.05)."]
    text = "\n".join(lines) + "\n"
    with L.files.atomic_write(a.out) as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
