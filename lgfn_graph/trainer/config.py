"""Training settings: :class:`TrainConfig`, checked field by field when it is made."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..betas import BetaSampler, check_sampler
from ..buffer import PRIORITIES
from ..checks import SEED_MAX, check_bool, check_choice, check_device, check_int, check_real
from .objectives import REGISTRY


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
        objective: the name of a registered objective (:data:`~lgfn_graph.trainer.objectives.REGISTRY`):
            ``"tb"`` (trajectory balance), ``"db"`` (detailed balance) or ``"subtb"``
            (sub-trajectory balance with weight ``subtb_lambda`` > 0); the last two need a model
            with a state-flow head (``ModelConfig(state_flow=True)``).
        symmetry_correction: add the environment's ``log_reward_correction(x)`` to the target
            (``log |Aut(x)|`` for fragment trees, zeros by default), so that the learned
            distribution is :math:`\propto R(x)^\beta` over objects rather than over labelled
            states.
        seed: seeds every random draw of training, in ``[0, 2**63 - 1]``: the trainer's
            generator (betas, sampling, replay; rank r of a distributed run uses ``seed + r``)
            and the stream the model's own layers draw from while :meth:`Trainer.train` runs
            (dropout; see :class:`~lgfn_graph.trainer.randomness.LayerRandomness`). The global
            torch RNG is left as it was. The model is built before the trainer: seed torch
            before building it for a reproducible initialisation (``lgfn train`` and the task
            scripts do).
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
            evaluating its states again (:func:`~lgfn_graph.sampler.evaluate_trajectories`), one
            forward pass fewer per step. ``False``: always sample without gradients, then evaluate.
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
        check_choice(self, "objective", tuple(REGISTRY))
        check_choice(self, "on_invalid", ("raise", "floor"))
        check_choice(self, "replay_priority", PRIORITIES)
        check_int(self, "seed", 0, SEED_MAX)
        for name in ("checkpoint_every", "replay_capacity"):
            check_int(self, name, 0)
        check_int(self, "max_skipped_steps", 1)
        for name in ("symmetry_correction", "sample_db", "tensorboard", "backprop_through_sampling"):
            check_bool(self, name)
        check_device(self, "device")


__all__ = ["TrainConfig"]
