"""One conformance suite for every environment (the contract of :class:`lgfn_graph.envs.Env`).

Each test runs on every factory in :data:`ENVS`; a new environment is checked by adding one
line there. The references are brute force: legal actions are read entry by entry from the
masks and confirmed by the environment's own checked ``step`` / ``backward_step``; the state
containers are compared with plain Python lists of their rows.
"""
from __future__ import annotations

import io
import json
import random
from dataclasses import fields
from functools import lru_cache

import pytest
import torch

from lgfn_graph import AtomEnv, FragmentEnv, FragmentLibrary
from lgfn_graph.envs import Env, PaddedStates
from lgfn_graph.task import TINY_FRAGMENTS, TaskConfig, build_env

#: name -> factory of a small environment; one line per environment.
ENVS = {
    "qed_frag": lambda: build_env(TaskConfig("qed_frag")),
    "tiny_frag": lambda: FragmentEnv(FragmentLibrary.from_pairs(TINY_FRAGMENTS, name="tiny"), 3, min_fragments=2),
    "atom": lambda: AtomEnv(("C", "N", "O"), max_atoms=5),
}

WALKS, SAMPLED = 6, 8  # random walks per environment; entries checked per state and mask


@lru_cache(maxsize=None)
def make(name: str) -> Env:
    return ENVS[name]()


@pytest.fixture(params=list(ENVS))
def name(request) -> str:
    return request.param


# -- brute-force helpers ---------------------------------------------------------------------------
def row_graphs(data, level: str, B: int) -> list[int]:
    """The graph of each row of a ``level``-level action type, read off the graph batch."""
    if level == "graph":
        return list(range(B))
    if level == "node":
        return data.batch.tolist()
    return data.batch[data.action_edge_index[0]].tolist()


def entries(env: Env, states, backward: bool = False) -> tuple[list[list[tuple]], list[list[tuple]]]:
    """Per state, every ``(type, row, col)`` its masks allow and every one they forbid, with
    ``row`` counted within the state's rows of that type. Checks the masks' shapes on the way."""
    types = env.backward_action_types if backward else env.forward_action_types
    masks = env.backward_masks(states) if backward else env.forward_masks(states)
    data = env.to_graph(states)
    B = len(states)
    assert len(masks) == len(types)
    legal, illegal = [[] for _ in range(B)], [[] for _ in range(B)]
    for t, (ty, m) in enumerate(zip(types, masks)):
        g = row_graphs(data, ty.level, B)
        assert m.dtype == torch.bool and tuple(m.shape) == (len(g), ty.width), (ty, m.shape, len(g))
        assert g == sorted(g), f"rows of {ty.name} are not grouped by graph"
        first: dict[int, int] = {}
        for r, (gr, row) in enumerate(zip(g, m.tolist())):
            local = r - first.setdefault(gr, r)
            for c, ok in enumerate(row):
                (legal if ok else illegal)[gr].append((t, local, c))
    return legal, illegal


def action(a: tuple) -> torch.Tensor:
    return torch.tensor([a], dtype=torch.long)


def rows(states: PaddedStates) -> list[tuple]:
    """Each state as a tuple of its fields' rows (Python lists)."""
    cols = [getattr(states, f.name).tolist() for f in fields(states)]
    return [tuple(repr(c[i]) for c in cols) for i in range(len(states))]


@lru_cache(maxsize=None)
def walks(name: str):
    """Random walks by uniformly drawn legal forward actions, in one batch, until each stops.

    Returns ``(visited, acted, actions, children)``: every state visited (initial and terminal
    included), and for every non-stop step its state, action and result.
    """
    env, rng = make(name), random.Random(f"walks-{name}")
    s = env.initial(WALKS)
    visited, acted, actions, children = [s], [], [], []
    for _ in range(env.max_steps):
        legal, _ = entries(env, s)
        assert all(legal), "a state before the stop has no legal action"
        a = torch.tensor([rng.choice(opts) for opts in legal], dtype=torch.long)
        nxt, stop = env.step(s, a), env.is_stop(a)
        assert bool(nxt[stop].equal(s[stop]).all()) and bool(env.can_stop(s[stop]).all())
        go = (~stop).nonzero().flatten()
        acted.append(s[go])
        actions.append(a[go])
        children.append(nxt[go])
        s = nxt[go]
        if not len(s):
            break
        visited.append(s)
    else:
        raise AssertionError(f"walks did not stop within max_steps={env.max_steps}")
    cat = env.states_type.cat
    return cat(visited), cat(acted), torch.cat(actions), cat(children)


