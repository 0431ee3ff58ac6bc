r"""Mode seeking: how fast each conditioning mode finds distinct high-reward molecules online.

Every conditioning mode (``logit``, ``layer``, ``logit+layer``, ``none``) trains with trajectory
balance on the same task, with the same seeds and the same number of sampled trajectories, at
beta ~ U[1, 3] for the loss and for exploration (on-policy, with epsilon-uniform actions);
``none`` cannot read beta and trains at the fixed middle of the range, beta = 2
(``none_beta``). After every step the molecules just sampled go through a
:class:`~lgfn_graph.metrics.ModeTracker`:

* a molecule is a **mode** when its *normalised* reward ``R / reward_scale`` is at least
  ``reward_threshold`` (0.9) and its Tanimoto similarity (Morgan, radius 2, 2048 bits) to every
  mode found before it is below ``max_similarity`` (0.7);
* ``reward_scale`` defaults to 0.8 for the default ``qed_frag`` task (QED x normalised SA),
  measured on this task: the uniformly random policy's rewards have median 0.29, 99.9 %
  quantile 0.77 and maximum 0.79-0.82 (two draws of 5,120 molecules), and the best molecules
  trained models sample reach 0.87. So ``R / 0.8`` puts the best a random search finds at about
  1, and a mode (normalised reward >= 0.9) is a molecule with QED x SA >= 0.72, about the best
  0.5 % of random molecules. (With the scale at the best known reward, 0.87, a mode needs
  R >= 0.79: at beta <= 3 runs of this size find 1 to 4, too few to compare.) Set
  ``mode_criteria.reward_scale`` for another task.

At the end, the ``top_k`` (100) distinct molecules of all those sampled in training, by reward,
give the top-k mean reward and the top-k diversity (mean pairwise Tanimoto distance).

Writes into ``--out`` (default ``runs/studies/mode_seeking``): ``mode_seeking.md`` (the table:
per mode, mean ± standard deviation over seeds), ``mode_seeking.csv`` and ``mode_seeking.png``
(modes against trajectories sampled, one line per mode, shaded one standard deviation over
seeds); each run keeps ``runs/<mode>/seed<k>/`` with ``metrics.jsonl``, ``samples.db`` (every
sampled molecule by step: :meth:`ModeRecorder.from_samples` recounts the modes from it),
``checkpoint.pt`` and ``result.json`` (written last: a run with one is finished and a rerun skips
it). ``publish=DIR`` copies the table, CSV and PNG into ``DIR``.

Cost of the defaults (3-layer, 64-wide graph transformer, 500 steps of batch 32: 16,000
trajectories per run; 4 modes x 3 seeds): about 0.11 s a step on one core of the 2-core
development machine, so about 1 minute a run and 13 minutes for the study.

Run: ``lgfn study mode_seeking`` or ``python tasks/mode_seeking.py``; ``--quick`` for a smoke run.
"""
from __future__ import annotations

import heapq
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..betas import BetaSampler
from ..config import ConfigError
from ..files import atomic_write, markdown_table, save_png, write_csv
from ..metrics import ModeTracker, best_rewards, top_k_diversity, top_k_reward
from ..policy import ModelConfig, TemperatureGFlowNet
from ..sampledb import SampleDB
from ..task import TaskConfig, build_task
from ..trainer import Callback, Trainer, TrainConfig
from . import _report as R
from ._cli import study_config, study_parser
from ._runs import RunSpec, StudyRuns, reported, run_all, run_specs, with_other_finished

NAME = "mode_seeking"

# --quick: seconds, not minutes; the settings a smoke test needs and no more
QUICK = ("task.max_fragments=3", "model.hidden=16", "model.num_layers=1", "model.heads=1", "train.steps=5",
         "train.batch_size=8", "top_k=5", "curve_every=1", "seeds=[0]")


