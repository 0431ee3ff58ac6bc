r"""GFlowNet objectives at inverse temperature :math:`\beta`.

Every loss takes the same per-trajectory tensors, padded to ``T`` actions (a trajectory of
``L`` actions, the final ``stop`` included, visits states :math:`s_0 .. s_{L-1}` and ends in
the terminal :math:`x = s_L`):

* ``log_pf``, ``log_pb``: ``[B, T]``; entry ``t`` belongs to the transition
  :math:`s_t \to s_{t+1}` and is 0 from ``L`` on (``log_pb`` of the stop is 0 too);
* ``log_reward``, ``beta``: ``[B]``; the target is :math:`\beta \log R(x)`, plus
  ``log_correction`` when given: the environment's ``log_reward_correction`` (e.g.
  :math:`\log|\mathrm{Aut}(x)|` for fragment trees), which makes action-level balance learn
  :math:`R(x)^\beta` over objects rather than over labelled states;
* ``log_z``: ``[B]``, :math:`\log Z(\beta)`, the flow of :math:`s_0`;
* ``log_flow``: ``[B, T + 1]``, :math:`\log F(s_t, \beta)`; columns 0 and ``L`` are
  replaced by :math:`\log Z(\beta)` and the target;
* ``length``: long ``[B]``, ``L``.

Each returns ``[B]``, the loss of each trajectory.
"""
from __future__ import annotations

import torch
from torch import Tensor

OBJECTIVES = ("tb", "db", "subtb")


def log_target(log_reward: Tensor, beta: Tensor, log_correction: Tensor | None = None) -> Tensor:
    r""":math:`\beta \log R(x)` plus the optional per-object correction, ``[B]``."""
    t = beta * log_reward
    return t if log_correction is None else t + log_correction


def trajectory_balance(log_z: Tensor, log_pf: Tensor, log_pb: Tensor, log_reward: Tensor, beta: Tensor,
                       log_correction: Tensor | None = None) -> Tensor:
    r"""Trajectory balance (Malkin et al. 2022):

    .. math::
        \big(\log Z(\beta) + \textstyle\sum_t \log P_F(s_{t+1} \mid s_t, \beta)
        - \beta \log R(x) - \sum_t \log P_B(s_t \mid s_{t+1})\big)^2

    ``log_pf`` and ``log_pb`` may be ``[B]`` (already summed) or ``[B, T]``.
    """
    if log_pf.dim() == 2:
        log_pf = log_pf.sum(1)
    if log_pb.dim() == 2:
        log_pb = log_pb.sum(1)
    return (log_z + log_pf - log_target(log_reward, beta, log_correction) - log_pb).pow(2)


def flow_sequence(log_z: Tensor, log_flow: Tensor, target: Tensor, length: Tensor) -> Tensor:
    """``log_flow [B, T + 1]`` with column 0 set to ``log_z`` and column ``length`` to ``target``."""
    B = log_flow.shape[0]
    rows = torch.arange(B, device=log_flow.device)
    F = log_flow.clone()
    F[:, 0] = log_z
    F[rows, length] = target
    return F


def detailed_balance(log_z: Tensor, log_flow: Tensor, log_pf: Tensor, log_pb: Tensor, log_reward: Tensor,
                     beta: Tensor, length: Tensor, log_correction: Tensor | None = None) -> Tensor:
    r"""Detailed balance (Bengio et al. 2023), averaged over each trajectory's transitions:

    .. math::
        \frac1L \sum_{t<L} \big(\log F(s_t) + \log P_F(s_{t+1} \mid s_t)
        - \log F(s_{t+1}) - \log P_B(s_t \mid s_{t+1})\big)^2
    """
    F = flow_sequence(log_z, log_flow, log_target(log_reward, beta, log_correction), length)
    T = log_pf.shape[1]
    delta = F[:, :T] + log_pf - F[:, 1:] - log_pb
    valid = torch.arange(T, device=F.device) < length[:, None]
    return (delta.pow(2) * valid).sum(1) / length.clamp_min(1)


def subtrajectory_balance(log_z: Tensor, log_flow: Tensor, log_pf: Tensor, log_pb: Tensor, log_reward: Tensor,
                          beta: Tensor, length: Tensor, lam: float = 0.9,
                          log_correction: Tensor | None = None) -> Tensor:
    r"""Sub-trajectory balance SubTB(:math:`\lambda`) (Madan et al. 2023): over every pair
    :math:`0 \le i < j \le L`,

    .. math::
        \frac{\sum_{i<j} \lambda^{j-i} \big(\log F(s_i) + \sum_{i \le t < j} (\log P_F - \log P_B)_t
        - \log F(s_j)\big)^2}{\sum_{i<j} \lambda^{j-i}}

    The pair :math:`(0, L)` is trajectory balance; the pairs :math:`(t, t + 1)` are detailed
    balance.
    """
    F = flow_sequence(log_z, log_flow, log_target(log_reward, beta, log_correction), length)
    T = log_pf.shape[1]
    zero = torch.zeros_like(log_pf[:, :1])
    C = torch.cat([zero, (log_pf - log_pb).cumsum(1)], 1)  # [B, T + 1]
    a = F - C  # delta(i, j) = a_i - a_j
    delta = a[:, :, None] - a[:, None, :]  # [B, T + 1, T + 1]
    pos = torch.arange(T + 1, device=F.device)
    gap = pos[None, :] - pos[:, None]  # j - i
    valid = (gap > 0)[None] & (pos[None, None, :] <= length[:, None, None])
    w = torch.where(valid, torch.as_tensor(lam, dtype=F.dtype).pow(gap.clamp_min(0).to(F.dtype)), torch.zeros((), dtype=F.dtype))
    return (w * delta.pow(2)).sum((1, 2)) / w.sum((1, 2))


__all__ = ["OBJECTIVES", "log_target", "trajectory_balance", "detailed_balance", "subtrajectory_balance",
           "flow_sequence"]
