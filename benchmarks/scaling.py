"""How a training step's time grows with the batch size and with the molecule size.

The fragment QED task (QED x SA) with the setting of ``train_step.py``: the 72-fragment
library, a 4-layer 128-wide graph transformer, Logit-GFN conditioning, trajectory balance. Two
sweeps: the batch size at 9 fragments at most, and the most fragments at batch 64. Each point
runs the library's own training step (timed by ``train_step.time_steps``) and reports the
median over the measured steps: seconds a step, split into sampling, reward and loss +
backward; states a step; milliseconds a state; and the step without the reward against its
floor (the network's forward + backward over the same states).

A step should grow no worse than linearly: the report fits ``time ~ x^slope`` on each sweep,
against its own variable, against the states a step visits and against their fragments (the
nodes the network reads). A state of a larger molecule has more nodes, so against the most
fragments the network's own work (its floor) grows faster than the states: the verdict asks
that the step grow no faster than linearly in its variable and in the nodes, and no faster than
its floor.

Writes ``scaling.md``, ``scaling.csv`` and ``scaling.png`` into ``--out``.

    python benchmarks/scaling.py [--steps 10] [--batch-sizes 16,32,...] [--max-fragments 3,5,...] [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lgfn_graph as L  # noqa: E402
import lgfn_graph.files  # noqa: E402,F401
from benchmarks.train_step import (DEFAULT_LIB, machine, dict_table, parse_args,  # noqa: E402
                                   summarize, time_steps)

# --quick: tiny sizes and model, to check that the benchmark runs, not to measure anything
QUICK = {"steps": 2, "warmup": 1, "batch_sizes": "4,8,16", "max_fragments": "2,3,4", "batch": 8,
         "fragments": 3, "hidden": 32, "num_layers": 1}
SLOPE_TOLERANCE = 0.1  # fitted slopes are noisy on a shared machine: up to 1.1 counts as linear


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def fit_slope(x, y) -> float:
    """The least-squares slope of ``log y`` against ``log x``: ``y ~ x^slope``; NaN for fewer
    than two distinct ``x``."""
    if len(set(x)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def sweep(a, name: str, points: list[tuple[int, int]], library: L.FragmentLibrary, cache: dict) -> list[dict]:
    """Time each ``(batch, max_fragments)`` point (reusing ``cache``); one row each."""
    rows = []
    for batch, frags in points:
        if (batch, frags) not in cache:
            print(f"{name}: batch {batch}, max_fragments {frags}", flush=True)
            env = L.FragmentEnv(library, max_fragments=frags)
            model = L.ModelConfig(hidden=a.hidden, num_layers=a.num_layers, conditioning="logit")
            records = time_steps(env, L.qed_sa(), model, batch, a.steps, a.warmup)
            cache[batch, frags] = summarize(records, batch, statistics.median)
        rows.append({"sweep": name, "batch": batch, "max_fragments": frags, **cache[batch, frags]})
    return rows


def slopes(rows: list[dict], var: str) -> dict:
    """Fitted log-log slopes of a sweep's step time against its variable, the states and the
    nodes a step, and of its floor (both floors) against its variable."""
    step = [r["step_s"] for r in rows]
    x = [r[var] for r in rows]
    return {"vs_" + var: fit_slope(x, step), "vs_states": fit_slope([r["states_per_step"] for r in rows], step),
            "vs_nodes": fit_slope([r["nodes_per_step"] for r in rows], step),
            "floor_vs_" + var: fit_slope(x, [r["floor_s"] + r["sample_floor_s"] for r in rows])}


def plot(by_batch: list[dict], by_frags: list[dict], path: Path) -> None:
    """Two panels: step time against the batch (log-log) and against the most fragments, each
    with its parts and a line proportional to the variable through the first point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    panels = ((axes[0], by_batch, "batch", "batch size", "log",
               f"at most {by_batch[0]['max_fragments']} fragments"),
              (axes[1], by_frags, "max_fragments", "most fragments a molecule", "linear",
               f"batch {by_frags[0]['batch']}"))
    for ax, rows, var, label, scale, title in panels:
        x = np.array([r[var] for r in rows], dtype=float)
        step = np.array([r["step_s"] for r in rows])
        ax.plot(x, step, "o-", label="step")
        ax.plot(x, [r["step_s"] - r["reward_s"] for r in rows], "s-", label="step without reward")
        ax.plot(x, [r["floor_s"] for r in rows], "^-", label="floor: network fwd+bwd")
        ax.plot(x, step[0] * x / x[0], "k--", lw=1, label="linear reference")
        ax.set(xscale=scale, yscale=scale, xlabel=label, ylabel="seconds a step", title=title)
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    L.files.save_png(fig, path)


