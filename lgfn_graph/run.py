"""Running a :class:`RunConfig`: build the task and model, train, sample at each beta, write outputs.

``lgfn train`` and the scripts in ``tasks/`` both end in :func:`train_and_sweep`; the scripts'
own options are mapped onto a :class:`RunConfig` by :func:`config_from_args`.
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from . import distributed as D
from .betas import BetaSampler, check_beta
from .checkpoint import load_checkpoint
from .config import EvalConfig, RunConfig, to_dict, write_config
from .evaluate import temperature_sweep
from .files import atomic_write
from .policy import MODES, ModelConfig, TemperatureGFlowNet
from .resume import check_resumable
from .rewards import RewardFn
from .runfolder import RunFolderError, RunFolderLock
from .task import TaskConfig, build_task
from .trainer import TrainConfig, Trainer


def add_training_args(p: argparse.ArgumentParser, out: str, max_fragments: int, beta_high: float,
                      eval_betas: str) -> argparse.ArgumentParser:
    """The options every fragment task script shares (model, training, sampling), with its defaults."""
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--max-fragments", type=int, default=max_fragments)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditioning", default="logit", choices=MODES)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--beta-low", type=float, default=1.0)
    p.add_argument("--beta-high", type=float, default=beta_high)
    p.add_argument("--eval-betas", default=eval_betas, help="comma-separated betas to sample at")
    p.add_argument("--eval-n", type=int, default=256, help="molecules per beta")
    p.add_argument("--device", default="cpu", help="where the model trains: cpu, cuda or cuda:K")
    p.add_argument("--reward-workers", type=int, default=0,
                   help="score the reward in this many processes (same scores; for RDKit rewards on idle cores)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--resume-or-start", action="store_true",
                   help="continue the run in --out up to --steps if it has a checkpoint (then sample again), "
                        "else start it there")
    return p


def config_from_args(a: argparse.Namespace, task: TaskConfig) -> RunConfig:
    """The run that the options of :func:`add_training_args` describe, on ``task``."""
    return RunConfig(
        task=replace(task, reward_workers=a.reward_workers),
        model=ModelConfig(hidden=a.hidden, num_layers=a.num_layers, conditioning=a.conditioning),
        train=TrainConfig(steps=a.steps, batch_size=a.batch_size, seed=a.seed,
                          beta=BetaSampler(a.beta_low, a.beta_high), checkpoint_every=250, device=a.device),
        eval=EvalConfig(parse_betas(a.eval_betas, "--eval-betas"), a.eval_n, seed=a.seed),
        out=a.out)


def train_and_sweep(cfg: RunConfig, resume: bool = False, progress: bool = True) -> list[dict]:
    """Train as ``cfg`` says, sample ``cfg.eval.n`` molecules at each of ``cfg.eval.betas``, print
    a table and write into ``cfg.out``: ``config.yaml``, ``checkpoint.pt``, ``metrics.jsonl``,
    ``samples.csv``, ``summary.csv``, ``mean_reward_vs_beta.png`` and ``run.json``.

    Under ``torchrun`` the processes train data-parallel and rank 0 alone samples and writes
    (other ranks return ``[]``). Rank 0 holds ``cfg.out``'s lock throughout
    (:class:`~lgfn_graph.runfolder.RunFolderLock`): a folder another process trains in is refused.

    With ``resume`` and a ``checkpoint.pt`` in ``cfg.out``, training continues from it (model,
    optimizer, generators and step) up to ``cfg.train.steps``, once ``cfg`` is checked against
    the run configuration the checkpoint records (:func:`~lgfn_graph.resume.check_resumable`:
    only ``train.steps``, ``checkpoint_every``, ``device``, ``tensorboard``, ``task.reward_workers``,
    ``eval`` and ``out`` may differ; the differences are printed). Without one, training starts
    afresh; without ``resume``, a checkpoint there is refused (:class:`~lgfn_graph.runfolder.RunFolderError`).
    Returns the summary rows of :func:`lgfn_graph.temperature_sweep`.
    """
    out = Path(cfg.out)
    rank, _ = D.init_from_env(cfg.train.device)  # under torchrun: data-parallel, rank 0 writes
    with RunFolderLock(out) if rank == 0 else nullcontext():
        trainer, reward, train_s = _train(cfg, resume, progress)
        if rank != 0:
            return []
        return _sweep(cfg, trainer, reward, train_s)


def _train(cfg: RunConfig, resume: bool, progress: bool) -> tuple[Trainer, RewardFn, float]:
    """Build the task and model, load the checkpoint to resume if any, train. Returns the trainer,
    the reward and the seconds training took."""
    out, rank = Path(cfg.out), D.rank()
    checkpoint = out / "checkpoint.pt"
    if checkpoint.is_file() and not resume:
        raise RunFolderError(f"{out} holds the checkpoint of a run: resume it, or write into another folder")
    resuming = resume and checkpoint.is_file()
    if resuming:
        note = _check_resumable(checkpoint, cfg)
        if rank == 0:
            print(note)
    env, reward = build_task(cfg.task)
    torch.manual_seed(cfg.train.seed)
    gfn = TemperatureGFlowNet.build(env, cfg.model)
    trainer = Trainer(env, gfn, reward, cfg.train, out, extra={"run_config": to_dict(cfg)})
    try:
        if resuming:
            trainer.load(checkpoint)
        if rank == 0:
            write_config(cfg, out / "config.yaml")
        t0 = time.time()
        trainer.train(progress=progress)
        return trainer, reward, time.time() - t0
    finally:
        trainer.close()  # when load() succeeded and what follows failed


def _sweep(cfg: RunConfig, trainer: Trainer, reward: RewardFn, train_s: float) -> list[dict]:
    """Sample at each evaluation beta, print the table, write the sweep's files and ``run.json``."""
    out = Path(cfg.out)
    summary = temperature_sweep(trainer.gfn, trainer.env, reward, cfg.eval.betas, cfg.eval.n, out, seed=cfg.eval.seed)
    print(f"trained to step {trainer.step} in {train_s:.0f} s; outputs in {out}/")
    print(format_summary(summary))
    with atomic_write(out / "run.json") as f:
        json.dump({"config": to_dict(cfg), "train_seconds": train_s, "summary": summary}, f, indent=1)
    return summary


