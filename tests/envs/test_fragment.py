"""FragmentEnv against brute-force, loop-based references.

Random legal trajectories are driven by hypothesis (actions are picked by index from the legal
set that :meth:`FragmentEnv.forward_masks` offers) and every intermediate batch is checked
against Python re-implementations of the rules: which actions are legal, what the tree looks
like, which stems are used, what the model graph is, what a parent is.

The public libraries are read in place from ``/work/shared/data/fragments``; their tests skip
when that folder is absent.
"""
from __future__ import annotations

import functools
import itertools
import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from torch_geometric.data import Batch, Data

from lgfn_graph.envs.fragment import ADD_FIRST, ATTACH, REMOVE, STOP, FragmentEnv, FragmentStates
from lgfn_graph.fragments import FragmentLibrary

FRAG_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "fragments"
LIB_FILES = {"18": "fragments_18.json", "72": "fragments_72.json", "105": "blocks_PDB_105.json"}

# no "explain" phase and one bug at a time: a failure is reported in seconds, not minutes
def props(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, print_blob=True,
                    report_multiple_bugs=False, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@functools.lru_cache(maxsize=None)
def _load(name: str) -> FragmentLibrary:
    if name == "default":
        return FragmentLibrary.default()
    if name == "tiny":  # few labels, so random trees are often isomorphic
        return FragmentLibrary.from_pairs([("C", [0, 0, 0]), ("O", [0, 0]), ("F", [0])], name="tiny")
    return FragmentLibrary.from_json(FRAG_DIR / LIB_FILES[name])


def library(name: str) -> FragmentLibrary:
    if name in LIB_FILES and not (FRAG_DIR / LIB_FILES[name]).is_file():
        pytest.skip(f"public fragment file {FRAG_DIR / LIB_FILES[name]} not present")
    return _load(name)


# ---------------------------------------------------------------------------------------------
# brute-force references
# ---------------------------------------------------------------------------------------------
def n_stems(env: FragmentEnv, f: int) -> int:
    return len(env.library.fragments[f].attachment_atoms)


def used_stems(bonds) -> set[tuple[int, int]]:
    out = set()
    for u, v, su, sv in bonds:
        out |= {(u, su), (v, sv)}
    return out


def degrees(n: int, bonds) -> list[int]:
    deg = [0] * n
    for u, v, _, _ in bonds:
        deg[u] += 1
        deg[v] += 1
    return deg


def brute_legal(env: FragmentEnv, frags, bonds) -> set[tuple[int, int, int]]:
    """Every legal forward action (type, local row, col) of one state, from the rules."""
    n, T = len(frags), env.T
    used = used_stems(bonds)
    acts = set()
    if n >= env.min_fragments:
        acts.add((STOP, 0, 0))
    if n == 0:
        acts |= {(ADD_FIRST, 0, f) for f in range(env.F)}
    if 0 < n < env.max_fragments:
        n_free = sum(n_stems(env, f) for f in frags) - len(used)
        # below min_fragments a bond must leave a free stem, else the tree could neither stop nor grow
        ok_t = [t for t in range(T) if n + 1 >= env.min_fragments
                or n_free - 1 + n_stems(env, int(env.library.stem_frag[t])) - 1 >= 1]
        for i, f in enumerate(frags):
            for k in range(n_stems(env, f)):
                if (i, k) not in used:
                    acts |= {(ATTACH, i, k * T + t) for t in ok_t}
    return acts


def legal_actions(env: FragmentEnv, states: FragmentStates) -> list[list[tuple[int, int, int]]]:
    """The legal forward actions of each state, read off the masks (sorted)."""
    masks = env.forward_masks(states)
    g = env.to_graph(states)
    B = len(states)
    assert len(masks) == len(env.forward_action_types) == 3
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(B)]
    for t, (at, m) in enumerate(zip(env.forward_action_types, masks)):
        assert m.dtype == torch.bool
        if at.level == "graph":
            assert m.shape == (B, at.width)
            for b, c in m.nonzero().tolist():
                out[b].append((t, 0, c))
        else:
            assert m.shape == (g.num_nodes, at.width)
            for r, c in m.nonzero().tolist():
                b = int(g.batch[r])
                out[b].append((t, r - int(g.ptr[b]), c))
    return [sorted(a) for a in out]


