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
from ..io import atomic_write, write_csv
from ..metrics import ModeTracker, top_k_diversity, top_k_reward
from ..policy import ModelConfig, TemperatureGFlowNet
from ..sampledb import SampleDB
from ..task import TaskConfig, build_task
from ..trainer import Callback, Trainer, TrainConfig
from . import _report as R
from ._cli import study_config, study_parser
from ._runs import RunSpec, StudyRuns, run_all, run_specs

NAME = "mode_seeking"

# --quick: seconds, not minutes; the settings a smoke test needs and no more
QUICK = ("task.max_fragments=3", "model.hidden=16", "model.num_layers=1", "model.heads=1", "train.steps=5",
         "train.batch_size=8", "top_k=5", "seeds=[0]")


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
        conditionings, seeds, out, publish, threads: which runs, where (see :class:`StudyRuns`).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden=64, num_layers=3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=500, batch_size=32, lr=1e-3, beta=BetaSampler(1.0, 3.0), tensorboard=False))
    none_beta: float | None = 2.0
    mode_criteria: ModeCriteria = field(default_factory=ModeCriteria)
    top_k: int = 100
    out: str = f"runs/studies/{NAME}"

    def __post_init__(self):
        self.check_runs()
        if not self.train.sample_db:
            raise ValueError("train.sample_db must be true: the runs' samples are the study's raw data")
        if self.top_k < 2:
            raise ValueError(f"top_k must be >= 2 (diversity needs a pair), got {self.top_k}")


class ModeRecorder:
    """A :class:`~lgfn_graph.Trainer` callback: passes each step's sampled molecules to a
    :class:`ModeTracker` and keeps the best reward of every distinct molecule (for top-k).

    Molecules without SMILES (invalid) count as trajectories but are never modes.
    """

    def __init__(self, criteria: ModeCriteria):
        self.tracker = criteria.tracker()
        self.best: dict[str, float] = {}

    def __call__(self, trainer: Trainer, batch, metrics: dict) -> None:
        n = batch.num_sampled
        # the same floats the trainer writes to samples.db, so from_samples recounts exactly
        self.record(batch.smiles, batch.log_reward[:n].exp().tolist(), n)

    def record(self, smiles: Sequence[str | None], rewards: Sequence[float], num_trajectories: int) -> None:
        """Add one step: ``smiles`` and ``rewards`` of its ``num_trajectories`` sampled molecules."""
        keep = [i for i, s in enumerate(smiles) if s is not None]
        s, r = [smiles[i] for i in keep], [rewards[i] for i in keep]
        self.tracker.update(s, r, num_trajectories)
        for x, y in zip(s, r):
            if y > self.best.get(x, -math.inf):
                self.best[x] = y

    @classmethod
    def from_samples(cls, path: str | Path, criteria: ModeCriteria) -> "ModeRecorder":
        """The recorder of a finished run, rebuilt from its ``samples.db``, step by step."""
        rec = cls(criteria)
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


def train_run(cfg: ModeSeekingConfig, spec: RunSpec, folder: Path, progress: bool = True,
              callbacks: Sequence[Callback] = ()) -> dict:
    """Train one (mode, seed) run into ``folder`` and return its results: :meth:`ModeRecorder.summary`,
    the modes' SMILES, ``history`` (``[trajectories, modes]`` after each step) and
    ``wall_seconds`` (training, mode tracking included). ``callbacks`` go to the trainer too."""
    env, reward = build_task(cfg.task)
    torch.manual_seed(spec.seed)
    gfn = TemperatureGFlowNet.build(env, replace(cfg.model, conditioning=spec.conditioning))
    recorder = ModeRecorder(cfg.mode_criteria)
    trainer = Trainer(env, gfn, reward, cfg.train_config(spec), folder, callbacks=[recorder, *callbacks])
    t0 = time.perf_counter()
    trainer.train(progress=progress)
    wall = time.perf_counter() - t0
    return {**recorder.summary(cfg.top_k), "wall_seconds": wall, "modes": recorder.tracker.modes,
            "history": [list(h) for h in recorder.tracker.history]}


# -- the report -----------------------------------------------------------------------------------
METRICS = (  # (result key, Markdown heading, decimals)
    ("modes_found", "modes found", 1),
    ("top_k_reward", "top-{k} reward", 3),
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
    body = [[_label(cfg, r["conditioning"])] + [R.cell(r[f"{key}_mean"], r[f"{key}_std"], d) for key, _, d in METRICS]
            for r in rows]
    t = cfg.train
    text = (f"# Mode seeking on {cfg.task.name}\n\n{R.provenance(command)}\n\n"
            f"{rows[0]['trajectories']} sampled trajectories per run ({t.steps} TB steps of batch {t.batch_size}, "
            f"beta ~ {_beta_text(t.beta)} for the loss and exploration, epsilon {t.epsilon}, lr {t.lr}), "
            f"{cfg.model.num_layers}x{cfg.model.hidden} graph transformer; mean ± standard deviation over seeds "
            f"{', '.join(map(str, cfg.seeds))}. A mode: reward >= {cfg.mode_criteria.reward_threshold} x "
            f"{cfg.mode_criteria.reward_scale} and Tanimoto similarity < {cfg.mode_criteria.max_similarity} to "
            f"every earlier mode. Top-{k}: the {k} best distinct molecules sampled in training.\n\n"
            + R.markdown_table(header, body) + "\n")
    with atomic_write(paths[0]) as f:
        f.write(text)
    plot_modes(cfg, results, paths[2])
    return paths


def plot_modes(cfg: ModeSeekingConfig, results: Sequence[dict], path: Path) -> None:
    """Modes found against trajectories sampled: one line per mode, one standard deviation
    over seeds shaded."""
    plt = R.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in cfg.conditionings:
        hist = [np.asarray(r["history"], dtype=np.float64) for r in results if r["conditioning"] == c]
        n = min(len(h) for h in hist)
        R.band(ax, hist[0][:n, 0], np.stack([h[:n, 1] for h in hist]), _label(cfg, c))
    m = cfg.mode_criteria
    ax.set(xlabel="trajectories sampled", ylabel="modes found",
           title=f"{cfg.task.name}: modes (R >= {m.reward_threshold * m.reward_scale:.3g}, "
                 f"Tanimoto < {m.max_similarity})")
    ax.legend(fontsize=8)
    R.save_png(fig, path)


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
                               lambda spec, folder, p: train_run(cfg, spec, folder, p), progress, NAME)
    if skipped:
        tqdm.write(f"{skipped} of {len(specs)} runs had finished before and were skipped")
    paths = write_report(cfg, results, " ".join(["lgfn study", NAME, *argv]))
    if cfg.publish:
        R.publish(paths, cfg.publish)
    print(paths[0].read_text())
    return 0
