"""Temperature samplers, beta encodings, learned backward policy and state flows."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

import lgfn_graph as L
from lgfn_graph.sampler import evaluate_trajectories


def _ks(sample, cdf):
    return stats.kstest(sample.double().numpy(), cdf).pvalue


def test_beta_distributions_match_their_cdfs():
    g = torch.Generator().manual_seed(0)
    n = 4000
    lo, hi = 2.0, 6.0
    assert _ks(L.BetaSampler(lo, hi).sample(n, g), stats.uniform(lo, hi - lo).cdf) > 1e-3
    assert _ks(L.BetaSampler(lo, hi, "log_uniform").sample(n, g), stats.loguniform(lo, hi).cdf) > 1e-3
    exp_cdf = lambda b: (np.exp(b) - math.exp(lo)) / (math.exp(hi) - math.exp(lo))  # noqa: E731
    assert _ks(L.BetaSampler(lo, hi, "exp_uniform").sample(n, g), exp_cdf) > 1e-3
    # exp-uniform never overflows, even at beta in the thousands
    big = L.BetaSampler(1000.0, 5000.0, "exp_uniform").sample(n, g)
    assert bool(torch.isfinite(big).all()) and float(big.min()) >= 1000 and float(big.mean()) > 4990
    # normal and gamma, clipped to the range
    nb = L.BetaSampler(1.0, 100.0, "normal", mean=30.0, std=5.0).sample(n, g)
    assert abs(float(nb.mean()) - 30) < 0.5 and abs(float(nb.std()) - 5) < 0.3
    clipped = L.BetaSampler(1.0, 3.0, "normal", mean=3.0, std=2.0).sample(n, g)
    assert float(clipped.max()) == 3.0 and float(clipped.min()) >= 1.0
    gb = L.BetaSampler(0.01, 1000.0, "gamma", shape=3.0, scale=2.0).sample(n, g)
    assert _ks(gb, stats.gamma(3.0, scale=2.0).cdf) > 1e-3
    assert torch.equal(L.BetaSampler.constant(7.0).sample(3, g), torch.full((3,), 7.0))


def test_annealing_window_slides_with_progress():
    s, inv = L.BetaSampler(1.0, 11.0, "annealing", window=0.2), L.BetaSampler(1.0, 11.0, "inverse_annealing", window=0.2)
    g = torch.Generator().manual_seed(0)
    for p, lo, hi in [(0.0, 1.0, 3.0), (0.5, 5.0, 7.0), (1.0, 9.0, 11.0)]:
        b = s.sample(500, g, progress=p)
        assert lo - 1e-5 <= float(b.min()) and float(b.max()) <= hi + 1e-5 and float(b.max() - b.min()) > 1.8
        bi = inv.sample(500, g, progress=1.0 - p)
        assert lo - 1e-5 <= float(bi.min()) and float(bi.max()) <= hi + 1e-5


def test_beta_samplers_are_reproducible_and_validate():
    for kind in L.BETA_DISTRIBUTIONS:
        s = L.BetaSampler(1.0, 50.0, kind)
        a = s.sample(20, torch.Generator().manual_seed(4), 0.3)
        b = s.sample(20, torch.Generator().manual_seed(4), 0.3)
        assert torch.equal(a, b) and float(a.min()) >= 1.0 and float(a.max()) <= 50.0
    with pytest.raises(ValueError, match="kind"):
        L.BetaSampler(1, 2, "cauchy")
    with pytest.raises(ValueError, match="std"):
        L.BetaSampler(1, 2, "normal", std=0.0)
    with pytest.raises(ValueError, match="window"):
        L.BetaSampler(1, 2, "annealing", window=1.5)


def test_beta_encodings_hand_computed():
    beta = torch.tensor([1.0, 8.0, 64.0, 1000.0])
    torch.testing.assert_close(L.BetaEncoding("raw")(beta), beta[:, None])
    torch.testing.assert_close(L.BetaEncoding("log")(beta), beta.log()[:, None])
    th = L.BetaEncoding("thermometer", dim=4, low=1.0, high=64.0)(beta)  # centres log 1, 4, 16, 64 (gap log 4)
    want = torch.tensor([[0, 0, 0, 0], [1, 0.5, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float32)
    torch.testing.assert_close(th, want, atol=1e-5, rtol=0)
    fo = L.BetaEncoding("fourier", dim=4, low=1.0, high=64.0)(beta)  # u = log(beta)/log(64)
    u = beta.log() / math.log(64.0)
    want = torch.stack([torch.sin(math.pi * u), torch.sin(2 * math.pi * u), torch.cos(math.pi * u),
                        torch.cos(2 * math.pi * u)], 1)
    torch.testing.assert_close(fo, want)
    with pytest.raises(ValueError, match="encoding"):
        L.BetaEncoding("binary")


@pytest.mark.parametrize("encoding", ["raw", "log", "thermometer", "fourier"])
def test_every_encoding_builds_and_trains(encoding):
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1,
                                                         conditioning="logit+layer", beta_encoding=encoding))
    h = L.Trainer(env, gfn, L.QED(), L.TrainConfig(steps=2, batch_size=4)).train(progress=False)
    assert all(math.isfinite(m["loss"]) for m in h)


def _learned(mode="logit", **kw):
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    cfg = L.ModelConfig(hidden=16, num_layers=2, heads=2, conditioning=mode, backward_policy="learned",
                        backward_conditioning="logit", state_flow=True, **kw)
    return env, L.TemperatureGFlowNet.build(env, cfg)


@pytest.mark.parametrize("learned", [False, True])
def test_sampling_passes_give_the_evaluated_terms_and_their_gradients(learned):
    """sample_and_evaluate's terms (from the passes that sampled) equal an evaluation of the same
    trajectories, values and gradients: on-policy training may skip the second pass."""
    if learned:
        env, gfn = _learned("logit+layer")
    else:
        torch.manual_seed(0)
        env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=2, conditioning="logit"))
    beta = torch.tensor([1.0, 3.0, 9.0, 30.0, 2.0, 5.0]).repeat(3)
    traj, rep = L.sample_and_evaluate(gfn, env, beta, 0.6, torch.Generator().manual_seed(4))
    ref = evaluate_trajectories(gfn, env, traj)
    assert int(traj.length.max()) >= 3 and int(traj.length.min()) < int(traj.length.max())  # mixed lengths
    terms = ["log_pf", "log_pb"] + (["log_flow"] if learned else [])
    for k in terms:
        torch.testing.assert_close(getattr(rep, k), getattr(ref, k), atol=1e-5, rtol=1e-5)
    if not learned:
        assert rep.log_flow is None and ref.log_flow is None
    weights = torch.randn(len(traj), traj.actions.shape[0], generator=torch.Generator().manual_seed(1))

    def grads(r):
        gfn.zero_grad()
        sum((getattr(r, k)[:, :weights.shape[1]] * weights).sum() for k in terms).backward(retain_graph=True)
        return {n: p.grad.clone() for n, p in gfn.named_parameters() if p.grad is not None}

    a, b = grads(rep), grads(ref)
    assert a.keys() == b.keys() and len(a) > 10
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=1e-5, rtol=1e-4, msg=n)


def test_on_policy_step_equals_the_re_evaluated_step():
    """One trainer step with backprop_through_sampling gives the parameters that a step
    evaluating the sampled states again gives."""
    def step(fast):
        torch.manual_seed(0)
        env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=2))
        cfg = L.TrainConfig(steps=3, batch_size=8, seed=2, backprop_through_sampling=fast)
        tr = L.Trainer(env, gfn, L.QED(), cfg)
        batch = tr.collect()
        assert (batch.terms is not None) == fast
        m = tr.update(batch)
        return m["loss"], {n: p.detach().clone() for n, p in gfn.named_parameters()}

    (la, pa), (lb, pb) = step(True), step(False)
    assert abs(la - lb) < 1e-4 * max(1.0, abs(lb))
    for n in pa:
        torch.testing.assert_close(pa[n], pb[n], atol=1e-5, rtol=1e-4, msg=n)


def test_evaluate_trajectories_matches_a_pass_one_state_at_a_time():
    """log P_F, learned log P_B and log F from the one batched pass of evaluate_trajectories,
    against the model evaluated at each state alone, at another beta than sampling."""
    env, gfn = _learned("logit+layer")
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, env, torch.tensor([1.0, 3.0, 9.0, 30.0]), 0.2, torch.Generator().manual_seed(2))
    beta = torch.tensor([2.0, 5.0, 7.0, 11.0])
    with torch.no_grad():
        rep = evaluate_trajectories(gfn, env, traj, beta)
    for i in range(len(traj)):
        n = int(traj.length[i])
        for t in range(n):
            s = traj.states[t][i]
            out = gfn.evaluate(env.to_graph(s), beta[i : i + 1], env.forward_masks(s), env.backward_masks(s))
            a = traj.actions[t, i : i + 1]
            torch.testing.assert_close(out.forward.log_prob(a)[0], rep.log_pf[i, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.log_flow[0], rep.log_flow[i, t], atol=1e-5, rtol=1e-5)
            if t < n - 1:  # P_B(s_t | s_{t+1}) of the action that built s_{t+1}: removing its newest fragment
                child = traj.states[t + 1][i]
                bout = gfn.evaluate(env.to_graph(child), beta[i : i + 1], env.forward_masks(child), env.backward_masks(child))
                undo = torch.tensor([[0, int(s.n), 0]])
                torch.testing.assert_close(bout.backward.log_prob(undo)[0], rep.log_pb[i, t], atol=1e-5, rtol=1e-5)
                parent, fwd = env.backward_step(child, undo)
                assert bool(parent.equal(s).all()) and torch.equal(fwd, a)
            else:
                assert float(rep.log_pb[i, t]) == 0.0  # the stop


@pytest.mark.parametrize("objective", ["tb", "db", "subtb"])
def test_every_objective_trains_with_a_learned_backward_policy(objective):
    env, gfn = _learned()
    cfg = L.TrainConfig(steps=3, batch_size=8, objective=objective, explore_beta=L.BetaSampler(1, 4, "annealing"))
    before = [p.detach().clone() for p in gfn.backward_policy.parameters()]
    h = L.Trainer(env, gfn, L.QED(), cfg).train(progress=False)
    assert all(math.isfinite(m["loss"]) for m in h)
    assert any(not torch.equal(b, p) for b, p in zip(before, gfn.backward_policy.parameters()))
    # initial states have no backward action: their empty distribution must not leak NaN gradients
    assert all(bool(torch.isfinite(p).all()) for p in gfn.parameters())


def test_flow_objectives_need_a_state_flow_head():
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    with pytest.raises(ValueError, match="state_flow=True"):
        L.Trainer(env, gfn, L.QED(), L.TrainConfig(objective="db"))
    with pytest.raises(ValueError, match="objective"):
        L.TrainConfig(objective="fm")


def test_symmetric_trees_are_counted_by_their_automorphisms():
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    pair = env.from_tree([0, 0], [(0, 1, 0, 0)])          # A-A through the same stem: |Aut| = 2
    skew = env.from_tree([0, 0], [(0, 1, 0, 1)])          # different stems: 1
    chain = env.from_tree([0, 0, 0], [(0, 1, 0, 0), (1, 2, 1, 0)])  # one centre: 1
    sym4 = env.from_tree([1, 0, 0, 1], [(0, 1, 0, 1), (1, 2, 0, 0), (2, 3, 1, 0)])  # mirror halves: 2
    got = env.log_automorphisms(L.FragmentStates.cat([pair, skew, chain, sym4]))
    torch.testing.assert_close(got, torch.tensor([math.log(2), 0.0, 0.0, math.log(2)]))


def test_training_at_beta_up_to_5000_stays_finite():
    """1000 steps with beta ~ U[1, 5000]: log-space targets, clamped logits, no NaN or inf."""
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=8, num_layers=1, heads=1))
    cfg = L.TrainConfig(steps=1000, batch_size=4, beta=L.BetaSampler(1.0, 5000.0), lr=1e-3)
    h = L.Trainer(env, gfn, L.QED(), cfg).train(progress=False)
    # no step skipped: the guard against non-finite steps would keep the parameters finite anyway
    assert len(h) == 1000 and sum(m["skipped"] for m in h) == 0
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in h)
    assert all(bool(torch.isfinite(p).all()) for p in gfn.parameters())
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, env, torch.tensor([1.0, 5000.0]))
    assert bool(torch.isfinite(traj.log_pf).all())