def leaves(frags, bonds) -> list[int]:
    n = len(frags)
    return [i for i, d in enumerate(degrees(n, bonds)) if d <= 1] if n else []


def remove_leaf(frags, bonds, leaf):
    """The tree without ``leaf``, nodes after it renumbered down by one."""
    ren = lambda i: i - (i > leaf)  # noqa: E731
    return ([f for i, f in enumerate(frags) if i != leaf],
            [(ren(u), ren(v), su, sv) for u, v, su, sv in bonds if leaf not in (u, v)])


def isomorphic(frags_a, bonds_a, frags_b, bonds_b) -> bool:
    """Labelled-tree isomorphism by trying every node bijection (small trees only)."""
    if sorted(frags_a) != sorted(frags_b) or len(bonds_a) != len(bonds_b):
        return False
    half = lambda bonds: {frozenset([(u, su), (v, sv)]) for u, v, su, sv in bonds}  # noqa: E731
    target = half(bonds_b)
    n = len(frags_a)
    for perm in itertools.permutations(range(n)):
        if any(frags_a[i] != frags_b[perm[i]] for i in range(n)):
            continue
        if half([(perm[u], perm[v], su, sv) for u, v, su, sv in bonds_a]) == target:
            return True
    return False


def reference_data(env: FragmentEnv, frags, bonds) -> Data:
    """The model graph of one state, by explicit loops."""
    used = used_stems(bonds)
    x = torch.zeros(len(frags), env.F + env.S)
    for i, f in enumerate(frags):
        x[i, f] = 1.0
        for k in range(env.S):
            x[i, env.F + k] = float((i, k) in used)
    src, dst, attr = [], [], []
    for u, v, su, sv in bonds:
        for a, b, sa, sb in ((u, v, su, sv), (v, u, sv, su)):
            src.append(a)
            dst.append(b)
            row = [0.0] * (2 * env.S)
            row[sa] = 1.0
            row[env.S + sb] = 1.0
            attr.append(row)
    return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                edge_attr=torch.tensor(attr, dtype=torch.float).reshape(-1, 2 * env.S))


def edge_set(edge_index, edge_attr) -> list[tuple]:
    return sorted(tuple(e) + tuple(a) for e, a in zip(edge_index.t().tolist(), edge_attr.tolist()))


def check_state(env: FragmentEnv, states: FragmentStates, i: int) -> None:
    """Every structural invariant of state ``i``, by loops."""
    N, S = env.max_fragments, env.S
    assert states.frag.shape == (len(states), N) and states.stem_used.shape == (len(states), N, S)
    assert states.edges.shape == (len(states), max(N - 1, 0), 4)
    n = int(states.n[i])
    assert 0 <= n <= N
    frags, bonds = states.fragments(i), states.bonds(i)
    assert all(0 <= f < env.F for f in frags)
    assert states.frag[i, n:].tolist() == [-1] * (N - n)
    assert len(bonds) == max(n - 1, 0)
    assert (states.edges[i, len(bonds):] == -1).all()
    for u, v, su, sv in bonds:
        assert 0 <= u < n and 0 <= v < n and u != v
        assert 0 <= su < n_stems(env, frags[u]) and 0 <= sv < n_stems(env, frags[v])
    used = used_stems(bonds)
    assert len(used) == 2 * len(bonds), "a stem carries two bonds"
    expect = [[(j, k) in used for k in range(S)] for j in range(N)]
    assert states.stem_used[i].tolist() == expect
    assert env.canonical_key(states, i) is not None  # connected tree
    assert int(env.num_parents(states[i])) == len(leaves(frags, bonds))


