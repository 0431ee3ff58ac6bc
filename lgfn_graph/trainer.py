"""Training with trajectory, detailed or sub-trajectory balance: online, from a replay buffer,
or offline from a fixed dataset; resumable exactly, and data-parallel under ``torchrun``."""
from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rdkit import Chem
from torch import nn
from tqdm import tqdm  # tqdm.auto needs ipywidgets in notebooks

from . import distributed as D
from .betas import BetaSampler, check_sampler, trained_range
from .buffer import PRIORITIES, ReplayBuffer
from .checks import SEED_MAX, check_bool, check_choice, check_device, check_int, check_real
from .checkpoint import check_same_task, load_checkpoint, save_checkpoint
from .io import atomic_write
from .losses import OBJECTIVES, detailed_balance, subtrajectory_balance, trajectory_balance
from .policy import TemperatureGFlowNet
from .resume import check_resumable
from .rewards import RewardFn, score_molecules
from .runfolder import RunFolderError, RunFolderLock
from .sampledb import SampleDB
from .sampler import (Replay, Trajectories, model_device, replay, sample_and_evaluate, sample_backward_trajectories,
                      sample_trajectories)


@dataclass
class TrainConfig:
    r"""Online training settings.

    Every field is checked when the config is made: a value of the wrong type or out of range
    raises a one-line ``ValueError`` naming it (``TrainConfig.lr must be finite and > 0, got -1.0``).

    Args:
        steps: training steps, >= 0 (``0``: none, e.g. to evaluate an untrained model).
        batch_size: trajectories per step, >= 1.
        lr, lr_log_z: Adam learning rates of the policy and of log Z(beta) (finite, > 0).
        epsilon: probability of a uniformly random legal action at each sampling step, in [0, 1].
        beta: the distribution of the beta each trajectory is trained at (the loss's beta); a
            number ``b`` means the constant ``b`` (:meth:`BetaSampler.from_number`).
        explore_beta: the distribution of the beta trajectories are *sampled* at, or a number
            (a constant); ``None``: the training beta (on-policy). Annealing kinds follow
            training progress.
        objective: ``"tb"`` (trajectory balance), ``"db"`` (detailed balance) or ``"subtb"``
            (sub-trajectory balance with weight ``subtb_lambda`` > 0); the last two need a model
            with a state-flow head (``ModelConfig(state_flow=True)``).
        symmetry_correction: add the environment's ``log_reward_correction(x)`` to the target
            when it has one (``log |Aut(x)|`` for fragment trees), so that the learned
            distribution is :math:`\propto R(x)^\beta` over objects rather than over labelled
            states.
        seed: seeds every random draw of training (rank r of a distributed run uses ``seed + r``),
            in ``[0, 2**63 - 1]``.
            The model is built before the trainer: seed torch before building it for a
            reproducible initialisation (``lgfn train`` and the task scripts do).
        grad_clip: gradient-norm clip, >= 0 (``0``: none).
        log_reward_floor: rewards below it count as it (so ``log R`` stays finite); finite, > 0.
        on_invalid: a molecule that is invalid, or whose reward raises or is NaN, infinite or
            negative: ``"raise"`` stops training with an error naming it; ``"floor"`` gives it
            ``log_reward_floor`` and counts it in the ``invalid`` metric.
        checkpoint_every: steps between checkpoints, >= 0 (``0``: only at the end). A checkpoint
            holds everything a resume needs (:meth:`Trainer.load`).
        replay_capacity: size of a replay buffer of sampled terminal states, >= 0 (``0``: none).
        replay_fraction: the fraction of each batch drawn (backwards, from the buffer's terminal
            states) instead of sampled, once the buffer holds a batch.
        replay_priority: ``"uniform"`` or ``"reward"`` (see :class:`ReplayBuffer`).
        sample_db: record every sampled molecule in ``samples.db`` (SQLite) in ``out_dir``.
        tensorboard: write TensorBoard logs into ``out_dir/tb``.
        backprop_through_sampling: a batch sampled on-policy (no ``explore_beta``, nothing from
            a replay buffer or dataset) back-propagates through the model passes that sampled
            it, keeping their activations while the reward runs: the same loss and gradients as
            evaluating its states again (:func:`~lgfn_graph.sampler.replay`), one forward pass
            fewer per step. ``False``: always sample without gradients, then replay.
        device: where the model trains: ``"cpu"``, ``"cuda"`` or ``"cuda:K"`` (under
            ``torchrun``, ``"cuda"`` means each process's own GPU, ``LOCAL_RANK``). The
            environment and the reward stay on the CPU.
        max_skipped_steps: a step whose loss or gradient norm is not finite is skipped (the
            parameters and optimizer state stay as they were) and counted in the ``skipped``
            metric; this many in a row (>= 1) stop training with ``FloatingPointError``.
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
    replay_capacity: int = 0
    replay_fraction: float = 0.5
    replay_priority: str = "reward"
    sample_db: bool = True
    tensorboard: bool = True
    backprop_through_sampling: bool = True
    device: str = "cpu"
    max_skipped_steps: int = 10

    def __post_init__(self):
        check_int(self, "steps", 0)
        check_int(self, "batch_size", 1)
        for name in ("lr", "lr_log_z", "subtb_lambda", "log_reward_floor"):
            check_real(self, name, 0, low_open=True)
        for name in ("epsilon", "replay_fraction"):
            check_real(self, name, 0, 1)
        check_real(self, "grad_clip", 0)
        check_sampler(self, "beta")
        check_sampler(self, "explore_beta", optional=True)
        check_choice(self, "objective", OBJECTIVES)
        check_choice(self, "on_invalid", ("raise", "floor"))
        check_choice(self, "replay_priority", PRIORITIES)
        check_int(self, "seed", 0, SEED_MAX)
        for name in ("checkpoint_every", "replay_capacity"):
            check_int(self, name, 0)
        check_int(self, "max_skipped_steps", 1)
        for name in ("symmetry_correction", "sample_db", "tensorboard", "backprop_through_sampling"):
            check_bool(self, name)
        check_device(self, "device")


@dataclass
class Collected:
    """A scored batch.

    Attributes:
        trajectories: ``B`` trajectories; the first ``num_sampled`` were sampled by the policy,
            the rest drawn backwards from a replay buffer or dataset.
        beta: ``[B]``, the betas the loss is taken at.
        log_reward: ``[B]``, ``log R(x)``.
        smiles: the SMILES of the sampled molecules (``None`` for an invalid one).
        invalid: how many sampled molecules were invalid or had a bad reward.
        replay: the model's terms along the trajectories, with gradients, from the passes that
            sampled them (on-policy batches, ``TrainConfig.backprop_through_sampling``), or
            ``None``: :meth:`Trainer.update` evaluates them.
    """

    trajectories: Trajectories
    beta: torch.Tensor
    log_reward: torch.Tensor
    num_sampled: int
    smiles: list
    invalid: int
    time_sample: float
    time_reward: float
    replay: Replay | None = None


class Objective(nn.Module):
    """The configured balance loss of a batch as a module, so that distributed training can
    wrap it in ``DistributedDataParallel``."""

    def __init__(self, gfn: TemperatureGFlowNet, env, config: "TrainConfig"):
        super().__init__()
        self.gfn, self.env, self.config = gfn, env, config

    def forward(self, traj: Trajectories, log_r: torch.Tensor, beta: torch.Tensor,
                rep: Replay | None = None) -> torch.Tensor:
        """Per-trajectory loss ``[B]`` at ``beta`` (``[B]``), on the model's device. ``rep``: the
        model's terms along ``traj`` at ``beta`` when already computed, else they are replayed."""
        c = self.config
        dev = model_device(self.gfn)
        beta, log_r = beta.to(dev), log_r.to(dev)
        if rep is None:
            rep = replay(self.gfn, self.env, traj, beta)
        sym = None
        if c.symmetry_correction and hasattr(self.env, "log_reward_correction"):
            sym = self.env.log_reward_correction(traj.terminal).to(dev)
        log_z = self.gfn.log_z(beta)
        if c.objective == "tb":
            return trajectory_balance(log_z, rep.log_pf, rep.log_pb, log_r, beta, sym)
        if c.objective == "db":
            return detailed_balance(log_z, rep.log_flow, rep.log_pf, rep.log_pb, log_r, beta, traj.length, sym)
        return subtrajectory_balance(log_z, rep.log_flow, rep.log_pf, rep.log_pb, log_r, beta, traj.length,
                                     c.subtb_lambda, sym)


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
    """

    def __init__(self, env, gfn: TemperatureGFlowNet, reward: RewardFn | None, config: TrainConfig,
                 out_dir: str | Path | None = None, dataset: ReplayBuffer | None = None,
                 callbacks: list[Callback] = (), extra: dict | None = None):
        self.env, self.gfn, self.reward, self.config = env, gfn, reward, config
        gfn.trained_beta_range = trained_range(config.beta)  # for sampling's far-from-training warning
        if config.objective != "tb" and gfn.state_flow is None:
            raise ValueError(f"objective {config.objective!r} needs state flows: build the model with "
                             "ModelConfig(state_flow=True)")
        if reward is None and dataset is None:
            raise ValueError("online training needs a reward (only offline training, with a dataset, can omit it)")
        if dataset is not None and len(dataset) == 0:
            raise ValueError("the offline dataset is empty")
        self.rank, self.world_size = D.rank(), D.world_size()
        self.device = torch.device(config.device)
        gfn.to(self.device)
        self.out_dir = Path(out_dir) if out_dir is not None and self.rank == 0 else None
        self._record_smiles = bool(callbacks) or (out_dir is not None and config.sample_db)
        self.dataset = dataset
        self.buffer = ReplayBuffer(config.replay_capacity, config.replay_priority) if config.replay_capacity else None
        self.callbacks = list(callbacks)
        self.extra = dict(extra or {})
        self.generator = torch.Generator().manual_seed(config.seed + self.rank)
        self.objective = Objective(gfn, env, config)
        self._loss_fn = D.wrap(self.objective)
        # the fused kernel: one pass over all parameters, ~5x faster than the default on CPU
        self.optimizer = torch.optim.Adam(gfn.parameter_groups(config.lr, config.lr_log_z),
                                          fused=self.device.type in ("cpu", "cuda"))
        self.step = 0
        self._stop_requested: int | None = None  # the signal that asked training to stop
        self._checkpoint_is_mine = False  # whether out_dir's checkpoint.pt is this run's
        self._lock: RunFolderLock | None = None

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict:
        """One step: :meth:`collect` a batch, then :meth:`update` on it. Returns its metrics."""
        return self.update(self.collect())

    def collect(self) -> Collected:
        """Draw a batch: sampled without gradients at the exploration beta and scored, or drawn
        backwards from the replay buffer or offline dataset."""
        c = self.config
        progress = self.step / max(c.steps, 1)
        beta = c.beta.sample(c.batch_size, self.generator, progress)
        n_stored = c.batch_size if self.dataset is not None else 0
        if self.buffer is not None and len(self.buffer) >= c.batch_size:
            n_stored = int(round(c.replay_fraction * c.batch_size))
        n = c.batch_size - n_stored
        parts, logr, smiles, invalid, t_sample, t_reward, rep = [], [], [], 0, 0.0, 0.0, None
        if n:
            t0 = time.perf_counter()
            explore = c.explore_beta.sample(n, self.generator, progress) if c.explore_beta else beta[:n]
            if c.backprop_through_sampling and n_stored == 0 and c.explore_beta is None:
                with torch.enable_grad():
                    traj, rep = sample_and_evaluate(self.gfn, self.env, explore, c.epsilon, self.generator)
            else:
                traj = sample_trajectories(self.gfn, self.env, explore, c.epsilon, self.generator)
            t1 = time.perf_counter()
            mols = [self.env.to_mol(traj.terminal, i) for i in range(n)]
            scored = score_molecules(self.reward, mols, c.log_reward_floor, c.on_invalid)
            if self._record_smiles:
                smiles = [_smiles(m) for m in mols]
            invalid = int(scored.invalid.sum())
            t_sample, t_reward = t1 - t0, time.perf_counter() - t1
            parts.append(traj)
            logr.append(scored.log_reward)
            if self.buffer is not None:
                ok = ~scored.invalid
                self.buffer.add(traj.terminal[ok.nonzero().flatten()], scored.log_reward[ok])
        if n_stored:
            t0 = time.perf_counter()
            source = self.dataset if self.dataset is not None else self.buffer
            states, stored_logr = source.sample(n_stored, self.generator)
            parts.append(sample_backward_trajectories(self.env, states, beta[n:], self.generator))
            logr.append(stored_logr)
            t_sample += time.perf_counter() - t0
        traj = parts[0] if len(parts) == 1 else Trajectories.cat(parts, self.env)
        return Collected(traj, beta, torch.cat(logr), n, smiles, invalid, t_sample, t_reward, rep)

    # steps skipped in a row as non-finite, and whether one was warned of (update() sets them per trainer)
    _skipped_in_a_row = 0
    _warned_of_skip = False

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
        loss = self._loss_fn(traj, logr, beta, batch.replay).mean()
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

    def loss(self, traj: Trajectories, log_r: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The configured objective of each trajectory at ``beta``, ``[B]``."""
        return self.objective(traj, log_r, beta)

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
            if self.step == 0:
                torch.manual_seed(self.config.seed)
            return self._run(progress)
        finally:
            self.close()

    def _run(self, progress: bool) -> list[dict]:
        history, saved = [], None
        with _Outputs(self) as out, _signals_stop(self):
            bar = tqdm(range(self.step, self.config.steps), desc="train", disable=not progress or self.rank != 0)
            for _ in bar:
                batch = self.collect()
                m = self.update(batch)
                history.append(m)
                out.record(batch, m)
                for f in self.callbacks:
                    f(self, batch, m)
                bar.set_postfix(loss=f"{m['loss']:.3f}", reward=f"{m['mean_reward']:.3f}")
                every = self.config.checkpoint_every
                if every and self.step % every == 0:
                    self.save()
                    saved = self.step
                if self._stop_signal() is not None:
                    break
            if saved != self.step:
                self.save()
            # also after the last step: a preempted `lgfn train` should not go on to its sweep
            signum = self._stop_signal()
            if signum is not None:
                raise TrainingInterrupted(signum, f"stopped by {signal.Signals(signum).name} at step {self.step}; "
                                                  "checkpoint saved")
        return history

    def _stop_signal(self) -> int | None:
        """The signal that asked training to stop on any rank, or ``None`` (a collective, so that
        every rank stops after the same step)."""
        asked = [s for s in D.gather(self._stop_requested) if s is not None]
        return asked[0] if asked else None

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
        self._truncate_records()

    def _truncate_records(self) -> None:
        """Drop the records of the steps after ``self.step``, which training redoes, and a
        metrics line cut off by a kill."""
        _truncate_metrics(self.out_dir / "metrics.jsonl", self.step)
        if (self.out_dir / "samples.db").exists():
            with SampleDB(self.out_dir / "samples.db") as db:
                db.truncate_after(self.step)

    # -- checkpoints ------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint of the whole training state (rank 0; other ranks send it their
        generator states). Returns its path, or ``None`` where nothing is written."""
        generators = D.gather(self.generator.get_state())
        if path is None and self.out_dir is None:
            return None
        path = Path(path) if path is not None else self.out_dir / "checkpoint.pt"
        training = {"generators": generators, "world_size": self.world_size,
                    "buffer": self.buffer.state_dict() if self.buffer is not None else None}
        save_checkpoint(path, self.gfn, self.env, self.step, self.optimizer, self.generator,
                        extra={"train_config": asdict(self.config), **self.extra}, training=training)
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
        state = load_checkpoint(path)
        check_same_task(path, state, self.gfn, self.env)
        recorded = (state.get("extra") or {}).get("train_config")
        if recorded is not None:
            check_resumable(str(path), {"train": recorded}, {"train": asdict(self.config)},
                            {"train": asdict(TrainConfig())})
        training = state.get("training") or {}
        if training.get("world_size", 1) != self.world_size:
            raise ValueError(f"{path}: saved by {training.get('world_size')} processes, resumed with {self.world_size}")
        self._own_folder()
        try:
            self.gfn.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(training["generators"][self.rank])
            torch.set_rng_state(state["torch_rng"])
            if self.buffer is not None and training.get("buffer") is not None:
                self.buffer.load_state_dict(training["buffer"], type(self.env.initial(0)))
            self.step = state["step"]
            if self.out_dir is not None:
                self._truncate_records()
        except BaseException:
            self.close()
            raise
        self._checkpoint_is_mine = True
        return self


def _smiles(mol) -> str | None:
    try:
        return Chem.MolToSmiles(mol) if mol is not None else None
    except Exception:  # RDKit raises many types; an unwritable molecule is recorded as invalid
        return None


class _Outputs:
    """The files a run writes as it goes (rank 0 only): metrics, samples, TensorBoard."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.log = self.db = self.tb = None
        self._files = ExitStack()  # closes each file even when closing another fails (a full disk)

    def __enter__(self) -> "_Outputs":
        t, out = self.t, self.t.out_dir
        if out is None:
            return self
        with self._files as files:
            self.log = files.enter_context(open(out / "metrics.jsonl", "a"))
            if t.config.sample_db:
                self.db = files.enter_context(SampleDB(out / "samples.db"))
            if t.config.tensorboard:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(out / "tb"), purge_step=t.step + 1)
                files.callback(self.tb.close)
            self._files = files.pop_all()  # opened: keep them open until __exit__
        return self

    def record(self, batch: Collected, m: dict) -> None:
        rows = None
        if self.t._record_smiles and self.t.config.sample_db and batch.num_sampled:
            n = batch.num_sampled
            mine = (batch.smiles, batch.log_reward[:n].exp().tolist(), batch.beta[:n].tolist())
            rows = D.gather(mine)  # every rank's samples reach rank 0
        if self.log is None:
            return
        self.log.write(json.dumps(m) + "\n")
        self.log.flush()
        if rows is not None:
            for rank, (smiles, reward, beta) in enumerate(rows):
                self.db.add(m["step"], smiles, reward, beta, [s is not None for s in smiles], rank)
        if self.tb is not None:
            for k, v in m.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, m["step"])

    def __exit__(self, *exc) -> None:
        self._files.close()


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT, SIGTERM or SIGHUP), after saving a checkpoint unless
    the signal was a second one. ``signum``: the signal; ``lgfn train`` exits with ``128 + signum``."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _signals_stop:
    """While active (main thread only), SIGINT, SIGTERM and SIGHUP ask the trainer to stop after
    the current step instead of interrupting it half-way; a second one interrupts at once. A
    signal the process ignores stays ignored (``nohup`` ignores SIGHUP so that a run outlives
    its terminal)."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.old: dict = {}

    def _handle(self, signum, frame):
        if self.t._stop_requested is not None:
            raise TrainingInterrupted(signum, f"stopped at once by a second {signal.Signals(signum).name}; the last "
                                              "checkpoint is kept")
        self.t._stop_requested = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self.old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)  # None: set outside Python
        self.old = {}
        self.t._stop_requested = None


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (and drop a line cut off by a kill)."""
    if not path.exists():
        return
    text = path.read_text()
    keep = []
    for line in text.splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    kept = "".join(k + "\n" for k in keep)  # a last line without its newline gets one: never glued to the next
    if kept != text:
        with atomic_write(path) as f:
            f.write(kept)
