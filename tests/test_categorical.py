"""GraphActionCategorical against a dense, loop-based brute force.

Every test builds the per-graph distribution explicitly (Python loops over graphs, types,
rows and columns, then ``torch.log_softmax`` over the allowed entries) and compares the
segment-based implementation with it.
"""
from __future__ import annotations

import math

import pytest
import torch

from lgfn_graph.categorical import ActionType, GraphActionCategorical

# (level, width) of each action type used by the random batches. Type 3 is an edge-level type
# that has no rows at all in any batch; node/edge types have zero rows for some graphs.
TYPES = [("graph", 1), ("node", 4), ("edge", 2), ("edge", 3), ("graph", 3), ("node", 1)]
EMPTY_TYPE = 3
SEEDS = [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def make_batch(seed, num_graphs=7, dtype=torch.float32, p_allowed=0.5, masked_fill=None, scale=3.0):
    """A random batch: per-type logits, masks, batch vectors, and row counts per graph.

    Graph 0 has no nodes and no edges; graph 1 has nodes but no edges. The type
    ``EMPTY_TYPE`` has zero rows for every graph. Every graph keeps at least one legal action.
    ``masked_fill`` (a list of floats) overwrites masked logits with extreme values.
    """
    g = torch.Generator().manual_seed(seed)
    n_nodes = torch.randint(0, 5, (num_graphs,), generator=g)
    n_edges = torch.randint(0, 4, (num_graphs,), generator=g)
    n_nodes[0], n_edges[0] = 0, 0
    n_nodes[1], n_edges[1] = max(int(n_nodes[1]), 2), 0
    logits, masks, batch, rows = [], [], [], []
    for t, (level, width) in enumerate(TYPES):
        if t == EMPTY_TYPE:
            per_graph = torch.zeros(num_graphs, dtype=torch.long)
        elif level == "graph":
            per_graph = torch.ones(num_graphs, dtype=torch.long)
        elif level == "node":
            per_graph = n_nodes.clone()
        else:
            per_graph = n_edges.clone()
        n = int(per_graph.sum())
        b = torch.arange(num_graphs).repeat_interleave(per_graph)
        logits.append((torch.randn(n, width, generator=g) * scale).to(dtype))
        masks.append(torch.rand(n, width, generator=g) < p_allowed)
        batch.append(b)
        rows.append(per_graph)
    # make sure every graph has at least one legal action
    for gi in range(num_graphs):
        if not any(bool(m[batch[t] == gi].any()) for t, m in enumerate(masks)):
            masks[0][gi, 0] = True  # type 0 is graph-level: row gi belongs to graph gi
    if masked_fill is not None:
        for t in range(len(TYPES)):
            idx = (~masks[t]).nonzero()
            for k, (r, c) in enumerate(idx.tolist()):
                logits[t][r, c] = masked_fill[k % len(masked_fill)]
    return logits, masks, batch, num_graphs


def brute_force(logits, masks, batch, num_graphs):
    """Per graph: list of legal ``(t, local_row, col, global_row)`` and their log-softmax.

    Returns ``(entries, log_probs)`` where both are lists indexed by graph. Differentiable
    w.r.t. the logits.
    """
    all_entries, all_lp = [], []
    for b in range(num_graphs):
        entries = []
        for t in range(len(logits)):
            global_rows = [r for r in range(batch[t].shape[0]) if int(batch[t][r]) == b]
            for local, r in enumerate(global_rows):
                for c in range(logits[t].shape[1]):
                    if bool(masks[t][r, c]):
                        entries.append((t, local, c, r))
        vals = torch.stack([logits[t][r, c] for t, _, c, r in entries])
        all_entries.append(entries)
        all_lp.append(torch.log_softmax(vals, 0))
    return all_entries, all_lp


def actions_covering_all(entries):
    """Several ``[B, 3]`` action tensors which together contain every legal action."""
    k_max = max(len(e) for e in entries)
    out = []
    for k in range(k_max):
        out.append(torch.tensor([list(e[k % len(e)][:3]) for e in entries], dtype=torch.long))
    return out


def replicate(logits, masks, n):
    """One graph (all rows belong to graph 0) repeated ``n`` times as a batch of ``n`` graphs."""
    rl = [l.repeat(n, 1) for l in logits]
    rm = [m.repeat(n, 1) for m in masks]
    rb = [torch.arange(n).repeat_interleave(l.shape[0]) for l in logits]
    return rl, rm, rb, n


def action_codes(actions, logits):
    """Map each ``(t, row, col)`` of a single-graph layout to a flat index over all its entries."""
    offsets = [0]
    for l in logits:
        offsets.append(offsets[-1] + l.numel())
    off = torch.tensor(offsets[:-1])
    widths = torch.tensor([l.shape[1] for l in logits])
    t, r, c = actions.unbind(-1)
    return off[t] + r * widths[t] + c


def single_graph(dtype=torch.float32):
    """A small single graph with graph-, node- and edge-level types, some entries masked."""
    logits = [
        torch.tensor([[0.3]]),                                        # graph-level, width 1
        torch.tensor([[0.5, -1.0], [1.2, 0.0], [-0.4, 2.0]]),         # node-level, 3 nodes, width 2
        torch.tensor([[0.1, 0.7, -2.0], [1.5, -0.3, 0.2]]),           # edge-level, 2 edges, width 3
    ]
    masks = [
        torch.tensor([[True]]),
        torch.tensor([[True, False], [True, True], [False, True]]),
        torch.tensor([[True, True, False], [False, True, True]]),
    ]
    return [l.to(dtype) for l in logits], masks


def flat_probs(logits, masks):
    """Brute-force probability of every flat entry of a single graph (0 where masked)."""
    flat_l = torch.cat([l.reshape(-1) for l in logits]).double()
    flat_m = torch.cat([m.reshape(-1) for m in masks])
    p = torch.zeros_like(flat_l)
    p[flat_m] = torch.softmax(flat_l[flat_m], 0)
    return p, flat_m


# ---------------------------------------------------------------------------------------------
# 1. values against the brute force
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_log_probs_match_brute_force(seed, dtype):
    """log_probs() equals the per-graph log_softmax over legal actions, -inf elsewhere."""
    logits, masks, batch, B = make_batch(seed, dtype=dtype)
    assert logits[EMPTY_TYPE].shape == (0, TYPES[EMPTY_TYPE][1])
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, lps = brute_force(logits, masks, batch, B)
    expected = [torch.full_like(l, float("-inf")) for l in logits]
    for e, lp in zip(entries, lps):
        for (t, _, c, r), v in zip(e, lp):
            expected[t][r, c] = v
    got = cat.log_probs()
    assert len(got) == len(logits)
    for t, (g_t, e_t) in enumerate(zip(got, expected)):
        assert g_t.shape == logits[t].shape
        assert g_t.dtype == dtype
        assert torch.equal(torch.isinf(g_t), ~masks[t])
        assert torch.allclose(g_t[masks[t]], e_t[masks[t]], atol=1e-5)
        assert bool((g_t[~masks[t]] == float("-inf")).all())


@pytest.mark.parametrize("seed", SEEDS)
def test_log_prob_of_every_legal_action_matches_brute_force(seed):
    """log_prob(actions) with local row indices agrees with the brute force for all legal actions."""
    logits, masks, batch, B = make_batch(seed)
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, lps = brute_force(logits, masks, batch, B)
    for k, actions in enumerate(actions_covering_all(entries)):
        expected = torch.stack([lp[k % len(lp)] for lp in lps])
        got = cat.log_prob(actions)
        assert got.shape == (B,)
        assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_probabilities_sum_to_one_per_graph(seed):
    """Summing exp(log_probs) over every type's rows of a graph gives 1."""
    logits, masks, batch, B = make_batch(seed)
    cat = GraphActionCategorical(logits, masks, batch, B)
    total = torch.zeros(B, dtype=torch.float64)
    for lp, b in zip(cat.log_probs(), batch):
        total.index_add_(0, b, lp.exp().sum(1).double())
    assert torch.allclose(total, torch.ones(B, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_entropy_matches_brute_force(seed):
    """entropy() equals -sum p log p over each graph's legal actions."""
    logits, masks, batch, B = make_batch(seed)
    cat = GraphActionCategorical(logits, masks, batch, B)
    _, lps = brute_force(logits, masks, batch, B)
    expected = torch.stack([-(lp.exp() * lp).sum() for lp in lps])
    got = cat.entropy()
    assert got.shape == (B,)
    assert torch.allclose(got, expected, atol=1e-5)
    assert bool(torch.isfinite(got).all())


@pytest.mark.parametrize("seed", SEEDS)
def test_argmax_matches_brute_force(seed):
    """argmax() is the legal action with the largest logit, even if masked logits are larger."""
    logits, masks, batch, B = make_batch(seed, masked_fill=[1e4, float("inf"), 50.0])
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, lps = brute_force(logits, masks, batch, B)
    expected = torch.tensor([list(e[int(lp.argmax())][:3]) for e, lp in zip(entries, lps)])
    got = cat.argmax()
    assert got.dtype == torch.long
    assert torch.equal(got, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_log_prob_is_minus_log_num_legal(seed):
    """uniform_log_prob() is -log(number of legal actions) of each graph."""
    logits, masks, batch, B = make_batch(seed)
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, _ = brute_force(logits, masks, batch, B)
    expected = torch.tensor([-math.log(len(e)) for e in entries])
    assert torch.allclose(cat.uniform_log_prob(), expected, atol=1e-6)


def test_single_legal_action_has_log_prob_zero():
    """A graph whose only legal action is one entry gives it log-prob 0 and entropy 0."""
    logits = [torch.tensor([[5.0], [-3.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0], [0.0, 9.0]])]
    masks = [torch.tensor([[False], [True]]), torch.tensor([[False, True], [False, False], [False, False]])]
    batch = [torch.tensor([0, 1]), torch.tensor([0, 1, 1])]
    cat = GraphActionCategorical(logits, masks, batch, 2)
    lp = cat.log_prob(torch.tensor([[1, 0, 1], [0, 0, 0]]))
    assert torch.equal(lp, torch.zeros(2))
    assert torch.allclose(cat.entropy(), torch.zeros(2))
    assert torch.equal(cat.argmax(), torch.tensor([[1, 0, 1], [0, 0, 0]]))


# ---------------------------------------------------------------------------------------------
# 2. gradients
# ---------------------------------------------------------------------------------------------
def _grads(logits, masks, batch, B, k=0):
    """Gradients of sum log_prob(some legal actions) from the class and from the brute force."""
    leaves = [l.clone().requires_grad_(True) for l in logits]
    cat = GraphActionCategorical(leaves, masks, batch, B)
    entries, _ = brute_force([l.detach() for l in logits], masks, batch, B)
    actions = actions_covering_all(entries)[k] if k < max(len(e) for e in entries) else None
    cat.log_prob(actions).sum().backward()
    got = [l.grad.clone() for l in leaves]

    leaves2 = [l.clone().requires_grad_(True) for l in logits]
    entries2, lps2 = brute_force(leaves2, masks, batch, B)
    torch.stack([lp[k % len(lp)] for lp in lps2]).sum().backward()
    expected = [l.grad if l.grad is not None else torch.zeros_like(l) for l in leaves2]
    return got, expected


@pytest.mark.parametrize("seed", SEEDS)
def test_log_prob_gradient_matches_brute_force(seed):
    """d sum log_prob / d logits equals the brute-force gradient; masked entries get exactly 0."""
    logits, masks, batch, B = make_batch(seed)
    for k in range(3):
        got, expected = _grads(logits, masks, batch, B, k)
        for g, e, m in zip(got, expected, masks):
            assert bool(torch.isfinite(g).all())
            assert torch.allclose(g, e, atol=1e-5)
            assert bool((g[~m] == 0).all())


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_gradient_with_extreme_logits_is_finite_and_exact(seed):
    """With allowed logits of +-1e4 and masked logits of +-inf/1e30, gradients match and masked get 0."""
    logits, masks, batch, B = make_batch(seed, masked_fill=[float("inf"), float("-inf"), 1e30, -1e30, 1e4])
    g = torch.Generator().manual_seed(100 + seed)
    for t, l in enumerate(logits):
        extreme = torch.rand(l.shape, generator=g) < 0.4
        sign = torch.where(torch.rand(l.shape, generator=g) < 0.5, -1.0, 1.0)
        l[masks[t] & extreme] = (1e4 * sign)[masks[t] & extreme]
    cat = GraphActionCategorical(logits, masks, batch, B)
    for lp, m in zip(cat.log_probs(), masks):
        assert not bool(torch.isnan(lp).any())
        assert bool((lp[~m] == float("-inf")).all())
        assert bool((lp[m] <= 0).all())
    for k in range(3):
        got, expected = _grads(logits, masks, batch, B, k)
        for gr, e, m in zip(got, expected, masks):
            assert not bool(torch.isnan(gr).any())
            assert torch.allclose(gr, e, atol=1e-5)
            assert bool((gr[~m] == 0).all())


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_entropy_gradient_matches_brute_force_without_nan(seed):
    """The gradient of the summed entropy matches the brute force; masked entries get exactly 0."""
    logits, masks, batch, B = make_batch(seed, masked_fill=[float("inf"), float("-inf"), 1e4])
    leaves = [l.clone().requires_grad_(True) for l in logits]
    GraphActionCategorical(leaves, masks, batch, B).entropy().sum().backward()
    leaves2 = [l.clone().requires_grad_(True) for l in logits]
    _, lps = brute_force(leaves2, masks, batch, B)
    torch.stack([-(lp.exp() * lp).sum() for lp in lps]).sum().backward()
    for l, l2, m in zip(leaves, leaves2, masks):
        e = l2.grad if l2.grad is not None else torch.zeros_like(l2)
        assert not bool(torch.isnan(l.grad).any())
        assert torch.allclose(l.grad, e, atol=1e-5)
        assert bool((l.grad[~m] == 0).all())


# ---------------------------------------------------------------------------------------------
# 3. masked actions have probability exactly 0
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_masked_entries_have_probability_exactly_zero(seed):
    """exp(log_probs) is exactly 0 at masked entries, even when the masked logits are huge."""
    logits, masks, batch, B = make_batch(seed, masked_fill=[1e4, float("inf"), 1e30])
    cat = GraphActionCategorical(logits, masks, batch, B)
    for lp, m in zip(cat.log_probs(), masks):
        assert bool((lp.exp()[~m] == 0).all())
        assert not bool(torch.isnan(lp).any())


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 1.0])
def test_sample_never_returns_masked_action(epsilon):
    """Over many draws (masked logits huge), every sample is a legal action of its own graph."""
    logits, masks, batch, B = make_batch(7, num_graphs=40, masked_fill=[1e4, float("inf"), 1e30])
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, _ = brute_force(logits, masks, batch, B)
    legal = [{e[:3] for e in es} for es in entries]
    g = torch.Generator().manual_seed(123)
    seen = [set() for _ in range(B)]
    for _ in range(100):
        a = cat.sample(epsilon, generator=g)
        assert a.shape == (B, 3) and a.dtype == torch.long
        for b, act in enumerate(a.tolist()):
            assert tuple(act) in legal[b], (b, act)
            seen[b].add(tuple(act))
        # and log_prob accepts every sampled action
        assert bool(torch.isfinite(cat.log_prob(a)).all())
    if epsilon == 1.0:  # uniform: with 100 draws every legal action of small graphs shows up
        for b in range(B):
            if len(legal[b]) <= 5:
                assert seen[b] == legal[b]


def test_log_prob_of_masked_action_raises():
    """log_prob of a masked action raises ValueError, whatever its logit."""
    logits, masks = single_graph()
    logits[1][0, 1] = 1e4
    cat = GraphActionCategorical(logits, masks, [torch.zeros(1, dtype=torch.long), torch.zeros(3, dtype=torch.long),
                                                 torch.zeros(2, dtype=torch.long)], 1)
    for bad in ([1, 0, 1], [1, 2, 0], [2, 0, 2], [2, 1, 0]):
        with pytest.raises(ValueError):
            cat.log_prob(torch.tensor([bad]))
    # a legal one in the same position of a batch works
    assert torch.isfinite(cat.log_prob(torch.tensor([[1, 0, 0]]))).all()


def test_log_prob_raises_if_any_graph_action_is_masked():
    """One masked action among otherwise legal actions of a batch still raises ValueError."""
    logits, masks, batch, B = make_batch(3)
    cat = GraphActionCategorical(logits, masks, batch, B)
    entries, _ = brute_force(logits, masks, batch, B)
    actions = actions_covering_all(entries)[0].clone()
    # find some masked entry of graph B-1 and use it there
    for t in range(len(TYPES)):
        rows = (batch[t] == B - 1).nonzero().flatten().tolist()
        hits = [(local, c) for local, r in enumerate(rows) for c in range(logits[t].shape[1]) if not masks[t][r, c]]
        if hits:
            actions[B - 1] = torch.tensor([t, *hits[0]])
            break
    else:
        pytest.skip("graph has no masked entry")
    with pytest.raises(ValueError):
        cat.log_prob(actions)


# ---------------------------------------------------------------------------------------------
# 4. sampling frequencies
# ---------------------------------------------------------------------------------------------
N_SAMPLES = 20000


def _frequencies(logits, masks, epsilon, seed=0):
    rl, rm, rb, n = replicate(logits, masks, N_SAMPLES)
    cat = GraphActionCategorical(rl, rm, rb, n)
    a = cat.sample(epsilon, generator=torch.Generator().manual_seed(seed))
    # actions are local to each copy, so they index the single-graph layout directly
    codes = action_codes(a, logits)
    size = sum(l.numel() for l in logits)
    return torch.bincount(codes, minlength=size).double() / N_SAMPLES, cat


def test_sample_frequencies_match_probabilities():
    """Empirical frequencies of 20000 draws match exp(log_probs) (max diff and chi-square)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    logits, masks = single_graph()
    p, flat_m = flat_probs(logits, masks)
    freq, cat = _frequencies(logits, masks, 0.0)
    # the class' own probabilities for copy 0 agree with the brute force
    lp0 = torch.cat([lp[: l.shape[0]].reshape(-1) for lp, l in zip(cat.log_probs(), logits)])
    assert torch.allclose(lp0.exp().double(), p, atol=1e-6)
    assert bool((freq[~flat_m] == 0).all())
    assert float((freq - p).abs().max()) < 0.02
    counts = (freq[flat_m] * N_SAMPLES).round()
    res = scipy_stats.chisquare(counts.numpy(), (p[flat_m] * N_SAMPLES).numpy())
    assert res.pvalue > 1e-3


@pytest.mark.parametrize("epsilon", [0.25, 0.5, 1.0])
def test_epsilon_uniform_mixing_frequencies(epsilon):
    """With epsilon=e the frequency of each legal action is (1-e) p + e / num_legal."""
    logits, masks = single_graph()
    p, flat_m = flat_probs(logits, masks)
    n_legal = int(flat_m.sum())
    expected = torch.where(flat_m, (1 - epsilon) * p + epsilon / n_legal, torch.zeros_like(p))
    freq, _ = _frequencies(logits, masks, epsilon, seed=1)
    assert bool((freq[~flat_m] == 0).all())
    assert float((freq - expected).abs().max()) < 0.02


def test_epsilon_mixing_with_dominant_logit():
    """A logit of 1e4 takes all policy mass, so with epsilon=0.5 it gets 0.5 + 0.5/n, others 0.5/n."""
    logits, masks = single_graph()
    logits[2][1, 2] = 1e4
    logits[1][0, 1] = 2e4  # masked: must never win
    p, flat_m = flat_probs(logits, masks)
    n_legal = int(flat_m.sum())
    expected = torch.where(flat_m, 0.5 * p + 0.5 / n_legal, torch.zeros_like(p))
    freq, _ = _frequencies(logits, masks, 0.5, seed=2)
    assert freq.max() == freq[action_codes(torch.tensor([[2, 1, 2]]), logits)]
    assert bool((freq[~flat_m] == 0).all())
    assert float((freq - expected).abs().max()) < 0.02


def test_per_graph_epsilon_tensor():
    """epsilon as a [B] tensor: graphs with 0 follow the (peaked) policy, graphs with 1 are uniform."""
    logits, masks = single_graph()
    logits[2][1, 2] = 1e4
    rl, rm, rb, n = replicate(logits, masks, N_SAMPLES)
    eps = torch.zeros(n)
    eps[n // 2:] = 1.0
    cat = GraphActionCategorical(rl, rm, rb, n)
    a = cat.sample(eps, generator=torch.Generator().manual_seed(3))
    assert bool((a[: n // 2] == torch.tensor([2, 1, 2])).all())
    codes = action_codes(a[n // 2:], logits)
    size = sum(l.numel() for l in logits)
    freq = torch.bincount(codes, minlength=size).double() / (n - n // 2)
    _, flat_m = flat_probs(logits, masks)
    expected = flat_m.double() / flat_m.sum()
    assert float((freq - expected).abs().max()) < 0.025


def test_sample_frequencies_in_mixed_batch():
    """Sampling a batch of different graphs (incl. 0-node ones) matches each graph's own probabilities."""
    logits, masks, batch, B = make_batch(11, num_graphs=4)
    entries, lps = brute_force(logits, masks, batch, B)
    cat = GraphActionCategorical(logits, masks, batch, B)
    reps = 4000
    counts = [dict() for _ in range(B)]
    g = torch.Generator().manual_seed(5)
    # stack `reps` copies of the whole batch: graph b of copy j becomes graph j * B + b
    rl, rm, rb = [], [], []
    for l, m, b in zip(logits, masks, batch):
        rl.append(l.repeat(reps, 1))
        rm.append(m.repeat(reps, 1))
        rb.append((b[None, :] + B * torch.arange(reps)[:, None]).reshape(-1))
    big = GraphActionCategorical(rl, rm, rb, B * reps)
    a = big.sample(0.0, generator=g).view(reps, B, 3)
    for b in range(B):
        for act in a[:, b].tolist():
            counts[b][tuple(act)] = counts[b].get(tuple(act), 0) + 1
    for b in range(B):
        legal = {e[:3]: float(v.exp()) for e, v in zip(entries[b], lps[b])}
        assert set(counts[b]) <= set(legal)
        for act, prob in legal.items():
            assert abs(counts[b].get(act, 0) / reps - prob) < 0.03, (b, act)
    assert cat.sample(0.0, generator=g).shape == (B, 3)


# ---------------------------------------------------------------------------------------------
# 5. all-masked graphs
# ---------------------------------------------------------------------------------------------
def test_graph_with_every_action_masked_raises():
    """A graph whose every entry is masked raises ValueError at construction."""
    logits, masks, batch, B = make_batch(0)
    for t in range(len(TYPES)):
        masks[t][batch[t] == 2] = False
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch, B)


def test_graph_with_no_rows_at_all_raises():
    """A graph that owns no row of any type (num_graphs larger than the batch covers) raises."""
    logits = [torch.zeros(2, 1), torch.zeros(3, 2)]
    masks = [torch.ones(2, 1, dtype=torch.bool), torch.ones(3, 2, dtype=torch.bool)]
    batch = [torch.tensor([0, 2]), torch.tensor([0, 0, 2])]  # graph 1 has nothing
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch, 3)
    with pytest.raises(ValueError):  # a trailing graph with nothing
        GraphActionCategorical(logits, masks, [torch.tensor([0, 1]), torch.tensor([0, 0, 1])], 3)