def check_masks(env: FragmentEnv, states: FragmentStates, legal, rng: random.Random, n_bad: int = 6) -> None:
    """Masks equal the rule-based legal set; legal actions step, illegal ones raise."""
    B = len(states)
    for i in range(B):
        frags, bonds = states.fragments(i), states.bonds(i)
        n = len(frags)
        got = set(legal[i])
        assert got == brute_legal(env, frags, bonds)
        types = {a[0] for a in got}
        if n == 0:
            assert types == {ADD_FIRST}
        if n == env.max_fragments:
            assert got == {(STOP, 0, 0)}
        assert ((STOP, 0, 0) in got) == (n >= env.min_fragments)
        # every legal action is accepted (all at once, on copies of state i)
        acts = torch.tensor(legal[i], dtype=torch.long)
        children = env.step(states[torch.full((len(acts),), i)], acts)
        non_stop = acts[:, 0] != STOP
        assert (children.n == n + non_stop.long()).all()
        # illegal actions: masked entries inside the mask's index space, and out-of-range ones
        widths = [at.width for at in env.forward_action_types]
        bad = set()
        for _ in range(40):
            t = rng.randrange(3)
            row = 0 if t != ATTACH else rng.randrange(max(n, 1))
            a = (t, row, rng.randrange(widths[t]))
            if a not in got and (t != ATTACH or n > 0):
                bad.add(a)
        bad = rng.sample(sorted(bad), min(n_bad, len(bad)))
        bad += [(ATTACH, n, 0), (ATTACH, -1, 0), (ATTACH, 0, -1), (ATTACH, 0, widths[ATTACH]),
                (ADD_FIRST, 0, env.F), (ADD_FIRST, 0, -1), (3, 0, 0), (-1, 0, 0)]
        for a in bad:
            if a in got:
                continue
            with pytest.raises(ValueError):
                env.step(states[i], torch.tensor([a]))
        # one bad action in a batch of good ones also raises
        if bad and B > 1:
            acts = torch.tensor([legal[j][0] for j in range(B)])
            acts[i] = torch.tensor(bad[0])
            with pytest.raises(ValueError):
                env.step(states, acts)


def check_step_backward(env: FragmentEnv, states: FragmentStates, i: int, legal_i) -> None:
    """Every non-stop legal action of state ``i`` is undone exactly by removing the new node."""
    acts = torch.tensor([a for a in legal_i if a[0] != STOP], dtype=torch.long)
    if not len(acts):
        return
    k = len(acts)
    parents = states[torch.full((k,), i)]
    children = env.step(parents, acts)
    n = int(states.n[i])
    new = torch.full((k,), n)
    assert (env.degree(children)[torch.arange(k), new] == (1 if n else 0)).all()
    back = torch.stack([torch.full((k,), REMOVE), new, torch.zeros(k, dtype=torch.long)], 1)
    bm = env.backward_masks(children)[0]
    g = env.to_graph(children)
    assert bm[g.ptr[:-1] + new].all()  # the new node is a legal removal
    got, fwd = env.backward_step(children, back)
    assert got.equal(parents).all()
    assert torch.equal(fwd, acts)
    # the children themselves are valid trees with one more fragment
    for j in random.Random(k).sample(range(k), min(k, 4)):
        check_state(env, children, j)
        assert children.fragments(j)[:n] == states.fragments(i)


