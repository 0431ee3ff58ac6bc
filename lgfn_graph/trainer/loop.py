"""The training loop: draw a batch from its sources, take a balance step, record, checkpoint."""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm  # tqdm.auto needs ipywidgets in notebooks

from .. import distributed as D
from ..betas import trained_range
from ..buffer import ReplayBuffer
from ..policy import TemperatureGFlowNet
from ..rewards import RewardFn
from ..runfolder import RunFolderError, RunFolderLock
from .batches import Collected, ExploreBeta, Offline, OnPolicy, Replay, Sampled, Stored
from .checkpoints import read_training, restore_training, save_training
from .config import TrainConfig
from .objectives import Objective
from .outputs import RunOutputs, truncate_records
from .randomness import LayerRandomness
from .signals import StopSignals, interrupted

Callback = Callable[["Trainer", Collected, dict], None]


class Trainer:
    """Samples trajectories, scores them and takes balance steps.

    With ``out_dir`` it writes there: ``metrics.jsonl`` (one line per step), ``checkpoint.pt``
    (every ``checkpoint_every`` steps, at the end, and on Ctrl-C), ``samples.db`` (every
    sampled molecule) and TensorBoard logs in ``tb/``. :meth:`load` resumes exactly: the same
    parameters and samples as a run that was never stopped.

    The folder is one run's, and one process's: :meth:`load` and :meth:`train` hold its lock
    (:class:`~lgfn_graph.runfolder.RunFolderLock`) until training ends, so a second trainer
    there fails at once with :class:`~lgfn_graph.runfolder.RunFolderBusy`, naming the first.
    Training starts by cutting the records (metrics, samples) back to the step it starts from, so
    that after a crash at any moment, a resume or a rerun writes each step once; a run from step
    0 into a folder holding a checkpoint is refused (:class:`~lgfn_graph.runfolder.RunFolderError`).

    Every random draw comes from the trainer's own streams (:attr:`generator`, and the stream
    its model's layers draw from during :meth:`train`, :class:`~.randomness.LayerRandomness`);
    the global torch RNG is left as it was.

    Under ``torchrun`` (``torch.distributed`` initialised, see :mod:`lgfn_graph.distributed`)
    each rank samples its own trajectories with generator seed ``seed + rank``, gradients are
    averaged by ``DistributedDataParallel``, and only rank 0 writes files.

    Args:
        env, gfn, reward, config: the task, the model, the reward (unused offline) and settings.
        out_dir: where to write; ``None`` writes nothing.
        dataset: a fixed :class:`ReplayBuffer` of terminal states and ``log R``: offline
            training draws every batch from it, backwards, and never calls the policy to sample.
        callbacks: called as ``f(trainer, batch, metrics)`` after every step.
        extra: plain data stored in every checkpoint's ``extra`` (e.g. the run's whole config,
            so that ``lgfn sample`` can rebuild its task).

    Attributes:
        sampled: the source of each batch's sampled part (:class:`~.batches.OnPolicy` or
            :class:`~.batches.ExploreBeta`), ``None`` offline.
        stored: the source of its stored part (:class:`~.batches.Replay` or
            :class:`~.batches.Offline`), or ``None``.
    """

    def __init__(self, env, gfn: TemperatureGFlowNet, reward: RewardFn | None, config: TrainConfig,
                 out_dir: str | Path | None = None, dataset: ReplayBuffer | None = None,
                 callbacks: list[Callback] = (), extra: dict | None = None):
        self.env, self.gfn, self.reward, self.config = env, gfn, reward, config
        gfn.trained_beta_range = trained_range(config.beta)  # for sampling's far-from-training warning
        self.objective = Objective(gfn, env, config)  # checks that the model fits the objective
        if reward is None and dataset is None:
            raise ValueError("online training needs a reward (only offline training, with a dataset, can omit it)")
        if dataset is not None and len(dataset) == 0:
            raise ValueError("the offline dataset is empty")
        self.rank, self.world_size = D.rank(), D.world_size()
        self.device = torch.device(config.device)
        gfn.to(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None and self.rank == 0 else None
        self.dataset = dataset
        self.buffer = ReplayBuffer(config.replay_capacity, config.replay_priority) if config.replay_capacity else None
        self.callbacks = list(callbacks)
        self.extra = dict(extra or {})
        self._record_smiles = bool(callbacks) or (out_dir is not None and config.sample_db)
        self.sampled, self.stored = self._sources()
        self.generator = torch.Generator().manual_seed(config.seed + self.rank)
        self.layer_rng = LayerRandomness(config.seed, self.device)
        self._loss_fn = D.wrap(self.objective)
        # the fused kernel: one pass over all parameters, ~5x faster than the default on CPU
        self.optimizer = torch.optim.Adam(gfn.parameter_groups(config.lr, config.lr_log_z),
                                          fused=self.device.type in ("cpu", "cuda"))
        self.step = 0
        self._checkpoint_is_mine = False  # whether out_dir's checkpoint.pt is this run's
        self._lock: RunFolderLock | None = None
        self._skipped_in_a_row = 0  # steps in a row skipped as non-finite
        self._warned_of_skip = False

    def _sources(self) -> tuple[Sampled | None, Stored | None]:
        """The batch sources the settings ask for: (sampled, stored)."""
        c = self.config
        if self.dataset is not None:
            return None, Offline(self.dataset, self.env)
        scoring = (self.gfn, self.env, self.reward, c.epsilon, c.log_reward_floor, c.on_invalid, self._record_smiles)
        sampled = (OnPolicy(*scoring, backprop=c.backprop_through_sampling) if c.explore_beta is None
                   else ExploreBeta(*scoring, explore=c.explore_beta))
        return sampled, Replay(self.buffer, self.env, c.replay_fraction) if self.buffer is not None else None

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One step: :meth:`collect` a batch, then :meth:`update` on it. Returns its metrics."""
        return self.update(self.collect())

    def collect(self) -> Collected:
        """Draw a batch of ``batch_size`` at training betas from the trainer's generator: its
        sampled part first (scored, and kept by a replay buffer), then its stored part (drawn
        backwards from the replay buffer or offline dataset)."""
        c = self.config
        progress = self.step / max(c.steps, 1)
        beta = c.beta.sample(c.batch_size, self.generator, progress)
        n_stored = self.stored.count(c.batch_size) if self.stored is not None else 0
        n = c.batch_size - n_stored
        parts = []
        if n:
            parts.append(self.sampled.draw(beta[:n], self.generator, progress, whole=not n_stored))
            if self.stored is not None:
                self.stored.keep(parts[-1])
        if n_stored:
            parts.append(self.stored.draw(beta[n:], self.generator))
        return Collected.join(parts, beta, self.env)

    def update(self, batch: Collected) -> dict:
        """Evaluate the model on all the batch's states in one pass at the training beta, and take
        one optimizer step on the objective. Returns the step's metrics.

        A step whose loss or gradient norm is not finite changes nothing (parameters and
        optimizer state stay, the gradients are dropped): its metrics say ``skipped: 1``, the
        first one warns, and ``config.max_skipped_steps`` in a row raise ``FloatingPointError``.
        Under ``torchrun`` every rank sees the same loss (averaged here) and gradients
        (averaged by DDP), so all ranks skip together."""
        c = self.config
        t0 = time.perf_counter()
        traj, beta, logr = batch.trajectories, batch.beta, batch.log_reward
        loss = self._loss_fn(traj, logr, beta, batch.terms).mean()
        self.optimizer.zero_grad()
        loss.backward()
        # the total norm before clipping: clip_grad_norm_ returns it, so one pass over the gradients either way
        norm = (torch.nn.utils.clip_grad_norm_(self.gfn.parameters(), c.grad_clip) if c.grad_clip else
                torch.nn.utils.get_total_norm([p.grad for p in self.gfn.parameters() if p.grad is not None]))
        self.step += 1
        value, grad_norm = D.mean(loss.detach()).item(), norm.item()
        skipped = not (math.isfinite(value) and math.isfinite(grad_norm))
        if skipped:
            self.optimizer.zero_grad()
            self._skipped(value, grad_norm, beta)
        else:
            self.optimizer.step()
            self._skipped_in_a_row = 0
        sampled = logr[:batch.num_sampled]
        return {"step": self.step, "loss": value, "grad_norm": grad_norm, "skipped": int(skipped),
                "mean_reward": sampled.exp().mean().item() if batch.num_sampled else float("nan"),
                "mean_length": traj.length.float().mean().item(), "mean_beta": beta.mean().item(),
                "log_z": self.gfn.log_z(beta.mean().reshape(1).to(self.device)).item(), "invalid": batch.invalid,
                "time_sample": batch.time_sample, "time_reward": batch.time_reward,
                "time_train": time.perf_counter() - t0}

    def _skipped(self, loss: float, grad_norm: float, beta: torch.Tensor) -> None:
        """Account for a step :meth:`update` skipped: warn of the first, raise after
        ``config.max_skipped_steps`` in a row."""
        self._skipped_in_a_row += 1
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {grad_norm}"
        cause = f"{what} (batch beta in [{beta.min().item():g}, {beta.max().item():g}])"
        if self._skipped_in_a_row >= self.config.max_skipped_steps:
            raise FloatingPointError(
                f"step {self.step}: {self._skipped_in_a_row} steps in a row skipped as non-finite, the last as "
                f"{cause}; the parameters are those from before them. Lower lr, set grad_clip, or check the "
                "rewards and the range of beta")
        if not self._warned_of_skip and self.rank == 0:
            self._warned_of_skip = True
            warnings.warn(f"step {self.step}: optimizer step skipped, {cause}; parameters unchanged (later "
                          "skipped steps are only counted in the metric 'skipped')", RuntimeWarning, stacklevel=3)

    # -- the loop ---------------------------------------------------------------------------
    def train(self, progress: bool = True) -> list[dict]:
        """Run from the current step to ``config.steps``; returns the metrics of each step.

        Holds the output folder's lock throughout and releases it when it returns or raises.
        Starts by dropping the folder's records of steps after the current one (left by a crash).

        SIGINT (Ctrl-C), SIGTERM or SIGHUP (a scheduler's preemption, a closed terminal) finishes
        the step in flight, saves a checkpoint and raises :class:`TrainingInterrupted` (a
        ``KeyboardInterrupt``); a second signal stops at once, keeping the last checkpoint.

        Raises:
            RunFolderBusy: another process holds the output folder.
            RunFolderError: the folder holds a checkpoint this trainer neither loaded nor wrote
                (training would overwrite another run).
        """
        self._own_folder()
        try:
            self._start_records()
            with self.layer_rng.installed():
                return self._run(progress)
        finally:
            self.close()

    def _run(self, progress: bool) -> list[dict]:
        c = self.config
        history, saved = [], None
        outputs = RunOutputs(self.out_dir, self.step, c.sample_db, c.tensorboard, self._record_smiles and c.sample_db)
        with outputs, StopSignals() as stops:
            bar = tqdm(range(self.step, c.steps), desc="train", disable=not progress or self.rank != 0)
            for _ in bar:
                batch = self.collect()
                m = self.update(batch)
                history.append(m)
                outputs.record(batch, m)
                for f in self.callbacks:
                    f(self, batch, m)
                bar.set_postfix(loss=f"{m['loss']:.3f}", reward=f"{m['mean_reward']:.3f}")
                if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save()
                    saved = self.step
                if _asked_to_stop(stops) is not None:
                    break
            if saved != self.step:
                self.save()
            # also after the last step: a preempted `lgfn train` should not go on to its sweep
            signum = _asked_to_stop(stops)
            if signum is not None:
                raise interrupted(signum, self.step)
        return history

    def close(self) -> None:
        """Release the output folder's lock (taken by :meth:`load`) without training."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _own_folder(self) -> None:
        """Take the output folder's lock (rank 0) before anything there is written."""
        if self.out_dir is not None and self._lock is None:
            self._lock = RunFolderLock(self.out_dir).acquire()

    def _start_records(self) -> None:
        """Refuse another run's checkpoint; cut the records back to ``self.step``."""
        if self.out_dir is None:
            return
        checkpoint = self.out_dir / "checkpoint.pt"
        if not self._checkpoint_is_mine and checkpoint.exists():
            raise RunFolderError(f"{self.out_dir} holds the checkpoint of another run ({checkpoint}): load() it to "
                                 "resume, or train into another folder")
        # a run killed before its first checkpoint left records that a new start would double
        truncate_records(self.out_dir, self.step)

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint of the whole training state (rank 0; other ranks send it their
        generator states). Returns its path, or ``None`` where nothing is written."""
        generators, layer_rng = D.gather(self.generator.get_state()), D.gather(self.layer_rng.state())
        if path is None and self.out_dir is None:
            return None
        path = Path(path) if path is not None else self.out_dir / "checkpoint.pt"
        save_training(path, self.gfn, self.env, self.step, self.optimizer, self.generator, generators, layer_rng,
                      self.buffer, self.config, self.extra)
        if self.out_dir is not None and path == self.out_dir / "checkpoint.pt":
            self._checkpoint_is_mine = True
        return path

    def load(self, path: str | Path) -> "Trainer":
        """Restore the training state of a checkpoint written by :meth:`save` (same task, same
        model configuration, same number of ranks), so that :meth:`train` continues exactly.

        Takes the output folder's lock (released by :meth:`train` or :meth:`close`) and drops
        its records past the checkpoint's step (metrics, samples), as they will be redone.

        Raises:
            CheckpointError: the checkpoint is unreadable, from another task or model, or was
                trained with settings that decide the batches or updates (batch size, seed,
                learning rates, beta samplers...) other than ``config``'s, naming them; only
                ``steps``, ``checkpoint_every``, ``device``... may change
                (:data:`~lgfn_graph.resume.HARMLESS`).
            RunFolderBusy: another process holds the output folder.
        """
        state = read_training(path, self.gfn, self.env, self.config, self.world_size)
        self._own_folder()
        try:
            self.step = restore_training(state, self.rank, self.gfn, self.optimizer, self.generator, self.layer_rng,
                                         self.buffer, self.env)
            if self.out_dir is not None:
                truncate_records(self.out_dir, self.step)
        except BaseException:
            self.close()
            raise
        self._checkpoint_is_mine = True
        return self


def _asked_to_stop(stops: StopSignals) -> int | None:
    """The signal that asked training to stop on any rank, or ``None`` (a collective, so that
    every rank stops after the same step)."""
    asked = [s for s in D.gather(stops.requested) if s is not None]
    return asked[0] if asked else None


__all__ = ["Callback", "Trainer"]