def test_all_masked_single_graph_raises():
    """A single graph with all entries masked raises ValueError."""
    logits, masks = single_graph()
    masks = [torch.zeros_like(m) for m in masks]
    batch = [torch.zeros(l.shape[0], dtype=torch.long) for l in logits]
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch, 1)


# ---------------------------------------------------------------------------------------------
# 6. shape errors
# ---------------------------------------------------------------------------------------------
def _ok():
    logits, masks = single_graph()
    batch = [torch.zeros(l.shape[0], dtype=torch.long) for l in logits]
    return logits, masks, batch


def test_valid_inputs_construct():
    """The inputs the shape-error tests perturb are themselves valid."""
    GraphActionCategorical(*_ok(), 1)


def test_mismatched_list_lengths_raise():
    """logits, masks and batch with different numbers of types raise ValueError."""
    logits, masks, batch = _ok()
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks[:2], batch, 1)
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch[:2], 1)


def test_mask_shape_mismatch_raises():
    """A mask whose shape differs from its logits raises ValueError."""
    logits, masks, batch = _ok()
    masks[1] = masks[1][:, :1]
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch, 1)


def test_batch_shape_mismatch_raises():
    """A batch vector whose length differs from the number of rows raises ValueError."""
    logits, masks, batch = _ok()
    batch[2] = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError):
        GraphActionCategorical(logits, masks, batch, 1)