def check_all_leaves(env: FragmentEnv, states: FragmentStates, i: int) -> None:
    """Removing each leaf gives the brute-force parent; re-adding it gives the child back."""
    frags, bonds = states.fragments(i), states.bonds(i)
    lv = leaves(frags, bonds)
    mask = env.backward_masks(states[i])[0]
    assert mask.shape == (len(frags), 1)
    assert mask[:, 0].nonzero().flatten().tolist() == lv
    if not lv:
        return
    k = len(lv)
    child = states[torch.full((k,), i)]
    acts = torch.tensor([[REMOVE, leaf, 0] for leaf in lv])
    parents, fwd = env.backward_step(child, acts)
    key = env.canonical_key(states, i)
    again = env.step(parents, fwd)
    for j, leaf in enumerate(lv):
        check_state(env, parents, j)
        pf, pb = remove_leaf(frags, bonds, leaf)
        assert parents.fragments(j) == pf
        assert sorted(map(frozenset, [((u, su), (v, sv)) for u, v, su, sv in parents.bonds(j)])) == \
            sorted(map(frozenset, [((u, su), (v, sv)) for u, v, su, sv in pb]))
        assert fwd[j, 0] == (ADD_FIRST if len(frags) == 1 else ATTACH)
        assert env.canonical_key(again, j) == key
    # non-leaves are refused
    for node in range(len(frags)):
        if node not in lv:
            with pytest.raises(ValueError):
                env.backward_step(states[i], torch.tensor([[REMOVE, node, 0]]))
    for bad in ([REMOVE, len(frags), 0], [REMOVE, -1, 0], [1, lv[0], 0]):
        with pytest.raises(ValueError):
            env.backward_step(states[i], torch.tensor([bad]))


def check_graph(env: FragmentEnv, states: FragmentStates) -> None:
    """to_graph and to_data against per-state reference graphs collated by PyG."""
    refs = [reference_data(env, states.fragments(i), states.bonds(i)) for i in range(len(states))]
    ref = Batch.from_data_list(refs)
    g = env.to_graph(states)
    assert g.x.shape == (int(states.n.sum()), env.node_dim)
    assert torch.equal(g.x, ref.x)
    assert torch.equal(g.batch, ref.batch)
    assert torch.equal(g.ptr, ref.ptr)
    assert g.edge_attr.shape[1] == env.edge_dim
    assert edge_set(g.edge_index, g.edge_attr) == edge_set(ref.edge_index, ref.edge_attr)
    for i in range(len(states)):
        d = env.to_data(states, i)
        assert torch.equal(d.x, refs[i].x)
        assert edge_set(d.edge_index, d.edge_attr) == edge_set(refs[i].edge_index, refs[i].edge_attr)


def random_tree(env: FragmentEnv, n: int, rng: random.Random):
    """A random tree of at most ``n`` fragments in arbitrary node order and bond orientation."""
    if n == 0:
        return [], []
    frags, bonds = [rng.randrange(env.F)], []
    free = [(0, k) for k in range(n_stems(env, frags[0]))]
    while len(frags) < n and free:
        u, su = free.pop(rng.randrange(len(free)))
        f = rng.randrange(env.F)
        sv = rng.randrange(n_stems(env, f))
        v = len(frags)
        frags.append(f)
        bonds.append((u, v, su, sv))
        free += [(v, k) for k in range(n_stems(env, f)) if k != sv]
    return relabel(frags, bonds, rng)


def relabel(frags, bonds, rng: random.Random):
    """The same tree with nodes permuted, bonds shuffled and randomly flipped."""
    perm = list(range(len(frags)))
    rng.shuffle(perm)
    new_frags = [0] * len(frags)
    for i, p in enumerate(perm):
        new_frags[p] = frags[i]
    new_bonds = [(perm[u], perm[v], su, sv) if rng.random() < 0.5 else (perm[v], perm[u], sv, su)
                 for u, v, su, sv in bonds]
    rng.shuffle(new_bonds)
    return new_frags, new_bonds


def random_trees_batch(env: FragmentEnv, B: int, rng: random.Random) -> FragmentStates:
    return FragmentStates.cat([env.from_tree(*random_tree(env, rng.randint(0, env.max_fragments), rng))
                               for _ in range(B)])


