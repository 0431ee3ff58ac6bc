"""Online training with trajectory balance."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .betas import BetaSampler
from .checkpoint import save_checkpoint
from .losses import trajectory_balance
from .policy import TemperatureGFlowNet
from .rewards import RewardFn, log_reward
from .sampler import sample_trajectories


@dataclass
class TrainConfig:
    """Online training settings.

    Args:
        steps: optimizer steps.
        batch_size: trajectories per step.
        lr, lr_log_z: Adam learning rates of the policy and of log Z(beta).
        epsilon: probability of a uniformly random legal action at each sampling step.
        beta: the distribution training draws each trajectory's beta from.
        seed: seeds the model initialisation and every random draw of training.
        grad_clip: gradient-norm clip (``0``: none).
        log_reward_floor: rewards below it count as it (so ``log R`` stays finite).
        checkpoint_every: steps between checkpoints (``0``: only at the end).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 5e-4
    lr_log_z: float = 1e-2
    epsilon: float = 0.05
    beta: BetaSampler = field(default_factory=lambda: BetaSampler(1.0, 32.0))
    seed: int = 0
    grad_clip: float = 10.0
    log_reward_floor: float = 1e-8
    checkpoint_every: int = 0


class Trainer:
    """Samples trajectories, scores them and takes trajectory-balance steps.

    Writes ``metrics.jsonl`` (one line per step) and ``checkpoint.pt`` into ``out_dir`` when
    given.
    """

    def __init__(self, env, gfn: TemperatureGFlowNet, reward: RewardFn, config: TrainConfig,
                 out_dir: str | Path | None = None):
        self.env, self.gfn, self.reward, self.config = env, gfn, reward, config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = torch.optim.Adam(gfn.parameter_groups(config.lr, config.lr_log_z))
        self.step = 0

    def train_step(self) -> dict:
        """One step: sample a batch, score it, back-propagate TB. Returns its metrics."""
        c = self.config
        t0 = time.perf_counter()
        beta = c.beta.sample(c.batch_size, self.generator)
        traj = sample_trajectories(self.gfn, self.env, beta, c.epsilon, self.generator)
        t1 = time.perf_counter()
        mols = [self.env.to_mol(traj.terminal, i) for i in range(len(traj))]
        logr = log_reward(self.reward, mols, c.log_reward_floor)
        t2 = time.perf_counter()
        loss = trajectory_balance(self.gfn.log_z(beta), traj.log_pf, traj.log_pb, logr, beta).mean()
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
                "time_sample": t1 - t0, "time_reward": t2 - t1, "time_train": time.perf_counter() - t2}

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
