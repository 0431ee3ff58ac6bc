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


@dataclass
class Replay:
    """The model's terms along stored trajectories, with gradients.

    Attributes:
        log_pf: ``[B, T]``, forward log-probabilities at the replay beta.
        log_pb: ``[B, T]``, backward log-probabilities (learned or uniform; 0 for the stop).
        log_flow: ``[B, T + 1]``, state flows :math:`\\log F(s_t, \\beta)` (0 where no state was
            evaluated: column 0 and the terminal column belong to the loss), or ``None``.
    """

    log_pf: Tensor
    log_pb: Tensor
    log_flow: Tensor | None


def replay(gfn: TemperatureGFlowNet, env, traj: Trajectories, beta: Tensor | None = None) -> Replay:
    """Evaluate the model on every visited state of ``traj`` in one batched pass.

    Trajectories may have been sampled at other betas (exploration) or come from data; the
    result is at ``beta`` (``[B]``, default ``traj.beta``). With a learned backward policy,
    ``log P_B(s_t | s_{t+1})`` is read at ``s_{t+1}``, a state of the same pass.
    """
    beta = traj.beta if beta is None else check_beta(beta)
    B, T = traj.log_pf.shape
    idx = [(traj.length > t).nonzero().flatten() for t in range(T)]
    tt = torch.cat([torch.full_like(i, t) for t, i in enumerate(idx)])
    ii = torch.cat(idx)
    states = type(traj.states[0]).cat([traj.states[t][i] for t, i in enumerate(idx)])
    actions = torch.cat([traj.actions[t, i] for t, i in enumerate(idx)])
    learned = gfn.backward_policy is not None
    if learned and not hasattr(env, "backward_actions"):
        raise ValueError(f"a learned backward policy needs {type(env).__name__}.backward_actions(states, actions)")
    out = gfn.evaluate(env.to_graph(states), beta[ii], env.forward_masks(states),
                       env.backward_masks(states) if learned else None)
    log_pf = torch.zeros(B, T, dtype=out.forward.dtype).index_put((ii, tt), out.forward.log_prob(actions))
    if learned:
        row = torch.full((T, B), -1, dtype=torch.long)
        row[tt, ii] = torch.arange(ii.shape[0])
        child = (tt >= 1).nonzero().flatten()  # rows reached by a non-stop action
        parent = row[tt[child] - 1, ii[child]]
        bwd = env.backward_actions(states[parent], actions[parent])
        log_pb = torch.zeros_like(log_pf).index_put((ii[child], tt[child] - 1), out.backward.log_prob(bwd, child))
    else:
        log_pb = traj.log_pb
    log_flow = None
    if out.log_flow is not None:
        log_flow = torch.zeros(B, T + 1, dtype=out.log_flow.dtype).index_put((ii, tt), out.log_flow)
    return Replay(log_pf, log_pb, log_flow)
