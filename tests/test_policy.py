"""Temperature conditioning of the policy: logit scaling against a brute-force softmax."""
import pytest
import torch
from torch import nn

import lgfn_graph as L
from lgfn_graph.categorical import element_batch


class ReturnsBeta(nn.Module):
    def forward(self, beta):
        return beta


def random_states(env, n, steps, seed=0):
    """``n`` states after up to ``steps`` uniformly random legal actions."""
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2, conditioning="none"))
    g = torch.Generator().manual_seed(seed)
    s = env.initial(n)
    for _ in range(steps):
        masks = env.forward_masks(s)
        masks[0] = masks[0] & (s.n >= env.max_fragments)[:, None]  # keep growing
        cat = gfn.policy(env.to_graph(s), torch.ones(n), masks)
        s = env.step(s, cat.sample(1.0, g))
    return s


@pytest.fixture
def env():
    return L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)


def brute_force_log_softmax(logits, masks, batches, num_graphs, scale):
    """Per graph: gather its legal actions' logits with loops, times scale, log_softmax."""
    out = [torch.full_like(l, float("-inf")) for l in logits]
    for b in range(num_graphs):
        entries = [(t, r, c) for t in range(len(logits)) for r in (batches[t] == b).nonzero().flatten().tolist()
                   for c in range(logits[t].shape[1]) if masks[t][r, c]]
        vals = torch.stack([logits[t][r, c] * scale[b] for t, r, c in entries])
        for (t, r, c), v in zip(entries, torch.log_softmax(vals, 0)):
            out[t][r, c] = v
    return out


@pytest.mark.parametrize("steps", [0, 1, 3])
def test_logit_scaling_with_g_equal_beta_is_softmax_of_beta_times_logits(env, steps):
    torch.manual_seed(1)
    base = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=2, conditioning="none", logit_clip=0))
    scaled = L.Policy(env.forward_action_types, base.policy.backbone, base.policy.heads, scaler=ReturnsBeta(), logit_clip=0)
    s = random_states(env, 5, steps)
    data, masks = env.to_graph(s), env.forward_masks(s)
    beta = torch.tensor([0.5, 1.0, 3.0, 10.0, 40.0])
    got = scaled(data, beta, masks).log_probs()
    raw = base.policy.logits(data, beta)
    batches = [element_batch(data, t.level) for t in env.forward_action_types]
    want = brute_force_log_softmax(raw, masks, batches, len(s), beta)
    for g, w in zip(got, want):
        assert torch.equal(torch.isinf(g), torch.isinf(w))
        torch.testing.assert_close(g[torch.isfinite(w)], w[torch.isfinite(w)], atol=1e-4, rtol=1e-4)


def test_logit_mode_backbone_is_beta_free_and_scale_multiplies(env):
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=2, conditioning="logit", logit_clip=0))
    s = random_states(env, 3, 2)
    data = env.to_graph(s)
    with torch.no_grad():
        for p in gfn.policy.scaler.parameters():
            p.normal_()
        b1, b2 = torch.full((3,), 1.0), torch.full((3,), 7.0)
        l1, l2 = gfn.policy.logits(data, b1), gfn.policy.logits(data, b2)
        ratio = gfn.policy.scaler(b2) / gfn.policy.scaler(b1)
    for x, y, t in zip(l1, l2, env.forward_action_types):
        r = ratio[element_batch(data, t.level)][:, None]
        torch.testing.assert_close(y, x * r, atol=1e-4, rtol=1e-4)


def test_none_mode_ignores_beta_and_layer_mode_uses_it(env):
    s = random_states(env, 3, 2)
    data = env.to_graph(s)
    for mode, same in [("none", True), ("layer", False)]:
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=2, conditioning=mode))
        a = gfn.policy.logits(data, torch.full((3,), 1.0))
        b = gfn.policy.logits(data, torch.full((3,), 9.0))
        assert all(torch.allclose(x, y) for x, y in zip(a, b)) == same, mode


