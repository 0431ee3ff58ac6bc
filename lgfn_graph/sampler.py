"""Batched trajectory sampling: every step acts on all unfinished trajectories at once."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .betas import check_beta
from .policy import TemperatureGFlowNet, uniform_backward_log_prob


@dataclass
class Trajectories:
    """``B`` trajectories of at most ``T`` actions, padded after each one stops.

    Attributes:
        states: ``T + 1`` batches of ``B`` states; ``states[t]`` is each trajectory's state
            before its action ``t`` (a finished trajectory repeats its terminal state).
        actions: long ``[T, B, 3]``, ``-1`` after the stop action.
        log_pf: ``[B, T]``, forward log-probabilities (0 after the stop).
        log_pb: ``[B, T]``, uniform backward log-probabilities (0 for the stop and after).
        length: long ``[B]``, actions per trajectory, the stop included.
        beta: ``[B]``, the inverse temperature each trajectory was sampled at.
    """

    states: list
    actions: Tensor
    log_pf: Tensor
    log_pb: Tensor
    length: Tensor
    beta: Tensor

    @property
    def terminal(self):
        """The final states, ``B`` of them."""
        return self.states[-1]

    def __len__(self) -> int:
        return self.beta.shape[0]


def sample_trajectories(gfn: TemperatureGFlowNet, env, beta: Tensor, epsilon: float = 0.0,
                        generator: torch.Generator | None = None) -> Trajectories:
    """Roll out ``B = len(beta)`` trajectories from the empty state until each stops.

    Gradients flow into ``log_pf`` unless called under ``torch.no_grad()``, so a training step
    can back-propagate through the forward passes made while sampling, with no second pass.

    Args:
        gfn: the model.
        env: the environment.
        beta: ``[B]`` inverse temperatures (finite, > 0).
        epsilon: probability of a uniformly random legal action at each step (exploration).
        generator: random source, for reproducible samples.
    """
    beta = check_beta(beta)
    B = beta.shape[0]
    s = env.initial(B)
    done = torch.zeros(B, dtype=torch.bool)
    states, actions, log_pf, log_pb = [s], [], [], []
    length = torch.zeros(B, dtype=torch.long)
    for _ in range(env.max_steps):
        idx = (~done).nonzero().flatten()
        if idx.numel() == 0:
            break
        sub = s[idx]
        cat = gfn.policy(env.to_graph(sub), beta[idx], env.forward_masks(sub))
        a = cat.sample(epsilon, generator)
        nxt = env.step(sub, a)
        stop = env.is_stop(a)
        pb = torch.where(stop, torch.zeros(()), uniform_backward_log_prob(env, nxt))
        step_a = torch.full((B, 3), -1, dtype=torch.long)
        step_a[idx] = a
        actions.append(step_a)
        log_pf.append(torch.zeros(B).index_put((idx,), cat.log_prob(a)))
        log_pb.append(torch.zeros(B).index_put((idx,), pb))
        length[idx] += 1
        s = s.clone()
        s.put(idx, nxt)
        states.append(s)
        done[idx[stop]] = True
    return Trajectories(states, torch.stack(actions), torch.stack(log_pf, 1), torch.stack(log_pb, 1), length, beta)