@dataclass
class ModeCriteria:
    """What counts as a mode (see :class:`~lgfn_graph.metrics.ModeTracker`).

    Args:
        reward_threshold: least normalised reward ``R / reward_scale`` of a mode.
        max_similarity: a molecule this Tanimoto-similar (or more) to an earlier mode is not a new one.
        reward_scale: the reward that counts as 1 after normalisation (0.8 for ``qed_frag``: see
            the module's description).
    """

    reward_threshold: float = 0.9
    max_similarity: float = 0.7
    reward_scale: float = 0.8

    def __post_init__(self):
        self.tracker()  # ModeTracker checks the values

    def tracker(self) -> ModeTracker:
        """A fresh tracker with these criteria."""
        return ModeTracker(self.reward_threshold, self.max_similarity, self.reward_scale)


@dataclass
class ModeSeekingConfig(StudyRuns):
    """The mode-seeking study.

    Args:
        task: the molecules and their reward.
        model: the model of every run (its ``conditioning`` is replaced by each run's mode).
        train: training of every run (its ``seed`` is replaced by each run's seed). Every run
            records its samples (``sample_db`` must stay true).
        none_beta: the fixed beta of the ``none`` mode, which cannot read beta; ``None``: the
            same beta distribution as the other modes.
        mode_criteria: what counts as a mode.
        top_k: distinct molecules in the top-k reward and diversity (fewer if fewer were sampled).
        curve_every: steps between the points of the top-k reward curve.
        conditionings, seeds, out, publish, threads: which runs, where (see :class:`StudyRuns`).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden=64, num_layers=3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=500, batch_size=32, lr=1e-3, beta=BetaSampler(1.0, 3.0), tensorboard=False))
    none_beta: float | None = 2.0
    mode_criteria: ModeCriteria = field(default_factory=ModeCriteria)
    top_k: int = 100
    curve_every: int = 10
    out: str = f"runs/studies/{NAME}"

    def __post_init__(self):
        self.check_runs()
        if not self.train.sample_db:
            raise ValueError("train.sample_db must be true: the runs' samples are the study's raw data")
        if self.curve_every < 1:
            raise ValueError(f"curve_every must be >= 1, got {self.curve_every}")
        if self.top_k < 2:
            raise ValueError(f"top_k must be >= 2 (diversity needs a pair), got {self.top_k}")


class ModeRecorder:
    """A :class:`~lgfn_graph.Trainer` callback: passes each step's sampled molecules to a
    :class:`ModeTracker`, keeps the best reward of every distinct molecule (for top-k), and
    every ``curve_every`` steps notes the top-``top_k`` mean reward (for the curve).

    Molecules without SMILES (invalid) count as trajectories but are never modes.

    Attributes:
        curve: ``[trajectories, modes, top-k mean reward]`` after every ``curve_every``-th step
            (the top-k over the distinct molecules sampled so far, fewer while fewer exist).
    """

    def __init__(self, criteria: ModeCriteria, top_k: int = 100, curve_every: int = 10):
        self.tracker = criteria.tracker()
        self.best: dict[str, float] = {}
        self.top_k, self.curve_every = top_k, curve_every
        self.curve: list[list[float]] = []

    def __call__(self, trainer: Trainer, batch, metrics: dict) -> None:
        n = batch.num_sampled
        # the same floats the trainer writes to samples.db, so from_samples recounts exactly
        self.record(batch.smiles, batch.log_reward[:n].exp().tolist(), n)

    def record(self, smiles: Sequence[str | None], rewards: Sequence[float], num_trajectories: int) -> None:
        """Add one step: ``smiles`` and ``rewards`` of its ``num_trajectories`` sampled molecules."""
        keep = [i for i, s in enumerate(smiles) if s is not None]
        s, r = [smiles[i] for i in keep], [rewards[i] for i in keep]
        self.tracker.update(s, r, num_trajectories)
        best_rewards(s, r, self.best)
        if len(self.tracker.history) % self.curve_every == 0:
            top = heapq.nlargest(self.top_k, self.best.values())
            self.curve.append([self.tracker.trajectories_seen, self.tracker.num_modes,
                               sum(top) / len(top) if top else math.nan])

    @classmethod
    def from_samples(cls, path: str | Path, criteria: ModeCriteria, top_k: int = 100,
                     curve_every: int = 10) -> "ModeRecorder":
        """The recorder of a run (finished or not), rebuilt from its ``samples.db``, step by step."""
        rec = cls(criteria, top_k, curve_every)
        with SampleDB(path) as db:
            rows = db.rows()
        for _, group in groupby(rows, key=lambda r: r["step"]):
            group = list(group)
            rec.record([r["smiles"] for r in group], [r["reward"] for r in group], len(group))
        return rec

    def summary(self, k: int) -> dict:
        """Modes found, trajectories, distinct molecules, best reward, and the top-k reward and
        diversity over ``min(k, distinct molecules)`` molecules."""
        kk = min(k, len(self.best))
        smiles, rewards = list(self.best), list(self.best.values())
        return {"modes_found": self.tracker.num_modes, "trajectories": self.tracker.trajectories_seen,
                "unique_molecules": len(self.best), "max_reward": max(rewards, default=math.nan), "top_k": kk,
                "top_k_reward": top_k_reward(smiles, rewards, kk) if kk >= 1 else math.nan,
                "top_k_diversity": top_k_diversity(smiles, rewards, kk) if kk >= 2 else math.nan}

    def at_fractions(self, fractions: Sequence[float], steps: int) -> dict:
        """``{"modes_found_at_25": ..., "top_k_reward_at_25": ..., ...}``: modes after the step
        that ends each fraction of the ``steps`` budget, and the top-k reward of the last curve
        point at or before it (NaN before the first point)."""
        out = {}
        for f in fractions:
            step = max(1, math.ceil(f * steps))  # the first step at or past the fraction
            points = [c for i, c in enumerate(self.curve) if (i + 1) * self.curve_every <= step]
            modes = self.tracker.history[step - 1][1] if step <= len(self.tracker.history) else math.nan
            out[f"modes_found_at_{100 * f:g}"] = modes
            out[f"top_k_reward_at_{100 * f:g}"] = points[-1][2] if points else math.nan
        return out


class WallClock:
    """A :class:`~lgfn_graph.Trainer` callback that adds up the seconds between steps and keeps
    the total in ``wall.json`` in the run folder, so a resumed run reports all the time it took
    (steps redone after a kill included)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / "wall.json"
        self.seconds = json.loads(self.path.read_text())["seconds"] if self.path.is_file() else 0.0
        self.last = time.perf_counter()

    def __call__(self, trainer: Trainer, batch, metrics: dict) -> None:
        now = time.perf_counter()
        self.seconds += now - self.last
        self.last = now
        every = trainer.config.checkpoint_every
        if every and trainer.step % every == 0 or trainer.step == trainer.config.steps:
            with atomic_write(self.path) as f:
                json.dump({"step": trainer.step, "seconds": self.seconds}, f)


