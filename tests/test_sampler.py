"""Batched sampling: recorded log-probabilities agree with a fresh pass over the stored states."""
import torch

import lgfn_graph as L
from lgfn_graph.policy import uniform_backward_log_prob


def _setup(mode="logit"):
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=2, conditioning=mode))
    return env, gfn


def test_log_pf_and_log_pb_match_a_pass_one_trajectory_at_a_time():
    env, gfn = _setup()
    beta = torch.tensor([1.0, 2.0, 5.0, 10.0, 30.0, 3.0])
    traj = L.sample_trajectories(gfn, env, beta, epsilon=0.3, generator=torch.Generator().manual_seed(1))
    for i in range(len(traj)):
        for t in range(int(traj.length[i])):
            s = traj.states[t][i]
            cat = gfn.policy(env.to_graph(s), beta[i : i + 1], env.forward_masks(s))
            a = traj.actions[t, i : i + 1]
            torch.testing.assert_close(cat.log_prob(a)[0], traj.log_pf[i, t], atol=1e-5, rtol=1e-5)
            nxt = env.step(s, a)
            want_pb = 0.0 if bool(env.is_stop(a)) else float(uniform_backward_log_prob(env, nxt))
            assert abs(float(traj.log_pb[i, t]) - want_pb) < 1e-6
            assert bool(nxt.equal(traj.states[t + 1][i]).all())
        assert bool((traj.actions[int(traj.length[i]) :, i] == -1).all())
        assert bool(env.is_stop(traj.actions[int(traj.length[i]) - 1, i : i + 1]))


def test_same_seed_same_samples_and_gradients_flow():
    env, gfn = _setup("logit+layer")
    beta = torch.full((8,), 4.0)
    a = L.sample_trajectories(gfn, env, beta, 0.1, torch.Generator().manual_seed(3))
    b, rep = L.sample_and_evaluate(gfn, env, beta, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a.actions, b.actions) and torch.equal(a.log_pf, b.log_pf)
    assert not a.log_pf.requires_grad and not b.log_pf.requires_grad  # the record is detached
    torch.testing.assert_close(rep.log_pf.detach(), b.log_pf)
    rep.log_pf.sum().backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in gfn.policy.parameters())
    # the scaler starts at g = 1 through a zero output layer (its hidden layers get exactly 0 then)
    policy = gfn.policy
    for p in (policy.scaler.mlp[-1].weight, policy.beta_embedding.mlp[-1].weight, policy.backbone.node_in.weight):
        assert float(p.grad.abs().sum()) > 0


def test_every_mode_samples():
    for mode in L.policy.MODES:
        env, gfn = _setup(mode)
        with torch.no_grad():
            traj = L.sample_trajectories(gfn, env, torch.full((4,), 2.0))
        assert bool((traj.terminal.n >= 1).all()) and bool((traj.length == traj.terminal.n + 1).all())


def test_step_terms_reads_every_term_from_one_pass():
    """step_terms against the model's own distributions at the same states: log P_F of given
    or drawn actions, log F, and learned log P_B of the backward actions undo_actions gives,
    read at every state or at a subset (``reached``)."""
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=2, backward_policy="learned",
                                                         state_flow=True))
    beta = torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, env, beta, 0.2, torch.Generator().manual_seed(2))
        undo = L.sampler.undo_actions(env, traj.states[0], traj.actions[0])  # at states[1], back to states[0]
        stop = env.is_stop(traj.actions[0])
        assert bool((undo[stop] == -1).all()) and bool((undo[~stop] >= 0).all())
        keep = (traj.length >= 2).nonzero().flatten()
        assert keep.numel() >= 3
        s, a, b = traj.states[1][keep], traj.actions[1, keep], undo[keep]
        out = gfn.evaluate(env.to_graph(s), beta[keep], env.forward_masks(s), env.backward_masks(s))
        full = L.step_terms(gfn, env, s, beta[keep], a, b)
        assert torch.equal(full.actions, a) and torch.equal(full.log_pf, out.forward.log_prob(a))
        assert torch.equal(full.log_pb, out.backward.log_prob(b)) and torch.equal(full.log_flow, out.log_flow)
        rows = torch.arange(0, keep.numel(), 2)
        part = L.step_terms(gfn, env, s, beta[keep], a, b[rows], rows)
        assert torch.equal(part.log_pb, full.log_pb[rows])
        drawn = L.step_terms(gfn, env, s, beta[keep], generator=torch.Generator().manual_seed(0))
        assert drawn.log_pb is None and torch.equal(drawn.log_pf, out.forward.log_prob(drawn.actions))


def test_uniform_sampler_draws_depend_on_the_generator_alone_and_are_uniform():
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    draws = []
    for global_seed in (0, 1):  # the throwaway model's initialisation must not matter
        torch.manual_seed(global_seed)
        draw = L.sampler.uniform_sampler(env)
        draws.append(env.to_smiles(draw(64, torch.Generator().manual_seed(5))))
    assert draws[0] == draws[1] and len(draws[0]) == 64
    # the first step adds one of the library's fragments, each equally likely
    first = L.sampler.uniform_sampler(env)(3000, torch.Generator().manual_seed(0))
    n_frag = len(L.FragmentLibrary.default().fragments)
    counts = torch.bincount(first.frag[:, 0], minlength=n_frag).float()
    expected = 3000 / n_frag
    assert float(((counts - expected) ** 2 / expected).sum()) < 45  # chi-square, 17 dof: p < 0.0005