# -- the contract ----------------------------------------------------------------------------------
def test_declared_members(name):
    env = make(name)
    assert isinstance(env, Env) and Env.from_spec(env.spec()).kind == env.kind
    for attr in ("node_dim", "edge_dim", "max_degree", "max_steps"):
        assert isinstance(getattr(env, attr), int) and getattr(env, attr) >= 1, attr
    assert env.forward_action_types and env.backward_action_types
    assert isinstance(env.size_name, str) and env.size_name
    s = env.initial(3)
    assert type(s) is env.states_type and issubclass(env.states_type, PaddedStates) and len(s) == 3
    assert env.size(s).dtype == torch.long and env.size(s).shape == (3,)
    assert env.num_parents(s).tolist() == [0, 0, 0]


def test_stop_is_where_the_env_says(name):
    env = make(name)
    stop = env.forward_action_types[env.stop_type]
    assert (stop.level, stop.width) == ("graph", 1)
    visited = walks(name)[0]
    assert torch.equal(env.can_stop(visited), env.forward_masks(visited)[env.stop_type][:, 0])
    assert not bool(env.can_stop(env.initial(1)).any())  # the empty state is not a molecule
    a = env.stop_actions(4)
    assert a.dtype == torch.long and a.shape == (4, 3) and bool(env.is_stop(a).all())
    others = torch.tensor([[t, 0, 0] for t in range(len(env.forward_action_types)) if t != env.stop_type])
    assert not bool(env.is_stop(others).any())
    terminal = visited[env.can_stop(visited).nonzero().flatten()]
    assert len(terminal) > 0
    assert bool(env.step(terminal, env.stop_actions(len(terminal))).equal(terminal).all())


def test_forward_masks_agree_with_checked_step(name):
    env, rng = make(name), random.Random(f"fwd-{name}")
    visited = walks(name)[0]
    legal, illegal = entries(env, visited)
    for i in range(len(visited)):
        one = visited[i]
        for a in rng.sample(legal[i], min(SAMPLED, len(legal[i]))):
            child = env.step(one, action(a))
            if not bool(env.is_stop(action(a))):
                assert int(env.num_parents(child)[0]) > 0 and env.canonical_key(child, 0) is not None
        for a in rng.sample(illegal[i], min(SAMPLED, len(illegal[i]))):
            with pytest.raises(ValueError):
                env.step(one, action(a))


def test_walks_end_within_max_steps_in_terminal_states(name):
    env = make(name)
    visited, acted, actions, children = walks(name)
    assert len(acted) == len(actions) == len(children)
    assert bool(env.step(acted, actions, check=False).equal(children).all())
    single = env.states_type.cat([env.step(acted[i], actions[i:i + 1]) for i in range(len(acted))])
    assert bool(single.equal(children).all())  # a batched step is the steps one at a time


def test_backward_step_inverts_step_up_to_numbering(name):
    env, rng = make(name), random.Random(f"bwd-{name}")
    visited = walks(name)[0]
    legal, illegal = entries(env, visited, backward=True)
    assert env.num_parents(visited).tolist() == [len(x) for x in legal]
    for i in range(len(visited)):
        one, key = visited[i], env.canonical_key(visited, i)
        for b in rng.sample(legal[i], min(SAMPLED, len(legal[i]))):
            parent, fwd = env.backward_step(one, action(b))
            assert fwd.dtype == torch.long and fwd.shape == (1, 3) and not bool(env.is_stop(fwd).any())
            assert env.canonical_key(env.step(parent, fwd), 0) == key  # fwd is legal at the parent
        for b in rng.sample(illegal[i], min(SAMPLED, len(illegal[i]))):
            with pytest.raises(ValueError):
                env.backward_step(one, action(b))
    # a batched backward step is the steps one at a time
    has = (env.num_parents(visited) > 0).nonzero().flatten()
    b = torch.tensor([rng.choice(legal[i]) for i in has.tolist()])
    parents, fwd = env.backward_step(visited[has], b)
    for k, i in enumerate(has.tolist()):
        p1, f1 = env.backward_step(visited[i], b[k:k + 1])
        assert bool(p1.equal(parents[k]).all()) and torch.equal(f1, fwd[k:k + 1])


def test_backward_actions_undo_forward_actions(name):
    env = make(name)
    _, acted, actions, children = walks(name)
    if not env.has_backward_actions:
        with pytest.raises(NotImplementedError, match=type(env).__name__):
            env.backward_actions(acted, actions)
        return
    b = env.backward_actions(acted, actions)
    assert b.dtype == torch.long and b.shape == (len(acted), 3)
    legal, _ = entries(env, children, backward=True)
    assert all(tuple(x) in legal[i] for i, x in enumerate(b.tolist()))
    parents, _ = env.backward_step(children, b)
    assert [env.canonical_key(parents, i) for i in range(len(parents))] == \
        [env.canonical_key(acted, i) for i in range(len(acted))]