def train_run(cfg: ModeSeekingConfig, spec: RunSpec, folder: Path, progress: bool = True,
              callbacks: Sequence[Callback] = ()) -> dict:
    """Train one (mode, seed) run into ``folder`` and return its results: :meth:`ModeRecorder.summary`,
    :meth:`ModeRecorder.at_fractions`, the modes' SMILES, ``history`` (``[trajectories, modes]``
    after each step), ``curve`` (see :class:`ModeRecorder`) and ``wall_seconds`` (training and
    mode tracking). A ``checkpoint.pt`` in ``folder`` (a run killed midway) is resumed exactly,
    the recorder rebuilt from the samples up to it. ``callbacks`` go to the trainer too."""
    env, reward = build_task(cfg.task)
    torch.manual_seed(spec.seed)
    gfn = TemperatureGFlowNet.build(env, replace(cfg.model, conditioning=spec.conditioning))
    recorder = ModeRecorder(cfg.mode_criteria, cfg.top_k, cfg.curve_every)
    clock = WallClock(folder)
    trainer = Trainer(env, gfn, reward, cfg.train_config(spec), folder, callbacks=[recorder, clock, *callbacks])
    if (folder / "checkpoint.pt").is_file():
        trainer.load(folder / "checkpoint.pt")  # drops the samples past the checkpoint
        rebuilt = ModeRecorder.from_samples(folder / "samples.db", cfg.mode_criteria, cfg.top_k, cfg.curve_every)
        recorder.__dict__.update(rebuilt.__dict__)
        if progress:
            tqdm.write(f"{spec.conditioning}, seed {spec.seed}: resuming at step {trainer.step}")
    trainer.train(progress=progress)
    return {**recorder.summary(cfg.top_k), **recorder.at_fractions(FRACTIONS, cfg.train.steps),
            "wall_seconds": clock.seconds, "modes": recorder.tracker.modes,
            "history": [list(h) for h in recorder.tracker.history], "curve": recorder.curve}


