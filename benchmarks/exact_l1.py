"""Exact L1 between the learned and the target distribution, per conditioning mode and beta.

On ``tasks/tiny_frag.py`` (97 terminal molecules) every mode trains for the same number of steps
with beta ~ log-uniform[1, 16] (``none``: the fixed beta 4, the range's geometric middle); then
:mod:`lgfn_graph.exact` computes ``sum_x |p(x | beta) - R(x)^beta / Z(beta)|`` at betas inside
and outside the training range, with no sampling. Writes ``exact_l1.md``, ``exact_l1.csv`` and
``exact_l1.png`` into ``--out``.

Run: ``python benchmarks/exact_l1.py`` (about 5 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lgfn_graph as L  # noqa: E402
import lgfn_graph.files  # noqa: E402,F401
from lgfn_graph import exact  # noqa: E402
from tasks.tiny_frag import make_task  # noqa: E402

EVAL_BETAS = [0.5, 1, 2, 4, 8, 16, 32, 64]
TRAIN_RANGE = (1.0, 16.0)


@dataclass
class Variant:
    name: str
    conditioning: str
    scaler: str = "positive"


VARIANTS = [Variant("logit", "logit"), Variant("logit (unconstrained g)", "logit", "unconstrained"),
            Variant("layer", "layer"), Variant("logit+layer", "logit+layer"), Variant("none (beta=4)", "none")]


def run(v: Variant, steps: int, seed: int) -> dict:
    torch.set_num_threads(1)  # two runs share the two cores
    env, reward = make_task()
    space = exact.enumerate_states(env)
    log_r = exact.terminal_log_rewards(space, env, reward)
    torch.manual_seed(seed)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=64, num_layers=3, conditioning=v.conditioning,
                                                         scaler=v.scaler, beta_encoding="log"))
    beta = L.BetaSampler.constant(4.0) if v.conditioning == "none" else L.BetaSampler(*TRAIN_RANGE, "log_uniform")
    cfg = L.TrainConfig(steps=steps, batch_size=32, lr=3e-3, lr_log_z=3e-2, beta=beta, seed=seed)
    t0 = time.time()
    L.Trainer(env, gfn, reward, cfg).train(progress=False)
    l1 = exact.l1_distance(gfn, env, space, log_r, EVAL_BETAS).tolist()
    return {"variant": v.name, "seed": seed, "train_s": time.time() - t0, **{str(b): x for b, x in zip(EVAL_BETAS, l1)}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    jobs = [(v, a.steps, s) for s in range(a.seeds) for v in VARIANTS]
    with ProcessPoolExecutor(a.workers) as pool:
        rows = list(pool.map(run, *zip(*jobs)))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = [str(b) for b in EVAL_BETAS]
    L.files.write_csv(out / "exact_l1.csv", rows)
    mean = {v.name: [sum(r[c] for r in rows if r["variant"] == v.name) / a.seeds for c in cols] for v in VARIANTS}
    head = (f"# Exact L1 to R(x)^beta / Z(beta) on tiny_frag ({datetime.date.today()}, {platform.machine()}, "
            f"torch {torch.__version__})\n\n`python benchmarks/exact_l1.py --steps {a.steps} --seeds {a.seeds}`: "
            f"{a.steps} TB steps of batch 32 per variant, beta ~ log-uniform{list(TRAIN_RANGE)} (bold: inside the "
            f"training range), 3x64 graph transformer, mean over {a.seeds} seed(s). 0 is exact, 2 is disjoint.\n\n")
    header = ["variant", *(f"**{c}**" if TRAIN_RANGE[0] <= float(c) <= TRAIN_RANGE[1] else c for c in cols)]
    table = L.files.markdown_table(header, [[name, *(f"{x:.3f}" for x in vals)] for name, vals in mean.items()])
    with L.files.atomic_write(out / "exact_l1.md") as f:
        f.write(head + table + "\n")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, vals in mean.items():
        ax.plot(EVAL_BETAS, vals, marker="o", label=name)
    ax.axvspan(*TRAIN_RANGE, color="grey", alpha=0.15, label="training range")
    ax.set(xscale="log", xlabel="beta", ylabel="exact L1 to target", title="tiny_frag: learned vs target")
    ax.legend(fontsize=8)
    L.files.save_png(fig, out / "exact_l1.png")
    print(open(out / "exact_l1.md").read())


if __name__ == "__main__":
    main()