@pytest.mark.parametrize("mode", ["logit", "layer", "logit+layer", "none"])
def test_log_prob_gradients_are_finite_and_reach_exactly_the_parameters_in_use(env, mode):
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2, conditioning=mode))
    s = random_states(env, 6, 3)  # three fragments: a node with two neighbours, so keys matter
    data, masks = env.to_graph(s), env.forward_masks(s)
    cat = gfn.policy(data, torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]), masks)
    cat.log_prob(cat.sample(1.0, torch.Generator().manual_seed(0))).sum().backward()
    used = {"logit": {"backbone", "heads", "scaler"}, "layer": {"backbone", "heads", "beta_embedding"},
            "logit+layer": {"backbone", "heads", "scaler", "beta_embedding"}, "none": {"backbone", "heads"}}[mode]
    assert {name for name, m in gfn.policy.named_children() if any(True for _ in m.parameters())} == used
    assert all(p.grad is None for p in gfn.log_z.parameters()), "log Z is no term of log P_F"
    add_first = [t.name for t in env.forward_action_types].index("add_first")
    # gradients that vanish by construction, whatever the weights: add_first is masked in every
    # state with a fragment (masked actions get gradient exactly 0); the positive scaler's output
    # layer starts at zero weights, so nothing reaches the layers behind it; an attention key bias
    # adds the same q.b to every score of a query, which the softmax over keys cancels.
    vanish = (f"heads.mlps.{add_first}.", "scaler.mlp.1.", "scaler.mlp.3.")
    for name, p in gfn.policy.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()), name
        size = float(p.grad.abs().max())
        if name.startswith(vanish) or name.endswith("lin_key.bias"):
            assert size < 1e-7, f"{name}: gradient {size:.2e} where it must vanish"
        else:
            assert size > 1e-6, f"{name}: gradient {size:.2e} where it must not vanish"


def test_positive_scaler_starts_at_one_and_stays_positive():
    sc = L.LogitScaler("positive")
    beta = torch.tensor([0.1, 1.0, 10.0, 1000.0])
    assert torch.equal(sc(beta), torch.ones(4))
    with torch.no_grad():
        for p in sc.parameters():
            p.normal_(0, 5)
    assert bool((sc(torch.logspace(-2, 4, 50)) > 0).all())


def test_unconstrained_scaler_can_flip_sign():
    torch.manual_seed(0)
    sc = L.LogitScaler("unconstrained")
    with torch.no_grad():
        sc.mlp[-1].bias.fill_(-100.0)
    assert bool((sc(torch.tensor([1.0, 2.0])) < 0).all())


def test_clip_bounds_ratios_relative_to_the_best_action_and_keeps_it_best(env):
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=1, logit_clip=5.0))
    unclipped = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=1, logit_clip=0))
    unclipped.load_state_dict(gfn.state_dict())
    with torch.no_grad():
        for m in (gfn, unclipped):
            m.policy.scaler.mlp[-1].bias.fill_(50.0)  # scale 51: logits far beyond +-5
    s = random_states(env, 6, 2)
    data, masks = env.to_graph(s), env.forward_masks(s)
    beta = torch.ones(6)
    cat, ref = gfn.policy(data, beta, masks), unclipped.policy(data, beta, masks)
    graph, _, lp = cat.legal_actions()
    _, _, ref_lp = ref.legal_actions()
    best = cat.log_prob(ref.argmax()).detach()
    for g in range(6):
        x, r = lp[graph == g].detach(), ref_lp[graph == g].detach()
        assert float(r.max() - r.min()) > 10.0  # the clip is active in every graph
        assert float(x.max() - x.min()) <= 10.0 + 1e-4  # ratios within e^(2 clip)
        assert abs(float(best[g] - x.max())) < 1e-5  # the best action stays the most likely
        kept = (r - r.max()) > -10.0  # actions within the bound keep their ratio to the best
        torch.testing.assert_close((x - x.max())[kept], (r - r.max())[kept], atol=1e-4, rtol=1e-4)
    # where no ratio exceeds the bound, clipping changes nothing
    small = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=1, logit_clip=1e3))
    small.load_state_dict(gfn.state_dict())
    for x, y in zip(small.policy(data, beta, masks).log_probs(), ref.log_probs()):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)


def test_custom_backbone_replaces_the_default(env):
    """Any module with the documented signature (data, cond) -> (node, graph) plugs in."""
    from torch_geometric.nn import GCNConv
    from torch_geometric.utils import scatter

    class MyGCN(nn.Module):
        def __init__(self, node_dim, hidden):
            super().__init__()
            self.conv = GCNConv(node_dim, hidden)

        def forward(self, data, cond=None):
            h = self.conv(data.x, data.edge_index).relu()
            return h, scatter(h, data.batch, 0, dim_size=data.num_graphs, reduce="sum")

    policy = L.Policy(env.forward_action_types, MyGCN(env.node_dim, 16), L.nn.ActionHeads(env.forward_action_types, 16),
                      scaler=L.LogitScaler())
    gfn = L.TemperatureGFlowNet(policy, L.LogZ())
    traj, rep = L.sample_and_evaluate(gfn, env, torch.full((6,), 2.0), generator=torch.Generator().manual_seed(0))
    assert bool((traj.terminal.n >= 1).all())
    rep.log_pf.sum().backward()
    for name, p in policy.backbone.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 1e-6, f"{name}: no gradient reaches the custom backbone"


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="conditioning"):
        L.ModelConfig(conditioning="temperature")
