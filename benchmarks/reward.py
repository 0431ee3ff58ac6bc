"""Time the rewards a training step calls: the sEH proxy (by part) and QED x SA.

The molecules are those a training step scores early on: drawn on seh_frag (72 fragments, at
most 9) by the uniformly random policy with a fixed seed, in batches of ``--batch-size`` (64, a
training step's). For the sEH proxy each batch is timed whole (``SEHReward``, what the trainer
calls) and by part: featurization (``mol_to_graph`` per molecule), batching
(``Batch.from_data_list``) and the network's forward pass. Each figure is the median over the
batches, repeated ``--repeats`` times with the batches in turn.

    python benchmarks/reward.py [--batches 10] [--repeats 3] [--workers 2] [--out benchmarks/results]

QED x SA is also timed scored in ``--workers`` processes (:class:`~lgfn_graph.ParallelReward`).

It imports ``lgfn_graph`` as Python finds it (``PYTHONPATH=<checkout>`` times another
checkout's code: an A/B of two commits runs this same script on both).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # last: a checkout on PYTHONPATH supplies lgfn_graph (and benchmarks) first

import lgfn_graph as L  # noqa: E402
from benchmarks.train_step import DEFAULT_LIB, build_reward, dict_table, machine, parse_args  # noqa: E402


def molecules(library: str, batches: int, batch_size: int, seed: int = 0) -> list[list]:
    """``batches`` lists of ``batch_size`` RDKit molecules drawn by the uniformly random policy."""
    env = L.FragmentEnv(L.FragmentLibrary.from_json(library), max_fragments=9)
    draw, g = L.sampler.uniform_sampler(env), torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        terminal = draw(batch_size, g)
        out.append([env.to_mol(terminal, i) for i in range(batch_size)])
    return out


def median_ms(fn: Callable[[list], object], batches: list[list], repeats: int) -> float:
    """Median wall time of ``fn(batch)`` over every batch and repeat, in ms (one warm-up call)."""
    fn(batches[0])
    times = []
    for _ in range(repeats):
        for batch in batches:
            t0 = time.perf_counter()
            fn(batch)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def seh_parts(reward) -> dict[str, Callable[[list], object]]:
    """The sEH reward and its parts, each a function of one batch of molecules."""
    from torch_geometric.data import Batch

    proxy = reward.proxy

    def forward(batch):
        with torch.no_grad():
            return proxy(batch)

    return {"whole reward": reward,
            "featurize": lambda mols: [L.seh_proxy.mol_to_graph(m) for m in mols],
            "batch graphs": lambda graphs: Batch.from_data_list(graphs),
            "proxy forward": forward}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=str(DEFAULT_LIB))
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="2", help="comma-separated process counts to time QED x SA with "
                                                   "(ParallelReward); empty: none")
    a, argv = parse_args(p, argv, {"batches": 2, "repeats": 1, "batch_size": 8})
    mols = molecules(a.library, a.batches, a.batch_size)
    rows = []
    seh = build_reward("seh")
    parts = seh_parts(seh)
    inputs = {"whole reward": mols, "featurize": mols,
              "batch graphs": [parts["featurize"](b) for b in mols]}
    inputs["proxy forward"] = [parts["batch graphs"](b) for b in inputs["batch graphs"]]
    for part, fn in parts.items():
        rows.append({"reward": "seh", "part": part, "ms": median_ms(fn, inputs[part], a.repeats)})
    qed_sa = build_reward("qed_sa")
    rows.append({"reward": "qed_sa", "part": "whole reward", "ms": median_ms(qed_sa, mols, a.repeats)})
    for n in [int(w) for w in a.workers.split(",") if w]:
        with L.ParallelReward(qed_sa, n) as pooled:
            pooled.start(wait=True)
            assert all(torch.equal(pooled(b), qed_sa(b)) for b in mols)  # the same scores
            rows.append({"reward": "qed_sa", "part": f"whole reward, {n} worker processes",
                         "ms": median_ms(pooled, mols, a.repeats)})
    for r in rows:
        r["molecules_per_s"] = 1000 * a.batch_size / r["ms"]
    atoms = statistics.mean(m.GetNumAtoms() for b in mols for m in b)
    lines = [f"# Reward time per batch ({date.today()}, {machine()})", "",
             f"`{' '.join(['python benchmarks/reward.py', *argv])}`: {a.batches} batches of {a.batch_size} seh_frag "
             f"molecules from the uniformly random policy (mean {atoms:.1f} heavy atoms), median over the batches "
             f"and {a.repeats} repeats, one warm-up call each. `ms`: milliseconds per batch; the sEH parts add up "
             f"to about its whole reward. `N worker processes`: scored by `ParallelReward` (`task.reward_workers=N`), "
             f"started beforehand; the scores equal the single process's.", ""]
    lines += dict_table(rows, ["reward", "part", "ms", "molecules_per_s"])
    text = "\n".join(lines) + "\n"
    out = Path(a.out) / "reward.md"
    with L.files.atomic_write(out) as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
