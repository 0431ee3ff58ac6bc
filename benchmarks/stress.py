"""A long run at small size over a wide beta range: every loss and parameter stays finite, and
memory stays flat.

Trains a 2-layer 32-wide model on the fragment QED task (the shipped 18 fragments, at most 5,
QED x SA) with batch 16 and beta ~ U[1, 5000], for ``--steps`` steps (default 3000) in each
``--conditioning`` mode. After every step each loss and parameter must be finite; the first
that is not stops the run, naming the step. Every ``--every`` steps it samples the resident
set size (``VmRSS``, and the peak ``VmHWM``, from ``/proc/self/status``): after the warm-up (the
first 10% of the steps) it may grow by at most 5% or 20 MiB, whichever is larger.

Writes ``stress.md`` (the verdict), ``stress.csv`` (the RSS curve) and ``stress.png`` into
``--out``; exits with status 1 if any check fails.

    python benchmarks/stress.py [--steps 3000] [--conditioning logit,layer] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lgfn_graph as L  # noqa: E402
import lgfn_graph.files  # noqa: E402,F401
from benchmarks.train_step import dict_table, machine, parse_args  # noqa: E402

WARMUP_FRACTION = 0.1
GROWTH_FRACTION, GROWTH_MIB = 0.05, 20.0
QUICK = {"steps": 60, "every": 5}  # --quick: a smoke check of the script, too short to judge memory


def memory_mib() -> tuple[float, float]:
    """This process's resident set size and its peak so far, in MiB (Linux ``/proc``; elsewhere
    psutil's RSS, with no peak: NaN)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss / 2**20, float("nan")
    kib = {k: float(v.split()[0]) for k, _, v in (line.partition(":") for line in status.splitlines())
           if k in ("VmRSS", "VmHWM")}
    return kib["VmRSS"] / 1024, kib["VmHWM"] / 1024


@dataclass
class Run:
    """One mode's run: the RSS samples, and what failed (``None``: nothing)."""

    conditioning: str
    samples: list[dict] = field(default_factory=list)
    failure: str | None = None
    steps_done: int = 0
    seconds: float = 0.0

    def memory_verdict(self, steps: int) -> dict:
        """RSS growth after the warm-up against its tolerance, the fitted trend, and the verdict
        ``memory``: ``"ok"``, ``"GROWS"`` or ``"too few samples"`` (a run stopped early)."""
        after = [s for s in self.samples if s["step"] >= WARMUP_FRACTION * steps]
        if len(after) < 2:
            return {"baseline_mib": float("nan"), "growth_mib": float("nan"), "tolerance_mib": float("nan"),
                    "trend_mib_per_1k_steps": float("nan"), "memory": "too few samples"}
        base = after[0]["rss_mib"]
        growth = max(s["rss_mib"] for s in after) - base
        tolerance = max(GROWTH_FRACTION * base, GROWTH_MIB)
        trend = np.polyfit([s["step"] for s in after], [s["rss_mib"] for s in after], 1)[0] * 1000
        return {"baseline_mib": base, "growth_mib": growth, "tolerance_mib": tolerance,
                "trend_mib_per_1k_steps": float(trend), "memory": "ok" if growth <= tolerance else "GROWS"}


def non_finite_parameters(gfn) -> list[str]:
    return [name for name, p in gfn.named_parameters() if not bool(torch.isfinite(p).all())]


def run(conditioning: str, steps: int, every: int, seed: int) -> Run:
    """Train ``steps`` steps in one mode, checking every step and sampling RSS every ``every``."""
    torch.manual_seed(seed)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=5)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=2, conditioning=conditioning))
    cfg = L.TrainConfig(steps=steps, batch_size=16, seed=seed, beta=L.BetaSampler(1.0, 5000.0))
    trainer = L.Trainer(env, gfn, L.qed_sa(), cfg)
    result = Run(conditioning)
    loss = float("nan")
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        try:
            loss = trainer.train_step()["loss"]
        except FloatingPointError as e:  # the trainer's own check of the loss
            result.failure = f"{conditioning}: step {step}: non-finite loss ({e})"
        bad = non_finite_parameters(gfn)
        if bad and result.failure is None:
            result.failure = f"{conditioning}: step {step}: non-finite parameters {bad[:5]}"
        if result.failure is not None:
            print("FAIL " + result.failure, file=sys.stderr, flush=True)
            break
        result.steps_done = step
        if step % every == 0 or step == 1 or step == steps:
            rss, hwm = memory_mib()
            result.samples.append({"conditioning": conditioning, "step": step, "rss_mib": rss, "hwm_mib": hwm,
                                   "loss": loss, "seconds": time.perf_counter() - t0})
    result.seconds = time.perf_counter() - t0
    return result