# -- the report -----------------------------------------------------------------------------------
FRACTIONS = (0.25, 0.5, 1.0)  # of the step budget, where the table reads modes and top-k reward
METRICS = (  # (result key, Markdown heading, decimals)
    *((f"modes_found_at_{100 * f:g}", f"modes at {100 * f:g} %", 1) for f in FRACTIONS),
    *((f"top_k_reward_at_{100 * f:g}", f"top-{{k}} reward at {100 * f:g} %", 3) for f in FRACTIONS),
    ("top_k_diversity", "top-{k} diversity", 3),
    ("unique_molecules", "distinct molecules", 0),
    ("max_reward", "best reward", 3),
    ("wall_seconds", "wall time (s)", 1),
)


def summarise(cfg: ModeSeekingConfig, results: Sequence[dict]) -> list[dict]:
    """One row per mode (in ``cfg.conditionings`` order): ``conditioning``, ``seeds``,
    ``trajectories`` and ``<metric>_mean`` / ``<metric>_std`` over seeds for each of :data:`METRICS`."""
    rows = []
    for c in cfg.conditionings:
        mine = [r for r in results if r["conditioning"] == c]
        if not mine:  # --report-only before any run of this mode finished
            continue
        row = {"conditioning": c, "seeds": len(mine), "trajectories": mine[0]["trajectories"]}
        for key, _, _ in METRICS:
            row[f"{key}_mean"], row[f"{key}_std"] = R.mean_std([r[key] for r in mine])
        rows.append(row)
    return rows


def write_report(cfg: ModeSeekingConfig, results: Sequence[dict], command: str) -> list[Path]:
    """Write ``mode_seeking.md``, ``.csv`` and ``.png`` into ``cfg.out``; returns their paths."""
    out = Path(cfg.out)
    rows = summarise(cfg, results)
    paths = [out / f"{NAME}.md", out / f"{NAME}.csv", out / f"{NAME}.png"]
    write_csv(paths[1], rows)
    k = cfg.top_k
    header = ["mode"] + [h.format(k=k) for _, h, _ in METRICS]
    body = [[_label(cfg, r["conditioning"]) + _seeds_note(cfg, r)] + [R.cell(r[f"{key}_mean"], r[f"{key}_std"], d) for key, _, d in METRICS]
            for r in rows]
    t = cfg.train
    replay = (f", of which {1 - t.replay_fraction:g} sampled and {t.replay_fraction:g} drawn from a {t.replay_priority}-"
              f"prioritised replay buffer of {t.replay_capacity} once it holds a batch" if t.replay_capacity else "")
    text = (f"# Mode seeking on {cfg.task.name}\n\n{R.provenance(command)}\n\n"
            f"{rows[0]['trajectories']} sampled trajectories per run ({t.steps} TB steps of batch {t.batch_size}"
            f"{replay}; beta ~ {_beta_text(t.beta)} for the loss and exploration, rewards floored at "
            f"{t.log_reward_floor:g}, epsilon {t.epsilon}, lr {t.lr}), "
            f"{cfg.model.num_layers}x{cfg.model.hidden} graph transformer; mean ± standard deviation over seeds "
            f"{', '.join(map(str, cfg.seeds))}. A mode: reward >= {cfg.mode_criteria.reward_threshold} x "
            f"{cfg.mode_criteria.reward_scale} and Tanimoto similarity < {cfg.mode_criteria.max_similarity} to "
            f"every earlier mode. Top-{k}: the {k} best distinct molecules sampled in training.\n\n"
            + markdown_table(header, body) + "\n")
    with atomic_write(paths[0]) as f:
        f.write(text)
    plot_modes(cfg, results, paths[2])
    return paths


