"""Compare the training step of each named backbone with the default graph transformer.

Setting (as ``train_step.py``): the 72-fragment library, at most 9 fragments, trajectory balance,
Logit-GFN conditioning, reward QED x SA; every backbone at the same ``hidden`` and ``num_layers``
(``ModelConfig.heads`` 4 where a backbone has attention heads). The steps of all backbones are
interleaved (``train_step.time_interleaved``) so that a machine whose speed drifts slows every
one alike; each figure is the median over the measured steps.

    python benchmarks/backbones.py [--library PATH] [--hidden 128] [--layers 4] [--batch-size 64]
        [--steps 10] [--warmup 2] [--backbones graph_transformer,gin,...] [--note TEXT] [--out DIR]

It writes ``backbones.md`` into ``--out`` (default ``benchmarks/results``). ``--note`` adds a line
to the report, e.g. on what else the machine was doing.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lgfn_graph as L  # noqa: E402
from benchmarks.train_step import (DEFAULT_LIB, machine, dict_table, parse_args, summarize,  # noqa: E402
                                   time_interleaved)

QUICK = {"hidden": 16, "layers": 1, "batch_size": 4, "steps": 1, "warmup": 1}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--library", default=str(DEFAULT_LIB))
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--backbones", default=",".join(L.nn.BACKBONES))
    p.add_argument("--note", default="", help="a line added to the report (e.g. the machine's other load)")
    a, argv = parse_args(p, argv, QUICK)
    env = L.FragmentEnv(L.FragmentLibrary.from_json(a.library), max_fragments=9)
    names = a.backbones.split(",")
    models = {n: L.ModelConfig(backbone=n, hidden=a.hidden, num_layers=a.layers) for n in names}
    params = {n: sum(p.numel() for p in L.TemperatureGFlowNet.build(env, m).policy.backbone.parameters())
              for n, m in models.items()}
    timed = time_interleaved(env, L.qed_sa(), models, a.batch_size, a.steps, a.warmup)
    rows = []
    for n in names:
        s = summarize(timed[n], a.batch_size, statistics.median)
        net = s["step_s"] - s["reward_s"]
        rows.append({"backbone": n, "backbone_params": params[n], "net_step_s": net,
                     "net_ms_per_state": 1000 * net / s["states_per_step"], **s})
    base = next((r["net_ms_per_state"] for r in rows if r["backbone"] == L.nn.BUILTIN), None)
    for r in rows:
        r["vs_default"] = r["net_ms_per_state"] / base if base else float("nan")
    head = ["backbone", "backbone_params", "net_step_s", "net_ms_per_state", "vs_default", "sample_s",
            "loss_backward_s", "floor_s", "sample_floor_s", "states_per_traj"]
    # the command without the note, which the report quotes below it
    shown = [x for i, x in enumerate(argv) if not (x == "--note" or x.startswith("--note=")
                                                   or (i and argv[i - 1] == "--note"))]
    lines = [f"# Training step by backbone ({date.today()}, {machine()})", "",
             f"`python benchmarks/backbones.py {shlex.join(shown)}`: 72 fragments, max 9, batch {a.batch_size}, "
             f"{a.layers} layers x {a.hidden} wide, Logit-GFN, TB, reward QED x SA; median of {a.steps} steps after "
             f"{a.warmup} warm-up steps, the backbones' steps interleaved.", ""]
    if a.note:
        lines += [f"**Note:** {a.note}", ""]
    lines += dict_table(rows, head)
    lines += ["", "`net_step_s`: a training step without the reward (sampling with gradients, loss, backward, "
              "Adam). Each backbone samples its own trajectories, so the states a step visits differ: "
              "`net_ms_per_state` divides by them, and `vs_default` is that against the default "
              "`graph_transformer`'s. `floor_s`: the network's forward + backward over all the step's states in "
              "one batch; `sample_floor_s`: its forward passes as the sampler batches them. `backbone_params`: "
              "parameters of the backbone alone (the heads and beta MLPs are the same for all)."]
    text = "\n".join(lines) + "\n"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with L.files.atomic_write(out / "backbones.md") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
