r"""Training objectives, chosen by name from a registry.

An objective turns the model's terms along a batch of trajectories into one loss per
trajectory. Each is a small class registered under the name ``TrainConfig.objective`` takes
(:data:`REGISTRY`); :class:`Objective` wraps the configured one as a module (for
``DistributedDataParallel``), evaluating the model's terms when the batch does not carry them
and adding the environment's ``log_reward_correction`` to the target.

Shapes (``B`` trajectories of at most ``T`` actions, as in :mod:`lgfn_graph.losses`):
``log_z``, ``log_reward``, ``beta``, ``log_correction``: ``[B]``; the terms' ``log_pf`` and
``log_pb``: ``[B, T]``, ``log_flow``: ``[B, T + 1]``; ``length``: long ``[B]``; each loss:
``[B]``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

from ..losses import detailed_balance, subtrajectory_balance, trajectory_balance
from ..policy import TemperatureGFlowNet
from ..sampler import Trajectories, TrajectoryTerms, evaluate_trajectories, model_device

if TYPE_CHECKING:
    from .config import TrainConfig


class Balance(ABC):
    """One balance objective: the loss of each trajectory from the model's terms.

    Attributes:
        name: the key under which :func:`register` files it (``TrainConfig.objective``).
        needs_state_flow: whether it reads ``terms.log_flow`` (a model with a state-flow head).
    """

    name: ClassVar[str]
    needs_state_flow: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: "TrainConfig") -> "Balance":
        """The objective with its settings from ``config`` (none by default)."""
        return cls()

    @abstractmethod
    def __call__(self, log_z: Tensor, terms: TrajectoryTerms, log_reward: Tensor, beta: Tensor, length: Tensor,
                 log_correction: Tensor | None) -> Tensor:
        """The loss of each trajectory, ``[B]`` (shapes in the module docstring)."""


REGISTRY: dict[str, type[Balance]] = {}


def register(cls: type[Balance]) -> type[Balance]:
    """Class decorator: file a :class:`Balance` subclass under its ``name`` (a
    ``TrainConfig`` made afterwards accepts the name)."""
    REGISTRY[cls.name] = cls
    return cls


def resolve(objective: str | Balance, config: "TrainConfig") -> Balance:
    """An objective instance: ``objective`` itself, or the registered class of that name built
    from ``config``. ``ValueError`` listing the registered names for an unknown one."""
    if isinstance(objective, Balance):
        return objective
    if objective not in REGISTRY:
        raise ValueError(f"unknown objective {objective!r}: expected one of {tuple(REGISTRY)}")
    return REGISTRY[objective].from_config(config)


@register
class TrajectoryBalance(Balance):
    """Trajectory balance (:func:`~lgfn_graph.losses.trajectory_balance`)."""

    name = "tb"

    def __call__(self, log_z, terms, log_reward, beta, length, log_correction):
        return trajectory_balance(log_z, terms.log_pf, terms.log_pb, log_reward, beta, log_correction)


@register
class DetailedBalance(Balance):
    """Detailed balance (:func:`~lgfn_graph.losses.detailed_balance`), on learned state flows."""

    name = "db"
    needs_state_flow = True

    def __call__(self, log_z, terms, log_reward, beta, length, log_correction):
        return detailed_balance(log_z, terms.log_flow, terms.log_pf, terms.log_pb, log_reward, beta, length,
                                log_correction)


@register
class SubTrajectoryBalance(Balance):
    """Sub-trajectory balance with weight ``lam`` (:func:`~lgfn_graph.losses.subtrajectory_balance`),
    on learned state flows; ``TrainConfig.subtb_lambda`` sets ``lam``."""

    name = "subtb"
    needs_state_flow = True

    def __init__(self, lam: float = 0.9):
        self.lam = lam

    @classmethod
    def from_config(cls, config: "TrainConfig") -> "SubTrajectoryBalance":
        return cls(config.subtb_lambda)

    def __call__(self, log_z, terms, log_reward, beta, length, log_correction):
        return subtrajectory_balance(log_z, terms.log_flow, terms.log_pf, terms.log_pb, log_reward, beta, length,
                                     self.lam, log_correction)


class Objective(nn.Module):
    """The configured objective of a batch as a module, so that distributed training can wrap it
    in ``DistributedDataParallel``.

    Args:
        gfn, env: the model and its environment.
        config: ``objective`` names the :class:`Balance` (:data:`REGISTRY`), ``subtb_lambda``
            its weight, ``symmetry_correction`` whether the target gets
            ``env.log_reward_correction(x)``.

    Raises:
        ValueError: the objective needs state flows and the model has no state-flow head.
    """

    def __init__(self, gfn: TemperatureGFlowNet, env, config: "TrainConfig"):
        super().__init__()
        self.gfn, self.env = gfn, env
        self.balance = resolve(config.objective, config)
        self.symmetry_correction = config.symmetry_correction
        if self.balance.needs_state_flow and gfn.state_flow is None:
            raise ValueError(f"objective {config.objective!r} needs state flows: build the model with "
                             "ModelConfig(state_flow=True)")

    def forward(self, traj: Trajectories, log_r: Tensor, beta: Tensor,
                terms: TrajectoryTerms | None = None) -> Tensor:
        """Per-trajectory loss ``[B]`` at ``beta`` (``[B]``) of ``traj`` (``B`` trajectories) with
        ``log_r`` (``[B]``), on the model's device. ``terms``: the model's terms along ``traj`` at
        ``beta`` when already computed, else they are evaluated."""
        dev = model_device(self.gfn)
        beta, log_r = beta.to(dev), log_r.to(dev)
        if terms is None:
            terms = evaluate_trajectories(self.gfn, self.env, traj, beta)
        correction = self.env.log_reward_correction(traj.terminal).to(dev) if self.symmetry_correction else None
        log_z = self.gfn.log_z(beta)
        return self.balance(log_z, terms, log_r, beta, traj.length, correction)


__all__ = ["Balance", "DetailedBalance", "Objective", "REGISTRY", "SubTrajectoryBalance", "TrajectoryBalance",
           "register", "resolve"]
