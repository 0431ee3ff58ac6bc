"""Objectives against hand-computed values on tiny trajectories."""
import math

import pytest
import torch

from lgfn_graph.losses import detailed_balance, subtrajectory_balance, trajectory_balance


def test_tb_hand_computed_two_step_trajectory():
    # log Z = 0.5; P_F = 0.5 then 0.25; P_B = 1 then 0.5; R = e^-1 at beta = 2
    log_pf = torch.tensor([[math.log(0.5), math.log(0.25)]])
    log_pb = torch.tensor([[0.0, math.log(0.5)]])
    loss = trajectory_balance(torch.tensor([0.5]), log_pf, log_pb, torch.tensor([-1.0]), torch.tensor([2.0]))
    expected = (0.5 + math.log(0.5 * 0.25) - 2.0 * -1.0 - math.log(0.5)) ** 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_tb_symmetry_term_enters_the_target():
    args = (torch.tensor([0.3]), torch.tensor([-1.0]), torch.tensor([0.0]), torch.tensor([-0.5]), torch.tensor([4.0]))
    plain = trajectory_balance(*args)
    sym = trajectory_balance(*args, log_correction=torch.tensor([math.log(2)]))
    assert math.isclose(plain.item(), (0.3 - 1.0 + 2.0) ** 2, rel_tol=1e-6)
    assert math.isclose(sym.item(), (0.3 - 1.0 + 2.0 - math.log(2)) ** 2, rel_tol=1e-6)


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


# A trajectory s0 -a-> s1 -stop-> x (L = 2), padded to T = 3 with garbage beyond L that must be ignored.
LOG_Z, A, C, F1, B_, BETA, LOG_R = 0.7, -1.2, -0.4, 2.5, -0.3, 3.0, -0.6
TARGET = BETA * LOG_R


def _tiny():
    log_pf = torch.tensor([[A, B_, 0.0]])
    log_pb = torch.tensor([[C, 0.0, 0.0]])
    log_flow = torch.tensor([[123.0, F1, -55.0, 77.0]])  # columns 0 and 2 are replaced, 3 is padding
    return torch.tensor([LOG_Z]), log_flow, log_pf, log_pb, torch.tensor([LOG_R]), torch.tensor([BETA]), torch.tensor([2])


def test_db_hand_computed():
    d1 = LOG_Z + A - F1 - C
    d2 = F1 + B_ - TARGET
    assert math.isclose(detailed_balance(*_tiny()).item(), (d1 ** 2 + d2 ** 2) / 2, rel_tol=1e-5)


@pytest.mark.parametrize("lam", [0.5, 0.9, 2.0])
def test_subtb_hand_computed(lam):
    d01 = LOG_Z + A - C - F1
    d12 = F1 + B_ - TARGET
    d02 = LOG_Z + A + B_ - C - TARGET
    want = (lam * d01 ** 2 + lam * d12 ** 2 + lam ** 2 * d02 ** 2) / (2 * lam + lam ** 2)
    assert math.isclose(subtrajectory_balance(*_tiny(), lam=lam).item(), want, rel_tol=1e-5)


def test_subtb_reduces_to_tb_and_db_in_the_limits():
    args = _tiny()
    tb = trajectory_balance(args[0], args[2], args[3], args[4], args[5])
    # lambda -> infinity weights the longest sub-trajectory (the whole one) only
    assert math.isclose(subtrajectory_balance(*args, lam=1e6).item(), tb.item(), rel_tol=1e-4)
    # lambda -> 0 weights the one-step sub-trajectories only
    assert math.isclose(subtrajectory_balance(*args, lam=1e-6).item(), detailed_balance(*args).item(), rel_tol=1e-4)


def test_losses_vanish_on_a_balanced_chain_of_any_length():
    # trajectories of lengths 1..3 in a batch; flows chosen to make every transition balanced
    torch.manual_seed(0)
    B, T = 3, 3
    length = torch.tensor([1, 2, 3])
    log_pf, log_pb = torch.randn(B, T), torch.randn(B, T)
    valid = torch.arange(T) < length[:, None]
    log_pf, log_pb = log_pf * valid, log_pb * valid
    log_pb[torch.arange(B), length - 1] = 0.0  # the stop has P_B = 1
    log_z = torch.randn(B)
    flow = torch.cat([log_z[:, None], log_z[:, None] + (log_pf - log_pb).cumsum(1)], 1)  # F_t
    target = flow[torch.arange(B), length]
    beta = torch.tensor([1.0, 2.0, 5.0])
    log_r = target / beta
    assert float(trajectory_balance(log_z, log_pf, log_pb, log_r, beta).max()) < 1e-10
    assert float(detailed_balance(log_z, flow, log_pf, log_pb, log_r, beta, length).max()) < 1e-10
    assert float(subtrajectory_balance(log_z, flow, log_pf, log_pb, log_r, beta, length).max()) < 1e-10
    # and a perturbed intermediate flow breaks DB and SubTB but not TB
    flow2 = flow.clone()
    flow2[2, 1] += 1.0
    assert float(detailed_balance(log_z, flow2, log_pf, log_pb, log_r, beta, length)[2]) > 0.1
    assert float(subtrajectory_balance(log_z, flow2, log_pf, log_pb, log_r, beta, length)[2]) > 0.1
