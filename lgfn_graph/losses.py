"""GFlowNet objectives."""
from __future__ import annotations

from torch import Tensor


def trajectory_balance(log_z: Tensor, log_pf: Tensor, log_pb: Tensor, log_reward: Tensor, beta: Tensor) -> Tensor:
    r"""Trajectory balance at inverse temperature :math:`\beta` (Malkin et al. 2022):

    .. math::
        \big(\log Z(\beta) + \textstyle\sum_t \log P_F(s_{t+1} \mid s_t, \beta)
        - \beta \log R(x) - \sum_t \log P_B(s_t \mid s_{t+1})\big)^2

    Args:
        log_z: ``[B]``, :math:`\log Z(\beta)` of each trajectory's beta.
        log_pf: ``[B]`` or ``[B, T]`` (summed over the last dim).
        log_pb: ``[B]`` or ``[B, T]``.
        log_reward: ``[B]``, :math:`\log R(x)`.
        beta: ``[B]``.

    Returns:
        ``[B]``, the loss of each trajectory.
    """
    if log_pf.dim() == 2:
        log_pf = log_pf.sum(1)
    if log_pb.dim() == 2:
        log_pb = log_pb.sum(1)
    return (log_z + log_pf - beta * log_reward - log_pb).pow(2)