def pick(data, legal_i, label=""):
    """Choose one legal action: stop a quarter of the time when allowed, else any other."""
    stops = [a for a in legal_i if a[0] == STOP]
    rest = [a for a in legal_i if a[0] != STOP]
    if stops and (not rest or data.draw(st.integers(0, 3), label=f"stop?{label}") == 0):
        return stops[0]
    return rest[data.draw(st.integers(0, len(rest) - 1), label=f"action{label}")]


# ---------------------------------------------------------------------------------------------
# random trajectories
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib_name", ["default", "18", "72"])
@props(30)
@given(data=st.data(), max_fragments=st.integers(3, 6), batch=st.integers(1, 4))
def test_random_trajectories(lib_name, data, max_fragments, batch):
    lib = library(lib_name)
    min_fragments = data.draw(st.integers(1, max_fragments), label="min_fragments")
    env = FragmentEnv(lib, max_fragments=max_fragments, min_fragments=min_fragments)
    rng = random.Random(data.draw(st.integers(0, 2**16), label="seed"))
    states = env.initial(batch)
    assert (states.n == 0).all()
    for step in range(max_fragments + 2):
        for i in range(len(states)):
            check_state(env, states, i)
        legal = legal_actions(env, states)
        assert all(legal), "a reachable state has no legal action (a dead end)"
        check_masks(env, states, legal, rng)
        check_graph(env, states)
        i = data.draw(st.integers(0, batch - 1), label="probe")
        check_step_backward(env, states, i, legal[i])
        check_all_leaves(env, states, i)
        acts = torch.tensor([pick(data, legal[b], f"[{b}]") for b in range(batch)])
        new = env.step(states, acts)
        # the batched step equals the state-by-state step
        for b in range(batch):
            assert new[b].equal(env.step(states[b], acts[b:b + 1])).all()
            if acts[b, 0] == STOP:
                assert new[b].equal(states[b]).all()
        assert (states.n <= new.n).all()  # the input batch was not modified in place
        states = new


@pytest.mark.parametrize("lib_name", ["default", "72", "105"])
@props(25)
@given(data=st.data(), max_fragments=st.integers(1, 6))
def test_mixed_batch(lib_name, data, max_fragments):
    """backward_step on a batch mixing sizes (1 fragment, many, arbitrary node order) equals
    state-by-state calls, and the forward action rebuilds each child up to isomorphism; masks,
    graphs and step on the same batch with empty states added."""
    lib = library(lib_name)
    env = FragmentEnv(lib, max_fragments=max_fragments)
    rng = random.Random(data.draw(st.integers(0, 2**16), label="seed"))
    trees = [random_tree(env, rng.randint(1, max_fragments), rng) for _ in range(6)]
    states = FragmentStates.cat([env.from_tree(f, b) for f, b in trees])
    for i in range(len(states)):
        check_state(env, states, i)
        assert env.canonical_key(states, i) == env.canonical_key(env.from_tree(*trees[i]), 0)
    lv = [data.draw(st.sampled_from(leaves(*t)), label=f"leaf[{i}]") for i, t in enumerate(trees)]
    acts = torch.tensor([[REMOVE, leaf, 0] for leaf in lv])
    parents, fwd = env.backward_step(states, acts)
    for i in range(len(states)):
        p1, f1 = env.backward_step(states[i], acts[i:i + 1])
        assert p1.equal(parents[i]).all() and torch.equal(f1[0], fwd[i])
        check_state(env, parents, i)
    rebuilt = env.step(parents, fwd)
    for i in range(len(states)):
        assert env.canonical_key(rebuilt, i) == env.canonical_key(states, i)
    # num_parents and backward masks against brute force, on the whole batch
    assert env.num_parents(states).tolist() == [len(leaves(*t)) for t in trees]
    for i in range(len(states)):
        check_all_leaves(env, states, i)
    # forward: masks, graphs and one step on the same batch plus two empty states
    states = FragmentStates.cat([env.initial(1), states, env.initial(1)])
    legal = legal_actions(env, states)
    check_masks(env, states, legal, rng, n_bad=3)
    check_graph(env, states)
    acts = torch.tensor([pick(data, legal[b], f"[{b}]") for b in range(len(states))])
    new = env.step(states, acts)
    for b in range(len(states)):
        assert new[b].equal(env.step(states[b], acts[b:b + 1])).all()
        check_state(env, new, b)
    check_graph(env, new)


