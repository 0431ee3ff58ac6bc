"""Where a training batch comes from: small sources that the training loop composes.

A batch of ``B`` trajectories is drawn at ``B`` training betas (``[B]``). Up to two sources fill
it, in this order:

* a *sampled* source, the first ``n`` trajectories: the policy samples them and the reward
  scores them, either at the training betas (:class:`OnPolicy`) or at betas of their own
  (:class:`ExploreBeta`);
* a *stored* source, the other ``B - n``: terminal states drawn from a store and walked
  backwards to the empty state with the uniform backward policy, at the remaining training
  betas: a replay buffer of earlier samples (:class:`Replay`), or a fixed dataset
  (:class:`Offline`, which fills every batch alone).

Each source returns a :class:`BatchPart`; :meth:`Collected.join` lays the parts end to end.
Every random draw comes from the generator passed in, in a fixed order, so that a batch
follows from the generator's state.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..betas import BetaSampler
from ..buffer import ReplayBuffer
from ..policy import TemperatureGFlowNet
from ..rewards import RewardFn, score_molecules
from ..sampler import (Trajectories, TrajectoryTerms, sample_and_evaluate, sample_backward_trajectories,
                       sample_trajectories)
from ..smiles import smiles_or_none


@dataclass
class BatchPart:
    """The ``n`` trajectories one source contributes to a batch.

    Attributes:
        trajectories: ``n`` trajectories.
        log_reward: ``[n]``, ``log R(x)`` of their terminal states.
        sampled: whether the policy sampled them (else they were drawn from stored states).
        invalid: bool ``[n]``, sampled molecules that were invalid or had a bad reward (they
            carry ``log_reward_floor``); ``None`` for stored states.
        smiles: the sampled molecules' SMILES (``None`` for an invalid one), or ``[]`` when not
            recorded.
        time_sample, time_reward: seconds spent drawing the trajectories and scoring them.
        terms: the model's terms along the trajectories with gradients, from the passes that
            sampled them, or ``None``.
    """

    trajectories: Trajectories
    log_reward: Tensor
    sampled: bool
    invalid: Tensor | None = None
    smiles: list = field(default_factory=list)
    time_sample: float = 0.0
    time_reward: float = 0.0
    terms: TrajectoryTerms | None = None


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
        terms: the model's terms along the trajectories, with gradients, from the passes that
            sampled them (on-policy batches, ``TrainConfig.backprop_through_sampling``), or
            ``None``: :meth:`Trainer.update` evaluates them.
    """

    trajectories: Trajectories
    beta: Tensor
    log_reward: Tensor
    num_sampled: int
    smiles: list
    invalid: int
    time_sample: float
    time_reward: float
    terms: TrajectoryTerms | None = None

    @staticmethod
    def join(parts: list[BatchPart], beta: Tensor, env) -> "Collected":
        """The batch of ``parts`` laid end to end (sampled parts first), at ``beta`` (``[B]``).
        ``env`` fills in backward actions a part lacks (:meth:`Trajectories.cat`)."""
        traj = parts[0].trajectories if len(parts) == 1 else Trajectories.cat([p.trajectories for p in parts], env)
        sampled = [p for p in parts if p.sampled]
        return Collected(traj, beta, torch.cat([p.log_reward for p in parts]),
                         sum(len(p.trajectories) for p in sampled), [s for p in sampled for s in p.smiles],
                         sum(int(p.invalid.sum()) for p in sampled), sum(p.time_sample for p in parts),
                         sum(p.time_reward for p in parts), parts[0].terms if len(parts) == 1 else None)