def _check_resumable(checkpoint: Path, cfg: RunConfig) -> str:
    """Raise :class:`~lgfn_graph.CheckpointError` unless ``cfg`` continues the run the checkpoint
    records exactly; returns a line saying what is resumed and what changes."""
    state = load_checkpoint(checkpoint)
    recorded = (state.get("extra") or {}).get("run_config")
    # a checkpoint without a run config (written by a Trainer of one's own) is still checked
    # by Trainer.load, against its training settings
    changes = check_resumable(str(checkpoint), recorded, to_dict(cfg), to_dict(RunConfig())) if recorded else []
    return f"resuming {checkpoint} at step {state['step']}" + (f"; changed: {', '.join(changes)}" if changes else "")


def format_summary(summary: list[dict]) -> str:
    """The rows of :func:`lgfn_graph.temperature_sweep` as a text table."""
    lines = ["beta  mean_reward  max_reward  unique"]
    lines += [f"{s['beta']:>5g}  {s['mean_reward']:11.3f}  {s['max_reward']:10.3f}  {s['unique_fraction']:6.2f}"
              for s in summary]
    return "\n".join(lines)


def parse_betas(text: str, name: str = "betas") -> list[float]:
    """``"1,4,16"`` -> ``[1.0, 4.0, 16.0]``; raises ``ValueError`` naming ``name`` for a bad value."""
    try:
        betas = [float(b) for b in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None
    check_beta(betas, name)
    return betas