def test_no_dead_end_with_min_fragments():
    lib = FragmentLibrary.default()
    env = FragmentEnv(lib, max_fragments=3, min_fragments=3)
    s = env.step(env.initial(1), torch.tensor([[ADD_FIRST, 0, 15]]))  # 'F', one stem
    a = (ATTACH, 0, 0 * env.T + int(lib.stem_id[15, 0]))  # F-F: stop needs 3 fragments, no stem left
    assert a not in legal_actions(env, s)[0]
    with pytest.raises(ValueError):
        env.step(s, torch.tensor([a]))
    ok = (ATTACH, 0, int(lib.stem_id[0, 0]))  # F-benzene keeps three free stems
    assert ok in legal_actions(env, s)[0]
    assert legal_actions(env, env.step(s, torch.tensor([ok])))[0]


def test_initial_and_empty_state():
    env = FragmentEnv(FragmentLibrary.default(), max_fragments=4, min_fragments=2)
    s = env.initial(3)
    assert len(s) == 3 and s.n.tolist() == [0, 0, 0]
    assert (s.frag == -1).all() and (s.edges == -1).all() and not s.stem_used.any()
    legal = legal_actions(env, s)
    assert all(a == [(ADD_FIRST, 0, f) for f in range(env.F)] for a in legal)
    assert env.num_parents(s).tolist() == [0, 0, 0]
    assert env.backward_masks(s)[0].shape == (0, 1)
    assert env.canonical_key(s, 0) == "()"
    assert env.to_smiles(s) == ["", "", ""]
    with pytest.raises(ValueError):
        env.step(s, torch.tensor([[STOP, 0, 0]] * 3))
    with pytest.raises(ValueError):  # wrong shape
        env.step(s, torch.tensor([[ADD_FIRST, 0, 0]] * 2))
    with pytest.raises(ValueError):
        env.backward_step(s[0], torch.tensor([[REMOVE, 0, 0]]))


@pytest.mark.parametrize("max_fragments", [1, 2])
def test_tiny_max_fragments(max_fragments):
    env = FragmentEnv(FragmentLibrary.default(), max_fragments=max_fragments)
    s = env.step(env.initial(2), torch.tensor([[ADD_FIRST, 0, 0], [ADD_FIRST, 0, 14]]))
    rng = random.Random(0)
    legal = legal_actions(env, s)
    check_masks(env, s, legal, rng)
    check_graph(env, s)
    for i in range(2):
        check_state(env, s, i)
        check_step_backward(env, s, i, legal[i])
        check_all_leaves(env, s, i)
    if max_fragments == 1:
        assert legal == [[(STOP, 0, 0)], [(STOP, 0, 0)]]
    else:
        s2 = env.step(s, torch.tensor([[ATTACH, 0, 3 * env.T + 0], [ATTACH, 0, 1 * env.T + 5]]))
        for i in range(2):
            check_state(env, s2, i)
        assert legal_actions(env, s2) == [[(STOP, 0, 0)], [(STOP, 0, 0)]]
        check_graph(env, s2)


def test_constructor_validation():
    lib = FragmentLibrary.default()
    for mx, mn in [(0, 1), (3, 0), (3, 4)]:
        with pytest.raises(ValueError):
            FragmentEnv(lib, max_fragments=mx, min_fragments=mn)
    env = FragmentEnv(lib, max_fragments=5)
    assert [(a.name, a.level, a.width) for a in env.forward_action_types] == \
        [("stop", "graph", 1), ("add_first", "graph", 18), ("attach", "node", 4 * 34)]
    assert [(a.name, a.level, a.width) for a in env.backward_action_types] == [("remove", "node", 1)]
    assert (env.node_dim, env.edge_dim) == (18 + 4, 8)