def plot(runs: list[Run], steps: int, path: Path) -> None:
    """RSS against steps per mode, with the end of the warm-up and each tolerance band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for r in runs:
        line, = ax.plot([s["step"] for s in r.samples], [s["rss_mib"] for s in r.samples], label=r.conditioning)
        v = r.memory_verdict(steps)
        if v["memory"] != "too few samples":
            ax.axhline(v["baseline_mib"] + v["tolerance_mib"], color=line.get_color(), ls=":", lw=1)
    ax.axvline(WARMUP_FRACTION * steps, color="grey", ls="--", lw=1, label="end of warm-up")
    ax.set(xlabel="training step", ylabel="RSS (MiB)", title="Memory over a long run (dotted: tolerance)")
    ax.legend(fontsize=8)
    L.files.save_png(fig, path)


def report(runs: list[Run], a, argv: list[str]) -> tuple[str, bool]:
    """The Markdown report and whether every check passed."""
    rows = []
    for r in runs:
        v = r.memory_verdict(a.steps)
        finite = r.failure is None and r.steps_done == a.steps
        rows.append({"conditioning": r.conditioning, "steps": r.steps_done, "steps_per_s": r.steps_done / r.seconds,
                     "finite": "yes" if finite else "NO", **v,
                     "peak_mib": max((s["hwm_mib"] for s in r.samples), default=float("nan")),
                     "passed": finite and v["memory"] == "ok"})
    passed = all(r["passed"] for r in rows)
    head = ["conditioning", "steps", "steps_per_s", "finite", "baseline_mib", "growth_mib", "tolerance_mib",
            "trend_mib_per_1k_steps", "peak_mib", "memory"]
    lines = [f"# Stress: a long run over a wide beta range ({date.today()}, {machine()})", "",
             "`" + " ".join(["python benchmarks/stress.py", *argv]) + "`", "",
             f"{a.steps} steps a mode: fragment QED task (18 fragments, at most 5), 2x32 graph transformer, batch 16, "
             f"beta ~ U[1, 5000], TB. Checked after every step: the loss and every parameter are finite. RSS sampled "
             f"every {a.every} steps; after the warm-up (first {WARMUP_FRACTION:.0%} of the steps) it may grow by at "
             f"most {GROWTH_FRACTION:.0%} or {GROWTH_MIB:.0f} MiB, whichever is larger.", "",
             f"**Verdict: {'PASS' if passed else 'FAIL'}.**", ""]
    lines += dict_table(rows, head)
    failures = [f"- FAIL {r.failure}" for r in runs if r.failure]
    lines += ([""] + failures if failures else []) + ["", "RSS curve: `stress.csv`, `stress.png`."]
    return "\n".join(lines) + "\n", passed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=50, help="steps between RSS samples")
    p.add_argument("--conditioning", default="logit", help=f"comma-separated modes among {', '.join(L.policy.MODES)}")
    p.add_argument("--seed", type=int, default=0)
    a, argv = parse_args(p, argv, QUICK)
    modes = a.conditioning.split(",")
    unknown = [m for m in modes if m not in L.policy.MODES]
    if unknown:
        p.error(f"unknown conditioning {unknown}; choose among {', '.join(L.policy.MODES)}")
    runs = [run(m, a.steps, a.every, a.seed) for m in modes]
    out = Path(a.out)
    L.files.write_csv(out / "stress.csv", [s for r in runs for s in r.samples])
    plot(runs, a.steps, out / "stress.png")
    text, passed = report(runs, a, argv)
    with L.files.atomic_write(out / "stress.md") as f:
        f.write(text)
    print(text)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
