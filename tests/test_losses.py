"""Trajectory balance against hand-computed values."""
import math

import torch

from lgfn_graph.losses import trajectory_balance


def test_tb_hand_computed_two_step_trajectory():
    # log Z = 0.5; P_F = 0.5 then 0.25; P_B = 1 then 0.5; R = e^-1 at beta = 2
    log_pf = torch.tensor([[math.log(0.5), math.log(0.25)]])
    log_pb = torch.tensor([[0.0, math.log(0.5)]])
    loss = trajectory_balance(torch.tensor([0.5]), log_pf, log_pb, torch.tensor([-1.0]), torch.tensor([2.0]))
    expected = (0.5 + math.log(0.5 * 0.25) - 2.0 * -1.0 - math.log(0.5)) ** 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_tb_is_zero_when_balanced_at_every_beta():
    # one-step world: x has P_F = p(x); balanced iff Z(beta) p(x) = R(x)^beta
    r = torch.tensor([0.2, 0.3, 0.5])
    for beta in (0.5, 1.0, 7.0):
        z = (r ** beta).sum()
        p = r ** beta / z
        loss = trajectory_balance(z.log().expand(3), p.log(), torch.zeros(3), r.log(), torch.full((3,), beta))
        assert float(loss.max()) < 1e-10


def test_tb_gradient_on_log_z():
    log_z = torch.tensor([1.0], requires_grad=True)
    trajectory_balance(log_z, torch.tensor([-2.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([3.0])).sum().backward()
    assert math.isclose(log_z.grad.item(), 2 * (1.0 - 2.0), rel_tol=1e-6)