def test_attach_column_layout():
    """col = k * T + t: stem k of the existing node, library stem t of the new fragment."""
    lib = FragmentLibrary.default()
    env = FragmentEnv(lib, max_fragments=3)
    s = env.step(env.initial(1), torch.tensor([[ADD_FIRST, 0, 0]]))  # benzene, 4 stems
    t = int(lib.stem_id[5, 1])  # piperidine, its second stem
    s = env.step(s, torch.tensor([[ATTACH, 0, 2 * env.T + t]]))
    assert s.fragments(0) == [0, 5]
    assert s.bonds(0) == [(0, 1, 2, 1)]
    assert s.stem_used[0, 0].tolist() == [False, False, True, False]
    assert s.stem_used[0, 1].tolist() == [False, True, False, False]
    assert env.to_smiles(s) == [Chem.MolToSmiles(Chem.MolFromSmiles("c1ccc(C2CCNCC2)cc1"))]


# ---------------------------------------------------------------------------------------------
# chemistry
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib_name", ["default", "18", "72", "105"])
@props(25)
@given(data=st.data(), max_fragments=st.integers(2, 6))
def test_terminal_states_are_valid_molecules(lib_name, data, max_fragments):
    lib = library(lib_name)
    env = FragmentEnv(lib, max_fragments=max_fragments)
    B = 4
    states = env.initial(B)
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_fragments + 1):
        legal = legal_actions(env, states)
        acts = torch.tensor([(STOP, 0, 0) if done[b] else pick(data, legal[b], f"[{b}]") for b in range(B)])
        done |= acts[:, 0] == STOP
        states = env.step(states, acts)
        if done.all():
            break
    assert done.all()
    smiles = env.to_smiles(states)
    for i in range(B):
        check_state(env, states, i)
        mol = env.to_mol(states, i)
        Chem.SanitizeMol(mol)
        n_atoms = sum(lib.mols[f].GetNumAtoms() for f in states.fragments(i))
        assert mol.GetNumHeavyAtoms() == mol.GetNumAtoms() == n_atoms
        assert mol.GetNumBonds() == sum(lib.mols[f].GetNumBonds() for f in states.fragments(i)) + len(states.bonds(i))
        again = Chem.MolFromSmiles(smiles[i])
        assert again is not None, smiles[i]
        assert again.GetNumHeavyAtoms() == n_atoms
        assert Chem.MolToSmiles(again) == smiles[i]
        assert len(Chem.GetMolFrags(again)) == 1  # one connected molecule


# ---------------------------------------------------------------------------------------------
# canonical keys and from_tree
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lib_name", ["default", "72"])
@props(25)
@given(seed=st.integers(0, 2**16))
def test_canonical_key_relabelling_and_one_change(lib_name, seed):
    lib = library(lib_name)
    env = FragmentEnv(lib, max_fragments=6)
    rng = random.Random(seed)
    frags, bonds = random_tree(env, rng.randint(1, 6), rng)
    key = env.canonical_key(env.from_tree(frags, bonds), 0)
    assert key is not None
    for _ in range(3):
        assert env.canonical_key(env.from_tree(*relabel(frags, bonds, rng)), 0) == key
    used = used_stems(bonds)
    # one fragment changed (to one with enough stems for the bonds it carries)
    node = rng.randrange(len(frags))
    need = max([k + 1 for j, k in used if j == node], default=1)
    others = [f for f in range(env.F) if f != frags[node] and n_stems(env, f) >= need]
    if others:
        f2 = list(frags)
        f2[node] = rng.choice(others)
        assert env.canonical_key(env.from_tree(f2, bonds), 0) != key
    # one stem changed: move one end of one bond to a free stem of the same node
    for e, (u, v, su, sv) in enumerate(bonds):
        free = [k for k in range(n_stems(env, frags[u])) if (u, k) not in used]
        if free:
            b2 = list(bonds)
            b2[e] = (u, v, rng.choice(free), sv)
            assert env.canonical_key(env.from_tree(frags, b2), 0) != key
            break


