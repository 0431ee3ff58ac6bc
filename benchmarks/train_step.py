"""Time a training step against its compute floor, in every conditioning mode.

Setting (the reference library's seh_frag defaults): the 72-fragment library, at most 9
fragments, batch 64, a 4-layer 128-wide graph transformer, trajectory balance. The reward is
QED x SA (RDKit), timed separately.

It times the library's own training step: sampling without gradients, reward, then one batched
forward + backward over every visited state (``Trainer.collect`` and ``Trainer.update``). The
floor is the network's own forward + backward over the same batch of graphs (all states of the
step's trajectories in one PyG batch), timed in the same process.

    python benchmarks/train_step.py [--library PATH] [--steps 30] [--out benchmarks/results/train_step.md]
"""
from __future__ import annotations

import argparse
import platform
import resource
import time
from datetime import date
from pathlib import Path

import torch

import lgfn_graph as L
from lgfn_graph.envs import FragmentStates

DEFAULT_LIB = Path(__file__).resolve().parents[2] / "shared" / "data" / "fragments" / "fragments_72.json"


def time_mode(env, reward, mode: str, steps: int, warmup: int, batch: int) -> dict:
    """Run the library's own training step (``Trainer.collect`` + ``Trainer.update``)."""
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=128, num_layers=4, conditioning=mode))
    trainer = L.Trainer(env, gfn, reward, L.TrainConfig(steps=warmup + steps, batch_size=batch, seed=0,
                                                        beta=L.BetaSampler(1.0, 32.0)))
    tot = {"sample": 0.0, "reward": 0.0, "train": 0.0, "floor": 0.0, "states": 0, "trajs": 0}
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
        if it >= warmup:
            for k, v in zip(("sample", "reward", "train", "floor"),
                            (m["time_sample"], m["time_reward"], m["time_train"], t5 - t4)):
                tot[k] += v
            tot["states"] += int(traj.length.sum())
            tot["trajs"] += batch
    step = (tot["sample"] + tot["reward"] + tot["train"]) / steps
    net = (tot["sample"] + tot["train"]) / steps
    floor = tot["floor"] / steps
    return {"mode": mode, "step_s": step, "sample_s": tot["sample"] / steps, "reward_s": tot["reward"] / steps,
            "loss_backward_s": tot["train"] / steps, "floor_s": floor, "ratio_without_reward": net / floor,
            "ratio_with_reward": step / floor, "traj_per_s": tot["trajs"] / (step * steps),
            "states_per_s": tot["states"] / (step * steps), "states_per_traj": tot["states"] / tot["trajs"]}


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
    head = ["mode", "step_s", "sample_s", "reward_s", "loss_backward_s", "floor_s", "ratio_without_reward",
            "ratio_with_reward", "traj_per_s", "states_per_s", "states_per_traj"]
    lines = [f"# Training step vs floor ({date.today()}, {platform.machine()}, {torch.get_num_threads()} threads, "
             f"torch {torch.__version__})", "",
             f"`python benchmarks/train_step.py --steps {a.steps}`: 72 fragments, max 9, batch {a.batch_size}, "
             f"4x128 graph transformer, TB, reward QED x SA; sampling without gradients, then one batched replay. Peak RSS {peak:.0f} MiB.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) else str(r[h]) for h in head) + " |" for r in rows]
    logit = next(r for r in rows if r["mode"] == "logit")["step_s"]
    none = next(r for r in rows if r["mode"] == "none")["step_s"]
    lines += ["", f"Logit-GFN step time relative to the unconditional model: {logit / none:.3f}x."]
    text = "\n".join(lines) + "\n"
    with L.io.atomic_write(a.out) as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
