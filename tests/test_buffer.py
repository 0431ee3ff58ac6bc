"""Backward trajectories, the replay buffer and the offline dataset."""
import math

import pytest
import torch
from scipy.stats import chisquare

import lgfn_graph as L
from lgfn_graph.policy import uniform_backward_log_prob


def _frag_setup(learned=False):
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=5)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2,
                                                         backward_policy="learned" if learned else "uniform"))
    return env, gfn


def _terminal(env, gfn, n, seed=1):
    with torch.no_grad():
        return L.sample_trajectories(gfn, env, torch.ones(n), 0.5, torch.Generator().manual_seed(seed)).terminal


@pytest.mark.parametrize("kind", ["fragment", "atom"])
def test_backward_trajectories_are_consistent_walks_to_the_given_terminals(kind):
    if kind == "fragment":
        env, gfn = _frag_setup()
    else:
        env = L.AtomEnv(("C", "N", "O"), max_atoms=4)
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
    x = _terminal(env, gfn, 24)
    tr = L.sample_backward_trajectories(env, x, torch.full((24,), 2.0), torch.Generator().manual_seed(2))
    assert bool(tr.terminal.equal(x).all()) and torch.equal(tr.beta, torch.full((24,), 2.0))
    assert bool((tr.states[0].n == 0).all())
    for t in range(tr.actions.shape[0]):
        a, b = tr.actions[t], tr.backward_actions[t]
        live = (a[:, 0] >= 0).nonzero().flatten()
        moving = (b[:, 0] >= 0).nonzero().flatten()
        assert torch.equal(live, (tr.length > t).nonzero().flatten())
        assert torch.equal(moving, (tr.length > t + 1).nonzero().flatten())  # all but the stop
        assert bool(env.is_stop(a[live[~torch.isin(live, moving)]]).all())
        # each backward action undoes its forward action exactly
        parent, fwd = env.backward_step(tr.states[t + 1][moving], b[moving])
        assert bool(parent.equal(tr.states[t][moving]).all()) and torch.equal(fwd, a[moving])
        # the forward action rebuilds the same molecule (node numbering may differ)
        assert env.to_smiles(env.step(tr.states[t][moving], a[moving])) == env.to_smiles(tr.states[t + 1][moving])
        want = torch.where(tr.length > t + 1, uniform_backward_log_prob(env, tr.states[t + 1]), torch.zeros(()))
        torch.testing.assert_close(tr.log_pb[:, t], want)
    assert torch.equal(tr.log_pf, torch.zeros_like(tr.log_pf))


def test_backward_walks_are_uniform_over_parents():
    env, gfn = _frag_setup()
    x = _terminal(env, gfn, 64, seed=3)
    i = int((env.num_parents(x) >= 3).nonzero().flatten()[0])
    one = x[torch.full((3000,), i)]
    tr = L.sample_backward_trajectories(env, one, torch.ones(3000), torch.Generator().manual_seed(0))
    last = tr.backward_actions[tr.length - 2, torch.arange(3000)]  # the first removal from x
    leaves = (env.backward_masks(x[i])[0].flatten()).nonzero().flatten()
    counts = torch.stack([(last[:, 1] == leaf).sum() for leaf in leaves]).double()
    assert counts.sum() == 3000
    assert chisquare(counts.numpy()).pvalue > 1e-3


def test_evaluating_backward_trajectories_with_a_learned_backward_policy():
    env, gfn = _frag_setup(learned=True)
    x = _terminal(env, gfn, 6)
    beta = torch.full((6,), 3.0)
    tr = L.sample_backward_trajectories(env, x, beta, torch.Generator().manual_seed(4))
    rep = L.evaluate_trajectories(gfn, env, tr)
    for i in range(6):  # one state at a time, in each state's own numbering
        for t in range(int(tr.length[i]) - 1):
            s, nxt = tr.states[t][i], tr.states[t + 1][i]
            out = gfn.evaluate(env.to_graph(nxt), beta[:1], env.forward_masks(nxt), env.backward_masks(nxt))
            want = out.backward.log_prob(tr.backward_actions[t, i:i + 1])[0]
            torch.testing.assert_close(rep.log_pb[i, t], want, atol=1e-5, rtol=1e-5)
            cat = gfn.policy(env.to_graph(s), beta[:1], env.forward_masks(s))
            torch.testing.assert_close(rep.log_pf[i, t], cat.log_prob(tr.actions[t, i:i + 1])[0], atol=1e-5, rtol=1e-5)


