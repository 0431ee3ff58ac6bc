"""Online training with trajectory, detailed or sub-trajectory balance."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .betas import BetaSampler
from .checkpoint import save_checkpoint
from .losses import OBJECTIVES, detailed_balance, subtrajectory_balance, trajectory_balance
from .policy import TemperatureGFlowNet
from .rewards import RewardFn, score_molecules
from .sampler import Replay, Trajectories, replay, sample_trajectories


@dataclass
class TrainConfig:
    r"""Online training settings.

    Args:
        steps: optimizer steps.
        batch_size: trajectories per step.
        lr, lr_log_z: Adam learning rates of the policy and of log Z(beta).
        epsilon: probability of a uniformly random legal action at each sampling step.
        beta: the distribution of the beta each trajectory is trained at (the loss's beta).
        explore_beta: the distribution of the beta trajectories are *sampled* at; ``None``:
            the training beta (on-policy). Annealing kinds follow training progress.
        objective: ``"tb"`` (trajectory balance), ``"db"`` (detailed balance) or ``"subtb"``
            (sub-trajectory balance with weight ``subtb_lambda``); the last two need a model
            with a state-flow head (``ModelConfig(state_flow=True)``).
        symmetry_correction: add the environment's ``log_reward_correction(x)`` to the target
            when it has one (``log |Aut(x)|`` for fragment trees), so that the learned
            distribution is :math:`\propto R(x)^\beta` over objects rather than over labelled
            states.
        seed: seeds the model initialisation and every random draw of training.
        grad_clip: gradient-norm clip (``0``: none).
        log_reward_floor: rewards below it count as it (so ``log R`` stays finite).
        on_invalid: a molecule that is invalid, or whose reward raises or is NaN, infinite or
            negative: ``"raise"`` stops training with an error naming it; ``"floor"`` gives it
            ``log_reward_floor`` and counts it in the ``invalid`` metric.
        checkpoint_every: steps between checkpoints (``0``: only at the end).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    lr_log_z: float = 1e-2
    epsilon: float = 0.05
    beta: BetaSampler = field(default_factory=lambda: BetaSampler(1.0, 32.0))
    explore_beta: BetaSampler | None = None
    objective: str = "tb"
    subtb_lambda: float = 0.9
    symmetry_correction: bool = True
    seed: int = 0
    grad_clip: float = 10.0
    log_reward_floor: float = 1e-8
    on_invalid: str = "raise"
    checkpoint_every: int = 0

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"TrainConfig.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.on_invalid not in ("raise", "floor"):
            raise ValueError(f"TrainConfig.on_invalid must be 'raise' or 'floor', got {self.on_invalid!r}")


@dataclass
class Collected:
    """A scored batch: trajectories, their training betas ``[B]`` and ``log R(x)`` ``[B]``."""

    trajectories: Trajectories
    beta: torch.Tensor
    log_reward: torch.Tensor
    invalid: int
    time_sample: float
    time_reward: float


class Trainer:
    """Samples trajectories, scores them and takes trajectory-balance steps.

    Writes ``metrics.jsonl`` (one line per step) and ``checkpoint.pt`` into ``out_dir`` when
    given.
    """

    def __init__(self, env, gfn: TemperatureGFlowNet, reward: RewardFn, config: TrainConfig,
                 out_dir: str | Path | None = None):
        self.env, self.gfn, self.reward, self.config = env, gfn, reward, config
        if config.objective != "tb" and gfn.state_flow is None:
            raise ValueError(f"objective {config.objective!r} needs state flows: build the model with "
                             "ModelConfig(state_flow=True)")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = torch.optim.Adam(gfn.parameter_groups(config.lr, config.lr_log_z))
        self.step = 0

    def train_step(self) -> dict:
        """One step: :meth:`collect` a batch, then :meth:`update` on it. Returns its metrics."""
        return self.update(self.collect())

    def collect(self) -> Collected:
        """Sample a batch of trajectories without gradients (at the exploration beta) and score it."""
        c = self.config
        t0 = time.perf_counter()
        progress = self.step / max(c.steps, 1)
        beta = c.beta.sample(c.batch_size, self.generator, progress)
        explore = c.explore_beta.sample(c.batch_size, self.generator, progress) if c.explore_beta else beta
        with torch.no_grad():
            traj = sample_trajectories(self.gfn, self.env, explore, c.epsilon, self.generator)
        t1 = time.perf_counter()
        mols = [self.env.to_mol(traj.terminal, i) for i in range(len(traj))]
        scored = score_molecules(self.reward, mols, c.log_reward_floor, c.on_invalid)
        return Collected(traj, beta, scored.log_reward, int(scored.invalid.sum()), t1 - t0, time.perf_counter() - t1)

    def update(self, batch: Collected) -> dict:
        """Evaluate the model on all the batch's states in one pass at the training beta, and take
        one optimizer step on the objective. Returns the step's metrics."""
        c = self.config
        t0 = time.perf_counter()
        traj, beta, logr = batch.trajectories, batch.beta, batch.log_reward
        loss = self.loss(traj, replay(self.gfn, self.env, traj, beta), logr, beta).mean()
        self.optimizer.zero_grad()
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.gfn.parameters(), c.grad_clip)
        self.optimizer.step()
        self.step += 1
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {self.step}: the loss is {loss.item()}")
        return {"step": self.step, "loss": loss.item(), "mean_reward": logr.exp().mean().item(),
                "mean_length": traj.length.float().mean().item(), "mean_beta": beta.mean().item(),
                "invalid": batch.invalid, "time_sample": batch.time_sample, "time_reward": batch.time_reward,
                "time_train": time.perf_counter() - t0}

    def loss(self, traj: Trajectories, rep: Replay, log_r: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The configured objective of each trajectory, ``[B]``."""
        c = self.config
        sym = None
        if c.symmetry_correction and hasattr(self.env, "log_reward_correction"):
            sym = self.env.log_reward_correction(traj.terminal)
        log_z = self.gfn.log_z(beta)
        if c.objective == "tb":
            return trajectory_balance(log_z, rep.log_pf, rep.log_pb, log_r, beta, sym)
        if c.objective == "db":
            return detailed_balance(log_z, rep.log_flow, rep.log_pf, rep.log_pb, log_r, beta, traj.length, sym)
        return subtrajectory_balance(log_z, rep.log_flow, rep.log_pf, rep.log_pb, log_r, beta, traj.length,
                                     c.subtb_lambda, sym)

    def train(self, progress: bool = True) -> list[dict]:
        """Run ``config.steps`` steps; returns the metrics of each."""
        torch.manual_seed(self.config.seed)
        history = []
        log = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.out_dir / "metrics.jsonl", "a")
        try:
            bar = tqdm(range(self.config.steps), desc="train", disable=not progress)
            for _ in bar:
                m = self.train_step()
                history.append(m)
                bar.set_postfix(loss=f"{m['loss']:.3f}", reward=f"{m['mean_reward']:.3f}")
                if log is not None:
                    log.write(json.dumps(m) + "\n")
                    log.flush()
                every = self.config.checkpoint_every
                if every and self.step % every == 0:
                    self.save()
        finally:
            if log is not None:
                log.close()
        if self.out_dir is not None:
            self.save()
        return history

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path is not None else self.out_dir / "checkpoint.pt"
        save_checkpoint(path, self.gfn, self.env, self.step, self.optimizer, self.generator,
                        extra={"train_config": asdict(self.config)})
        return path
