"""Run every benchmark at its default size and index the reports (what ``make bench`` does).

Runs ``train_step.py`` (with QED x SA, then with the sEH proxy, then with QED x SA in two
worker processes), ``reward.py``, ``scaling.py``, ``backbones.py``,
``stress.py`` and ``exact_l1.py`` one after another,
each in its own process (so that one's memory does not count in another's RSS), writing their
reports into ``--out``, then ``README.md`` there: the machine, the date, a line per benchmark
(status, wall time, link) and every report in full. Exits with status 1 if any benchmark failed.

``--quick`` passes each one its smallest size: a smoke check of the scripts in a minute or two,
whose numbers mean nothing. It writes into ``runs/bench_quick`` unless ``--out`` is given, so as
not to overwrite the real results.

    python benchmarks/run_all.py [--quick] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import lgfn_graph.files  # noqa: E402
from benchmarks.train_step import machine  # noqa: E402


@dataclass(frozen=True)
class Benchmark:
    """A script, its arguments at full size and at ``--quick`` size (``{out}``: the output
    folder), and the report it writes there."""

    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    report: str


BENCHMARKS = [
    Benchmark("train_step.py", ("--out", "{out}/train_step.md"),
              ("--steps", "2", "--warmup", "1", "--batch-size", "8", "--out", "{out}/train_step.md"), "train_step.md"),
    # the reference library's own reward: the sEH proxy (its weights from LGFN_SEH_PROXY or ../shared/data)
    Benchmark("train_step.py", ("--reward", "seh", "--modes", "logit,none", "--out", "{out}/train_step_seh.md"),
              ("--reward", "seh", "--modes", "logit,none", "--steps", "2", "--warmup", "1", "--batch-size", "8",
               "--out", "{out}/train_step_seh.md"), "train_step_seh.md"),
    # the same step with QED x SA scored in two worker processes (ParallelReward), interleaved with one
    Benchmark("train_step.py", ("--modes", "logit,none", "--reward-workers", "2", "--out", "{out}/train_step_workers.md"),
              ("--modes", "logit", "--reward-workers", "2", "--steps", "2", "--warmup", "1", "--batch-size", "16",
               "--out", "{out}/train_step_workers.md"), "train_step_workers.md"),
    Benchmark("reward.py", ("--out", "{out}"), ("--quick", "--out", "{out}"), "reward.md"),
    Benchmark("scaling.py", ("--out", "{out}"), ("--quick", "--out", "{out}"), "scaling.md"),
    Benchmark("backbones.py", ("--out", "{out}"), ("--quick", "--out", "{out}"), "backbones.md"),
    Benchmark("stress.py", ("--conditioning", "logit,layer,logit+layer,none", "--out", "{out}"),
              ("--quick", "--out", "{out}"), "stress.md"),
    Benchmark("exact_l1.py", ("--seeds", "2", "--out", "{out}"), ("--steps", "20", "--workers", "1", "--out", "{out}"),
              "exact_l1.md"),
]


def run(bench: Benchmark, quick: bool, out: Path) -> dict:
    """Run one benchmark in a subprocess; its status and wall time."""
    args = [a.format(out=out) for a in (bench.quick if quick else bench.full)]
    cmd = [sys.executable, str(ROOT / "benchmarks" / bench.script), *args]
    print(f"== {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    return {"bench": bench, "rc": rc, "seconds": time.perf_counter() - t0,
            "command": " ".join(["python", f"benchmarks/{bench.script}", *args])}


def index(results: list[dict], out: Path, quick: bool, started: datetime) -> str:
    """The README of ``out``: machine, date, one line per benchmark, then every report."""
    title = "# Benchmarks (--quick: a smoke check, the numbers mean nothing)" if quick else "# Benchmarks"
    how = "`python benchmarks/run_all.py --quick`" if quick else "`make bench` (`python benchmarks/run_all.py`)"
    rows = []
    for r in results:
        name = r["bench"].report
        status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        link = f"[{name}]({name})" if (out / name).exists() else "no report"
        rows.append([f"`{r['command']}`", status, f"{r['seconds']:.0f}", link])
    lines = [title, "", f"{how}, started {started:%Y-%m-%d %H:%M} on {machine()}.", "",
             *lgfn_graph.files.markdown_table(["command", "status", "wall time (s)", "report"], rows).split("\n")]
    for r in results:
        path = out / r["bench"].report
        if path.exists():
            # each report's headings go one level down, under this page's title
            body = ["#" + line if line.startswith("#") else line for line in path.read_text().splitlines()]
            lines += ["", "---", "", *body]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smallest sizes: a smoke check of the scripts")
    p.add_argument("--out", default=None,
                   help="output folder (default: benchmarks/results; with --quick, runs/bench_quick)")
    a = p.parse_args(argv)
    out = Path(a.out or ROOT / ("runs/bench_quick" if a.quick else "benchmarks/results")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if out.is_relative_to(ROOT):  # the benchmarks run in ROOT: short paths read better in the reports
        out = out.relative_to(ROOT)
    started = datetime.now()
    results = [run(b, a.quick, out) for b in BENCHMARKS]
    with lgfn_graph.files.atomic_write(ROOT / out / "README.md") as f:
        f.write(index(results, ROOT / out, a.quick, started))
    failed = [r["bench"].script for r in results if r["rc"] != 0]
    print(f"index: {ROOT / out / 'README.md'}" + (f"; FAILED: {', '.join(failed)}" if failed else "; all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