def plot_modes(cfg: ModeSeekingConfig, results: Sequence[dict], path: Path) -> None:
    """Modes found and top-k reward against trajectories sampled: one line per mode, one
    standard deviation over seeds shaded."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    for c in cfg.conditionings:
        mine = [r for r in results if r["conditioning"] == c]
        if not mine:
            continue
        hist = [np.asarray(r["history"], dtype=np.float64) for r in mine]
        n = min(len(h) for h in hist)
        R.band(left, hist[0][:n, 0], np.stack([h[:n, 1] for h in hist]), _label(cfg, c))
        curves = [np.asarray(r["curve"], dtype=np.float64).reshape(-1, 3) for r in mine]
        n = min(len(h) for h in curves)
        if n:
            R.band(right, curves[0][:n, 0], np.stack([h[:n, 2] for h in curves]), _label(cfg, c))
    m = cfg.mode_criteria
    left.set(xlabel="trajectories sampled", ylabel="modes found",
             title=f"{cfg.task.name}: modes (R >= {m.reward_threshold * m.reward_scale:.3g}, "
                   f"Tanimoto < {m.max_similarity})")
    right.set(xlabel="trajectories sampled", ylabel=f"top-{cfg.top_k} mean reward",
              title=f"{cfg.task.name}: top-{cfg.top_k} distinct molecules so far")
    left.legend(fontsize=8)
    save_png(fig, path)


def _seeds_note(cfg: ModeSeekingConfig, row: dict) -> str:
    return "" if row["seeds"] == len(cfg.seeds) else f" ({row['seeds']} of {len(cfg.seeds)} seeds)"


def _label(cfg: ModeSeekingConfig, conditioning: str) -> str:
    if conditioning == "none" and cfg.none_beta is not None:
        return f"none (beta = {cfg.none_beta:g})"
    return conditioning


def _beta_text(b: BetaSampler) -> str:
    return f"{b.kind}[{b.low:g}, {b.high:g}]" if b.kind != "constant" else f"{b.low:g}"


# -- command line ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``lgfn study mode_seeking [--config F] [--out D] [--seeds 0,1] [--modes logit,layer]
    [--quick] [key=value ...]``: run every (mode, seed) not yet finished, then write the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = study_parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    cfg = study_config(ModeSeekingConfig, args, QUICK)
    torch.set_num_threads(cfg.threads)
    progress = not args.no_progress
    specs = run_specs(cfg.conditionings, cfg.seeds)
    results, skipped = run_all(cfg.out, specs, cfg.settings(),
                               lambda spec, folder, p: train_run(cfg, spec, folder, p), progress, NAME,
                               resumable=True, defaults=cfg.default_settings(), only_finished=args.report_only)
    results = with_other_finished(cfg.out, results, cfg.settings(), cfg.default_settings())
    if not results:
        raise ConfigError(f"no finished runs in {cfg.out} to report")
    if skipped:
        tqdm.write(f"{skipped} of {len(specs)} runs had finished before and were skipped")
    paths = write_report(reported(cfg, results), results, " ".join(["lgfn study", NAME, *argv]))
    if cfg.publish:
        R.publish(paths, cfg.publish)
    print(paths[0].read_text())
    return 0