class Sampled(ABC):
    """Trajectories the policy samples (with exploration ``epsilon``), scored by ``reward``.

    Args:
        gfn, env: the model and its environment.
        reward: scores a list of molecules (:func:`~lgfn_graph.rewards.score_molecules` checks it).
        epsilon: probability of a uniformly random legal action at each step.
        log_reward_floor, on_invalid: as in :class:`~lgfn_graph.trainer.TrainConfig`.
        record_smiles: write each sampled molecule's SMILES into the part.
    """

    def __init__(self, gfn: TemperatureGFlowNet, env, reward: RewardFn, epsilon: float, log_reward_floor: float,
                 on_invalid: str, record_smiles: bool):
        self.gfn, self.env, self.reward, self.epsilon = gfn, env, reward, epsilon
        self.log_reward_floor, self.on_invalid, self.record_smiles = log_reward_floor, on_invalid, record_smiles

    @abstractmethod
    def betas(self, beta: Tensor, generator: torch.Generator, progress: float) -> Tensor:
        """The betas ``[n]`` to sample at, for trajectories trained at ``beta`` (``[n]``)."""

    def keeps_gradients(self, whole: bool) -> bool:
        """Whether to keep the sampling passes' gradients (the batch is ``whole``ly this part)."""
        return False

    def draw(self, beta: Tensor, generator: torch.Generator, progress: float, whole: bool) -> BatchPart:
        """Sample and score ``n = len(beta)`` trajectories for training at ``beta`` (``[n]``).
        ``progress``: the fraction of training done (annealed beta samplers); ``whole``: this
        part is the whole batch."""
        t0 = time.perf_counter()
        at = self.betas(beta, generator, progress)
        terms = None
        if self.keeps_gradients(whole):
            with torch.enable_grad():
                traj, terms = sample_and_evaluate(self.gfn, self.env, at, self.epsilon, generator)
        else:
            traj = sample_trajectories(self.gfn, self.env, at, self.epsilon, generator)
        t1 = time.perf_counter()
        mols = [self.env.to_mol(traj.terminal, i) for i in range(len(at))]
        scored = score_molecules(self.reward, mols, self.log_reward_floor, self.on_invalid)
        # an unwritable molecule is recorded as invalid
        smiles = [smiles_or_none(m) for m in mols] if self.record_smiles else []
        return BatchPart(traj, scored.log_reward, True, scored.invalid, smiles, t1 - t0, time.perf_counter() - t1,
                         terms)


class OnPolicy(Sampled):
    """Sampled at the training betas. With ``backprop`` (``TrainConfig.backprop_through_sampling``)
    a part that is the whole batch keeps the gradients of the passes that sampled it, so the loss
    needs no second pass over its states."""

    def __init__(self, *args, backprop: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.backprop = backprop

    def betas(self, beta, generator, progress):
        return beta

    def keeps_gradients(self, whole: bool) -> bool:
        return self.backprop and whole


class ExploreBeta(Sampled):
    """Sampled at betas of their own, drawn from ``explore`` (``TrainConfig.explore_beta``), then
    trained at the training betas; always without gradients (the loss evaluates the states)."""

    def __init__(self, *args, explore: BetaSampler, **kwargs):
        super().__init__(*args, **kwargs)
        self.explore = explore

    def betas(self, beta, generator, progress):
        return self.explore.sample(len(beta), generator, progress)


class Stored(ABC):
    """Trajectories walked backwards (uniform backward policy) from terminal states of ``store``.

    Args:
        store: terminal states and their ``log R`` (:class:`~lgfn_graph.buffer.ReplayBuffer`).
        env: the environment.
    """

    def __init__(self, store: ReplayBuffer, env):
        self.store, self.env = store, env

    @abstractmethod
    def count(self, batch_size: int) -> int:
        """How many of a batch of ``batch_size`` this source fills now."""

    def keep(self, part: BatchPart) -> None:
        """See the batch's sampled part before this source draws (default: nothing)."""

    def draw(self, beta: Tensor, generator: torch.Generator) -> BatchPart:
        """``n = len(beta)`` trajectories from stored states, for training at ``beta`` (``[n]``)."""
        t0 = time.perf_counter()
        states, log_reward = self.store.sample(len(beta), generator)
        traj = sample_backward_trajectories(self.env, states, beta, generator)
        return BatchPart(traj, log_reward, False, time_sample=time.perf_counter() - t0)


class Replay(Stored):
    """A replay buffer of sampled terminal states: it keeps each sampled part's valid states, and
    once it holds a whole batch fills ``fraction`` of every batch (``TrainConfig.replay_fraction``)."""

    def __init__(self, store: ReplayBuffer, env, fraction: float):
        super().__init__(store, env)
        self.fraction = fraction

    def count(self, batch_size: int) -> int:
        return int(round(self.fraction * batch_size)) if len(self.store) >= batch_size else 0

    def keep(self, part: BatchPart) -> None:
        ok = ~part.invalid
        self.store.add(part.trajectories.terminal[ok.nonzero().flatten()], part.log_reward[ok])


class Offline(Stored):
    """A fixed dataset that fills every batch: the policy never samples."""

    def count(self, batch_size: int) -> int:
        return batch_size


__all__ = ["BatchPart", "Collected", "ExploreBeta", "Offline", "OnPolicy", "Replay", "Sampled", "Stored"]