def test_3d_logits_raise():
    """3-D logits (with a matching 3-D mask) raise ValueError."""
    logits, masks, batch = _ok()
    bad = list(logits)
    bad[1] = logits[1][:, :, None]
    with pytest.raises(ValueError):
        GraphActionCategorical(bad, [m[:, :, None] if i == 1 else m for i, m in enumerate(masks)], batch, 1)


def test_1d_logits_raise_value_error():
    """1-D logits (with a matching 1-D mask) raise ValueError, not IndexError."""
    logits, masks, batch = _ok()
    bad = list(logits)
    bad[0] = logits[0].reshape(-1)
    with pytest.raises(ValueError):
        GraphActionCategorical(bad, [m.reshape(-1) if i == 0 else m for i, m in enumerate(masks)], batch, 1)


@pytest.mark.parametrize("shape", [(1, 2), (2, 3), (3,), (1, 3, 1), (0, 3)])
def test_log_prob_wrong_action_shape_raises(shape):
    """log_prob with actions not of shape [num_graphs, 3] raises ValueError."""
    cat = GraphActionCategorical(*_ok(), 1)
    with pytest.raises(ValueError):
        cat.log_prob(torch.zeros(shape, dtype=torch.long))


def test_action_type_validation():
    """ActionType rejects unknown levels and widths below 1."""
    assert ActionType("stop", "graph", 1).width == 1
    with pytest.raises(ValueError):
        ActionType("x", "hyperedge", 1)
    with pytest.raises(ValueError):
        ActionType("x", "node", 0)