def test_cat_pads_and_keeps_every_term():
    env, gfn = _frag_setup(learned=True)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        a = L.sample_trajectories(gfn, env, torch.full((5,), 2.0), 0.0, g)
    b = L.sample_backward_trajectories(env, _terminal(env, gfn, 3, seed=9), torch.full((3,), 7.0), g)
    both = L.Trajectories.cat([a, b], env)
    assert len(both) == 8 and torch.equal(both.length, torch.cat([a.length, b.length]))
    ra, rb, r = (L.evaluate_trajectories(gfn, env, x) for x in (a, b, both))
    torch.testing.assert_close(r.log_pf.sum(1), torch.cat([ra.log_pf.sum(1), rb.log_pf.sum(1)]))
    torch.testing.assert_close(r.log_pb.sum(1), torch.cat([ra.log_pb.sum(1), rb.log_pb.sum(1)]))
    assert bool(both.terminal.equal(L.FragmentStates.cat([a.terminal, b.terminal])).all())


def test_buffer_capacity_priorities_and_state_round_trip():
    env, gfn = _frag_setup()
    x = _terminal(env, gfn, 10)
    logr = torch.arange(10.0) * -0.5  # state 0 best
    oldest = L.ReplayBuffer(4, keep="oldest")
    oldest.add(x, logr)
    assert torch.equal(oldest.log_reward, logr[6:]) and bool(oldest.states.equal(x[torch.arange(6, 10)]).all())
    best = L.ReplayBuffer(4, keep="best")
    best.add(x[torch.arange(5, 10)], logr[5:])
    best.add(x[torch.arange(5)], logr[:5])
    assert sorted(best.log_reward.tolist(), reverse=True) == logr[:4].tolist()
    pri = L.ReplayBuffer(0, priority="reward")
    pri.add(x[torch.arange(3)], torch.tensor([0.0, -1.0, -2.0]))
    _, drawn = pri.sample(20000, torch.Generator().manual_seed(0))
    counts = torch.stack([(drawn == v).sum() for v in (0.0, -1.0, -2.0)]).double()
    p = torch.softmax(torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64), 0)
    assert chisquare(counts.numpy(), (p * 20000).numpy()).pvalue > 1e-3
    copy = L.ReplayBuffer()
    copy.load_state_dict(best.state_dict(), type(x))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    s1, l1 = best.sample(7, g1)
    s2, l2 = copy.sample(7, g2)
    assert torch.equal(l1, l2) and bool(s1.equal(s2).all())


def test_buffer_rejects_bad_input():
    env, gfn = _frag_setup()
    x = _terminal(env, gfn, 3)
    with pytest.raises(ValueError, match="3 states but 2 log-rewards"):
        L.ReplayBuffer().add(x, torch.zeros(2))
    with pytest.raises(ValueError, match="log-reward of state 1 is nan"):
        L.ReplayBuffer().add(x, torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="empty buffer"):
        L.ReplayBuffer().sample(1)
    with pytest.raises(ValueError, match="priority"):
        L.ReplayBuffer(priority="best")


def test_offline_training_only_sees_the_dataset_and_never_calls_the_reward():
    env, gfn = _frag_setup()
    x = _terminal(env, gfn, 12)
    data = L.ReplayBuffer.from_states(x, torch.linspace(-3, 0, 12))
    allowed = set(env.to_smiles(x))
    seen = []
    cfg = L.TrainConfig(steps=6, batch_size=8, beta=L.BetaSampler(10.0, 50.0), tensorboard=False)
    tr = L.Trainer(env, gfn, None, cfg, dataset=data,
                   callbacks=[lambda t, batch, m: seen.append(env.to_smiles(batch.trajectories.terminal))])
    h = tr.train(progress=False)
    assert len(seen) == 6 and all(set(s) <= allowed for s in seen)
    assert all(m["invalid"] == 0 and m["time_reward"] == 0.0 for m in h)
    assert all(10.0 <= m["mean_beta"] <= 50.0 for m in h)
    with pytest.raises(ValueError, match="needs a reward"):
        L.Trainer(env, gfn, None, cfg)


def test_replay_buffer_mixes_stored_and_fresh_trajectories():
    env, gfn = _frag_setup()
    cfg = L.TrainConfig(steps=3, batch_size=8, replay_capacity=100, replay_fraction=0.25, tensorboard=False)
    sizes = []
    tr = L.Trainer(env, gfn, L.QED(), cfg, callbacks=[lambda t, b, m: sizes.append((b.num_sampled, len(b.trajectories)))])
    tr.train(progress=False)
    assert sizes == [(8, 8), (6, 8), (6, 8)] and len(tr.buffer) == 20


def test_replay_on_an_env_without_backward_actions():
    # AtomEnv has no backward_actions: mixing replayed (backward) and fresh trajectories once
    # asked it to fill them in for the fresh part and crashed on the second step
    env = L.AtomEnv(("C", "N", "O"), max_atoms=4)
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
    cfg = L.TrainConfig(steps=3, batch_size=8, replay_capacity=100, replay_fraction=0.25, tensorboard=False)
    sizes = []
    tr = L.Trainer(env, gfn, L.QED(), cfg, callbacks=[lambda t, b, m: sizes.append((b.num_sampled, len(b.trajectories)))])
    metrics = tr.train(progress=False)
    assert sizes == [(8, 8), (6, 8), (6, 8)] and all(math.isfinite(m["loss"]) for m in metrics)