def report(a, argv: list[str], by_batch: list[dict], by_frags: list[dict]) -> str:
    """The Markdown report: the setting, a table per sweep, and the fitted slopes."""
    head = ["batch", "max_fragments", "step_s", "sample_s", "reward_s", "loss_backward_s", "sample_floor_s",
            "floor_s", "states_per_step", "nodes_per_step", "ms_per_state", "step_ratio", "ratio_without_reward"]
    fits = {"batch": slopes(by_batch, "batch"), "max_fragments": slopes(by_frags, "max_fragments")}
    lines = [f"# Training step scaling ({date.today()}, {machine()})", "",
             "`" + " ".join(["python benchmarks/scaling.py", *argv]) + "`", "",
             f"Fragment QED task (QED x SA), library `{Path(a.library).name}`, {a.num_layers}x{a.hidden} graph "
             f"transformer, logit conditioning, TB; median of {a.steps} steps after {a.warmup} warm-up steps. "
             "`step_ratio`: (sampling + loss and backward) / (sampling floor + training floor), the floors "
             "being the network's forward passes over the sampled states and its forward + backward over the "
             "step's states; `ratio_without_reward`: the same over the training floor alone.", "",
             f"## Batch size, at most {a.fragments} fragments", ""]
    lines += dict_table(by_batch, head)
    lines += ["", f"## Most fragments, batch {a.batch}", ""]
    lines += dict_table(by_frags, head)
    lines += ["", "## Growth", "",
              "Fitted log-log slopes of the step time (1: linear), against the sweep's variable, the states a "
              "step visits and their nodes (fragments), and of the floor (both floors) against the variable. "
              "A larger molecule's states have more nodes, so the network's own work per state grows with the "
              "most fragments; the verdict: the step grows no faster than linearly in its variable and in the "
              "nodes, and no faster than its floor.", ""]
    growth = []
    for name, fit in fits.items():
        tol = 1 + SLOPE_TOLERANCE
        ok = fit["vs_" + name] <= tol and fit["vs_nodes"] <= tol and fit["vs_" + name] <= fit["floor_vs_" + name] + SLOPE_TOLERANCE
        growth.append([name, *(f"{fit[k]:.2f}" for k in ("vs_" + name, "vs_states", "vs_nodes", "floor_vs_" + name)),
                       "yes" if ok else "NO"])
    lines += L.files.markdown_table(["sweep", "step vs its variable", "step vs states", "step vs nodes",
                                     "floor vs its variable", "no worse than linear"], growth).split("\n")
    lines += ["", "Plot: `scaling.png`; every number: `scaling.csv`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=str(DEFAULT_LIB))
    p.add_argument("--steps", type=int, default=10, help="measured steps a point")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-sizes", dest="batch_sizes", default="16,32,64,128,256,512")
    p.add_argument("--max-fragments", dest="max_fragments", default="3,5,7,9,12")
    p.add_argument("--batch", type=int, default=64, help="the batch size of the max-fragments sweep")
    p.add_argument("--fragments", type=int, default=9, help="the most fragments of the batch-size sweep")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--num-layers", dest="num_layers", type=int, default=4)
    a, argv = parse_args(p, argv, QUICK)
    library = L.FragmentLibrary.from_json(a.library)
    cache: dict = {}
    by_batch = sweep(a, "batch", [(b, a.fragments) for b in ints(a.batch_sizes)], library, cache)
    by_frags = sweep(a, "max_fragments", [(a.batch, f) for f in ints(a.max_fragments)], library, cache)
    out = Path(a.out)
    L.files.write_csv(out / "scaling.csv", by_batch + by_frags)
    plot(by_batch, by_frags, out / "scaling.png")
    text = report(a, argv, by_batch, by_frags)
    with L.files.atomic_write(out / "scaling.md") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