# ---------------------------------------------------------------------------------------------
# 7. determinism
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_same_generator_seed_gives_same_samples(epsilon):
    """Two generators with the same seed give identical samples; another seed differs."""
    logits, masks, batch, B = make_batch(2, num_graphs=60)
    cat = GraphActionCategorical(logits, masks, batch, B)
    a1 = cat.sample(epsilon, generator=torch.Generator().manual_seed(42))
    a2 = cat.sample(epsilon, generator=torch.Generator().manual_seed(42))
    assert torch.equal(a1, a2)
    g = torch.Generator().manual_seed(42)
    seq1 = [cat.sample(epsilon, generator=g) for _ in range(3)]
    g = torch.Generator().manual_seed(42)
    seq2 = [cat.sample(epsilon, generator=g) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(seq1, seq2))
    others = [cat.sample(epsilon, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    assert any(not torch.equal(a1, o) for o in others)


def test_sampling_does_not_touch_global_rng_when_generator_given():
    """With an explicit generator, results do not depend on the global RNG state."""
    logits, masks, batch, B = make_batch(4, num_graphs=30)
    cat = GraphActionCategorical(logits, masks, batch, B)
    torch.manual_seed(1)
    a1 = cat.sample(0.5, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(2)
    a2 = cat.sample(0.5, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a1, a2)


def test_log_prob_out_of_range_action_raises():
    """A column past the width or a row past the graph's rows is an error, not another graph's action."""
    logits = [torch.zeros(1, 1), torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.zeros(1, 2)]
    masks = [torch.ones_like(x, dtype=torch.bool) for x in logits]
    batch = [torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([1])]
    cat = GraphActionCategorical(logits, masks, batch, 2)
    for bad in ([[1, 0, 2], [0, 0, 0]], [[1, 1, 0], [0, 0, 0]], [[5, 0, 0], [0, 0, 0]], [[1, -1, 0], [0, 0, 0]]):
        with pytest.raises(ValueError, match="out of range"):
            cat.log_prob(torch.tensor(bad))