@props(60)
@given(seed=st.integers(0, 2**16))
def test_canonical_key_equals_brute_force_isomorphism(seed):
    """On a 3-fragment library, key equality is exactly labelled-tree isomorphism."""
    env = FragmentEnv(_load("tiny"), max_fragments=4)
    rng = random.Random(seed)
    n = rng.randint(1, 4)
    trees = [random_tree(env, n, rng) for _ in range(6)]
    keys = [env.canonical_key(env.from_tree(*t), 0) for t in trees]
    for a, b in itertools.combinations(range(len(trees)), 2):
        assert (keys[a] == keys[b]) == isomorphic(*trees[a], *trees[b]), (trees[a], trees[b])


def test_canonical_key_stems_matter_even_for_same_molecule():
    """Two stems on one atom give the same molecule but different objects."""
    env = FragmentEnv(FragmentLibrary.default(), max_fragments=3)
    a = env.from_tree([12, 15], [(0, 1, 0, 0)])  # O stem 0 - F
    b = env.from_tree([12, 15], [(0, 1, 1, 0)])  # O stem 1 - F
    assert env.to_smiles(a) == env.to_smiles(b)
    assert env.canonical_key(a, 0) != env.canonical_key(b, 0)
    c = env.from_tree([15, 12], [(1, 0, 1, 0)])  # b, relabelled and flipped
    assert env.canonical_key(b, 0) == env.canonical_key(c, 0)


def test_from_tree_rejects():
    env = FragmentEnv(FragmentLibrary.default(), max_fragments=4)
    # fragment 15 (F) has 1 stem, 0 (benzene) has 4, 12 (O) has 2
    cases = [
        ([0, 15], [(0, 1, 0, 1)]),                        # stem 1 of F does not exist
        ([0, 15], [(0, 1, 4, 0)]),                        # stem 4 of benzene does not exist
        ([0, 15], [(0, 1, -1, 0)]),                       # negative stem
        ([0, 15, 15], [(0, 1, 2, 0), (0, 2, 2, 0)]),     # stem 2 of benzene used twice
        ([12, 12, 15], [(0, 1, 0, 0), (1, 2, 0, 0)]),    # stem 0 of node 1 used twice
        ([0, 15], [(0, 2, 0, 0)]),                        # node 2 does not exist
        ([0, 15], [(-1, 1, 0, 0)]),                       # negative node
        ([0, 0, 15], [(0, 1, 0, 0), (1, 0, 1, 1)]),      # double bond 0-1, node 2 unreached
        ([0, 0, 0, 15], [(0, 1, 0, 0), (1, 2, 1, 0), (2, 0, 1, 2)]),  # cycle: 3 bonds, 4 nodes
        ([12, 15], [(0, 0, 0, 1)]),                       # self loop
        ([0, 15], []),                                    # too few bonds
        ([0], [(0, 0, 0, 1)]),                            # too many bonds
        ([0, 0, 0, 0, 0], [(0, 1, 0, 0), (1, 2, 1, 0), (2, 3, 1, 0), (3, 4, 1, 0)]),  # > max
    ]
    for frags, bonds in cases:
        with pytest.raises(ValueError):
            env.from_tree(frags, bonds)
    # and a legal one in a weird order is accepted
    s = env.from_tree([15, 0, 12, 15], [(2, 1, 1, 3), (3, 2, 0, 0), (1, 0, 0, 0)])
    check_state(env, s, 0)


@pytest.mark.parametrize("frag", [18, -1])
def test_from_tree_rejects_unknown_fragment(frag):
    env = FragmentEnv(FragmentLibrary.default(), max_fragments=4)
    with pytest.raises(ValueError):
        env.from_tree([frag], [])