def test_graphs_match_the_declared_dimensions(name):
    env = make(name)
    visited = walks(name)[0]
    g, B = env.to_graph(visited), len(visited)
    n = int(g.ptr[-1])
    assert g.x.dtype == torch.float32 and tuple(g.x.shape) == (n, env.node_dim)
    assert g.edge_index.dtype == torch.long and g.edge_index.shape[0] == 2
    assert tuple(g.edge_attr.shape) == (g.edge_index.shape[1], env.edge_dim)
    assert g.ptr.shape == (B + 1,) and g.batch.tolist() == sorted(g.batch.tolist()) and g.batch.shape == (n,)
    assert torch.equal(g.batch[g.edge_index[0]], g.batch[g.edge_index[1]])  # edges stay inside a graph
    assert int(torch.bincount(g.edge_index[1], minlength=n).max()) <= env.max_degree
    for i in (0, B // 2, B - 1):
        d, one = env.to_data(visited, i), env.to_graph(visited[i])
        assert torch.equal(d.x, one.x) and torch.equal(d.edge_index, one.edge_index)
        assert torch.equal(d.edge_attr, one.edge_attr)


def test_terminal_chemistry_and_hooks(name):
    from rdkit import Chem

    env = make(name)
    visited = walks(name)[0]
    terminal = visited[env.can_stop(visited).nonzero().flatten()]
    smiles = env.to_smiles(terminal)
    assert smiles == [Chem.MolToSmiles(env.to_mol(terminal, i)) for i in range(len(terminal))]
    for hook in (env.log_reward_correction, env.log_automorphisms):
        x = hook(terminal)
        assert x.shape == (len(terminal),) and x.dtype.is_floating_point and bool(torch.isfinite(x).all())
    assert bool((env.log_automorphisms(terminal) >= 0).all())


def test_spec_round_trip(name):
    env = make(name)
    spec = env.spec()
    assert spec["kind"] == env.kind
    assert Env.from_spec(json.loads(json.dumps(spec))).spec() == spec  # plain JSON data is enough
    buf = io.BytesIO()
    torch.save(spec, buf)  # a checkpoint stores the spec: plain data that loads weights-only
    assert torch.load(io.BytesIO(buf.getvalue()), weights_only=True) == spec
    again = Env.from_spec(spec)
    assert type(again) is type(env) and again.spec() == spec
    assert again.forward_action_types == env.forward_action_types
    assert again.backward_action_types == env.backward_action_types
    assert [getattr(again, a) for a in ("node_dim", "edge_dim", "max_degree", "max_steps")] == \
        [getattr(env, a) for a in ("node_dim", "edge_dim", "max_degree", "max_steps")]
    visited = walks(name)[0]
    for get in (lambda e: e.forward_masks(visited), lambda e: e.backward_masks(visited)):
        assert all(torch.equal(a, b) for a, b in zip(get(again), get(env)))
    assert torch.equal(again.to_graph(visited).x, env.to_graph(visited).x)
    assert Env.describe_spec(spec) == type(env)._describe(spec)


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown environment kind 'nope'") as e:
        Env.from_spec({"kind": "nope"})
    assert all(repr(kind) in str(e.value) for kind in Env._registry)
    assert set(Env._registry) >= {make(n).kind for n in ENVS}


def test_state_containers_agree_with_python_lists(name):
    env = make(name)
    visited = walks(name)[0]
    ref, B = rows(visited), len(visited)
    g = torch.Generator().manual_seed(0)
    assert len(visited) == B
    assert rows(visited[3]) == [ref[3]] and rows(visited[-1]) == [ref[-1]] and rows(visited[-2]) == [ref[-2]]
    assert rows(visited[2:7]) == ref[2:7]
    idx = torch.randint(B, (11,), generator=g)  # repeats allowed
    assert rows(visited[idx]) == [ref[i] for i in idx.tolist()]
    mask = torch.rand(B, generator=g) < 0.5
    assert rows(visited[mask]) == [r for r, m in zip(ref, mask.tolist()) if m]
    # cat
    parts = [visited[:3], visited[3:3], visited[3:]]
    assert rows(env.states_type.cat(parts)) == ref
    # clone shares no memory; put overwrites in place
    c = visited.clone()
    assert rows(c) == ref
    for f in fields(c):
        assert getattr(c, f.name).data_ptr() != getattr(visited, f.name).data_ptr()
    put_at = torch.randperm(B, generator=g)[:5]
    src = visited[torch.randint(B, (5,), generator=g)]
    c.put(put_at, src)
    want = list(ref)
    for k, i in enumerate(put_at.tolist()):
        want[i] = rows(src)[k]
    assert rows(c) == want and rows(visited) == ref
    # equal: row-wise equality
    perm = torch.randperm(B, generator=g)
    assert env.states_type.equal(visited, visited[perm]).tolist() == [ref[i] == ref[j] for i, j in
                                                                     enumerate(perm.tolist())]
