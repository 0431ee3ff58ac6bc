"""Training with trajectory, detailed or sub-trajectory balance: online, from a replay buffer,
or offline from a fixed dataset; resumable exactly, and data-parallel under ``torchrun``."""
from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from rdkit import Chem
from torch import nn
from tqdm import tqdm  # tqdm.auto needs ipywidgets in notebooks

from . import distributed as D
from .betas import BetaSampler
from .buffer import ReplayBuffer
from .checkpoint import check_same_task, load_checkpoint, save_checkpoint
from .io import atomic_write
from .losses import OBJECTIVES, detailed_balance, subtrajectory_balance, trajectory_balance
from .policy import TemperatureGFlowNet
from .rewards import RewardFn, score_molecules
from .sampledb import SampleDB
from .sampler import (Replay, Trajectories, model_device, replay, sample_and_evaluate, sample_backward_trajectories,
                      sample_trajectories)


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
        seed: seeds every random draw of training (rank r of a distributed run uses ``seed + r``).
            The model is built before the trainer: seed torch before building it for a
            reproducible initialisation (``lgfn train`` and the task scripts do).
        grad_clip: gradient-norm clip (``0``: none).
        log_reward_floor: rewards below it count as it (so ``log R`` stays finite).
        on_invalid: a molecule that is invalid, or whose reward raises or is NaN, infinite or
            negative: ``"raise"`` stops training with an error naming it; ``"floor"`` gives it
            ``log_reward_floor`` and counts it in the ``invalid`` metric.
        checkpoint_every: steps between checkpoints (``0``: only at the end). A checkpoint
            holds everything a resume needs (:meth:`Trainer.load`).
        replay_capacity: size of a replay buffer of sampled terminal states (``0``: none).
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

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"TrainConfig.objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.on_invalid not in ("raise", "floor"):
            raise ValueError(f"TrainConfig.on_invalid must be 'raise' or 'floor', got {self.on_invalid!r}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(f"TrainConfig.replay_fraction must be in [0, 1], got {self.replay_fraction}")
        try:
            dev = torch.device(self.device)
        except RuntimeError:
            raise ValueError(f"TrainConfig.device must name a torch device ('cpu', 'cuda', 'cuda:1'), "
                             f"got {self.device!r}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"TrainConfig.device is {self.device!r}, but this torch sees no CUDA device "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})")
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be a CPU or CUDA device, got {self.device!r}")


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
        self._stop_requested = False

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

    def update(self, batch: Collected) -> dict:
        """Evaluate the model on all the batch's states in one pass at the training beta, and take
        one optimizer step on the objective. Returns the step's metrics."""
        c = self.config
        t0 = time.perf_counter()
        traj, beta, logr = batch.trajectories, batch.beta, batch.log_reward
        loss = self._loss_fn(traj, logr, beta, batch.replay).mean()
        self.optimizer.zero_grad()
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.gfn.parameters(), c.grad_clip)
        self.optimizer.step()
        self.step += 1
        value = D.mean(loss.detach())
        if not torch.isfinite(value):
            raise FloatingPointError(f"step {self.step}: the loss is {value.item()}")
        sampled = logr[:batch.num_sampled]
        return {"step": self.step, "loss": value.item(),
                "mean_reward": sampled.exp().mean().item() if batch.num_sampled else float("nan"),
                "mean_length": traj.length.float().mean().item(), "mean_beta": beta.mean().item(),
                "log_z": self.gfn.log_z(beta.mean().reshape(1).to(self.device)).item(), "invalid": batch.invalid,
                "time_sample": batch.time_sample, "time_reward": batch.time_reward,
                "time_train": time.perf_counter() - t0}

    def loss(self, traj: Trajectories, log_r: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """The configured objective of each trajectory at ``beta``, ``[B]``."""
        return self.objective(traj, log_r, beta)

    # -- the loop ---------------------------------------------------------------------------
    def train(self, progress: bool = True) -> list[dict]:
        """Run from the current step to ``config.steps``; returns the metrics of each step.

        Ctrl-C (SIGINT) finishes the step in flight, saves a checkpoint and raises
        ``KeyboardInterrupt``; a second Ctrl-C stops at once.
        """
        if self.step == 0:
            torch.manual_seed(self.config.seed)
        history = []
        with _Outputs(self) as out, _sigint_stops(self):
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
                if self._stop_requested:
                    self.save()
                    raise KeyboardInterrupt(f"stopped at step {self.step}; checkpoint saved")
        self.save()
        return history

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
        return path

    def load(self, path: str | Path) -> "Trainer":
        """Restore the training state of a checkpoint written by :meth:`save` (same task, same
        model configuration, same number of ranks), so that :meth:`train` continues exactly.
        Outputs past the checkpoint's step (metrics, samples) are discarded, as they will be redone."""
        state = load_checkpoint(path)
        check_same_task(path, state, self.gfn, self.env)
        training = state.get("training") or {}
        if training.get("world_size", 1) != self.world_size:
            raise ValueError(f"{path}: saved by {training.get('world_size')} processes, resumed with {self.world_size}")
        self.gfn.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(training["generators"][self.rank])
        torch.set_rng_state(state["torch_rng"])
        if self.buffer is not None and training.get("buffer") is not None:
            self.buffer.load_state_dict(training["buffer"], type(self.env.initial(0)))
        self.step = state["step"]
        if self.out_dir is not None:
            _truncate_metrics(self.out_dir / "metrics.jsonl", self.step)
            if (self.out_dir / "samples.db").exists():
                with SampleDB(self.out_dir / "samples.db") as db:
                    db.truncate_after(self.step)
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

    def __enter__(self) -> "_Outputs":
        t, out = self.t, self.t.out_dir
        if out is None:
            return self
        out.mkdir(parents=True, exist_ok=True)
        self.log = open(out / "metrics.jsonl", "a")
        if t.config.sample_db:
            self.db = SampleDB(out / "samples.db")
        if t.config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out / "tb"), purge_step=t.step + 1)
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
        for f in (self.log, self.db, self.tb):
            if f is not None:
                f.close()


class _sigint_stops:
    """While active (main thread only), Ctrl-C asks the trainer to stop after the current
    step instead of interrupting it half-way; a second Ctrl-C interrupts at once."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        self.old = None

    def _handle(self, signum, frame):
        if self.t._stop_requested:
            raise KeyboardInterrupt
        self.t._stop_requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        self.t._stop_requested = False


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``step`` (and drop a line cut off by a kill)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    with atomic_write(path) as f:
        f.write("".join(k + "\n" for k in keep))
