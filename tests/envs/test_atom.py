"""AtomEnv against brute-force, loop-based references.

Random legal trajectories are driven by hypothesis (actions are picked by index from the legal
set that :meth:`AtomEnv.forward_masks` offers) and every intermediate batch is checked against
Python re-implementations of the rules: which actions are legal, what they build, what the
parents of a state are (derived from the forward rules alone), what the model graph is, and
that RDKit accepts the molecule. Small settings are enumerated exhaustively.
"""
from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from torch_geometric.data import Batch, Data

import lgfn_graph as L
from lgfn_graph.envs.atom import (ADD_ATOM, ADD_BOND, ADD_FIRST, LOWER_BOND, RAISE_BOND, REMOVE_ATOM, REMOVE_BOND,
                                  STOP, AtomEnv, AtomStates)
from lgfn_graph.categorical import element_batch

VAL = {"C": 4, "N": 3, "O": 2, "F": 1}
ELEMENT_SETS = [("C", "N", "O", "F"), ("C", "O"), ("N",), ("C", "F"), ("O", "F"), ("F",)]
ORDER = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def quick(max_examples: int) -> settings:
    """Derandomized, no explain phase, one bug at a time."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, report_multiple_bugs=False,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------------------------------------
# brute-force references on (elem: list[int], bonds: {(i, j): order}, i < j)
# ---------------------------------------------------------------------------------------------
def pair_no(i: int, j: int) -> int:
    i, j = min(i, j), max(i, j)
    return j * (j - 1) // 2 + i


def free_valence(env: AtomEnv, elem, bonds) -> list[int]:
    free = [VAL[env.elements[e]] for e in elem]
    for (i, j), o in bonds.items():
        free[i] -= o
        free[j] -= o
    return free


def triple_in_triangle(n: int, bonds) -> bool:
    for a, b, c in itertools.combinations(range(n), 3):
        tri = [bonds.get((a, b), 0), bonds.get((a, c), 0), bonds.get((b, c), 0)]
        if all(tri) and 3 in tri:
            return True
    return False


def is_state(env: AtomEnv, elem, bonds) -> bool:
    """The documented state space: valence, ring rule, each atom after the first bonded earlier."""
    n = len(elem)
    return (n <= env.max_atoms and all(f >= 0 for f in free_valence(env, elem, bonds))
            and all(any((i, k) in bonds for i in range(k)) for k in range(1, n))
            and not (env.ban_3ring_triple and triple_in_triangle(n, bonds)))


def brute_step(elem, bonds, a):
    t, row, col = a
    elem, bonds = list(elem), dict(bonds)
    if t == ADD_FIRST:
        elem = [col]
    elif t == ADD_ATOM:
        bonds[(row, len(elem))] = 1
        elem.append(col)
    elif t in (ADD_BOND, RAISE_BOND):
        j = 1
        while pair_no(0, j + 1) <= row:
            j += 1
        i = row - pair_no(0, j)
        bonds[(i, j)] = bonds.get((i, j), 0) + 1
    return elem, bonds


def brute_forward(env: AtomEnv, elem, bonds) -> set[tuple[int, int, int]]:
    """Every legal forward action: each candidate change whose result is a state."""
    n = len(elem)
    if n == 0:
        return {(ADD_FIRST, 0, e) for e in range(env.E)}
    cands = [(STOP, 0, 0)]
    if n < env.max_atoms:
        cands += [(ADD_ATOM, k, e) for k in range(n) for e in range(env.E)]
    for j in range(n):
        for i in range(j):
            o = bonds.get((i, j), 0)
            if o < 3:
                cands.append((ADD_BOND if o == 0 else RAISE_BOND, pair_no(i, j), 0))
    return {a for a in cands if is_state(env, *brute_step(elem, bonds, a))}


def brute_parents(env: AtomEnv, elem, bonds) -> dict[tuple[int, int, int], tuple]:
    """Backward action -> (parent elem, parent bonds, forward action), from the forward rules:
    every state one forward action away from which a legal action rebuilds this one."""
    n = len(elem)
    cands = {}
    if n == 1:
        cands[(REMOVE_ATOM, 0, 0)] = ([], {})
    elif n > 1:
        cands[(REMOVE_ATOM, n - 1, 0)] = (elem[:-1], {b: o for b, o in bonds.items() if n - 1 not in b})
    for (i, j), o in bonds.items():
        cands[(REMOVE_BOND if o == 1 else LOWER_BOND, pair_no(i, j), 0)] = (
            elem, {b: (o2 - (b == (i, j))) for b, o2 in bonds.items() if b != (i, j) or o > 1})
    out = {}
    for back, (pe, pb) in cands.items():
        if not is_state(env, pe, pb):
            continue
        fwd = [a for a in brute_forward(env, pe, pb) if a[0] != STOP and brute_step(pe, pb, a) == (elem, bonds)]
        assert len(fwd) <= 1, "two forward actions give the same child"
        if fwd:
            out[back] = (pe, pb, fwd[0])
    return out


def reference_data(env: AtomEnv, elem, bonds) -> Data:
    """The model graph of one state, by explicit loops."""
    n, V, N = len(elem), max(VAL[e] for e in env.elements), env.max_atoms
    free = free_valence(env, elem, bonds)
    deg = [sum(k in b for b in bonds) for k in range(n)]
    x = torch.zeros(n, env.E + 2 * (V + 1) + N)
    for k in range(n):
        for col in (elem[k], env.E + deg[k], env.E + V + 1 + free[k], env.E + 2 * (V + 1) + k):
            x[k, col] = 1.0
    src, dst, attr = [], [], []
    for (i, j), o in bonds.items():
        for a, b in ((i, j), (j, i)):
            src.append(a)
            dst.append(b)
            attr.append([float(o == 1), float(o == 2), float(o == 3)])
    pairs = sorted(((i, j) for j in range(n) for i in range(j)), key=lambda p: pair_no(*p))
    return Data(x=x, edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                edge_attr=torch.tensor(attr).reshape(-1, 3),
                action_edge_index=torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).t())


def reference_mol(env: AtomEnv, elem, bonds) -> Chem.Mol:
    mol = Chem.RWMol()
    for e in elem:
        mol.AddAtom(Chem.Atom(env.elements[e]))
    for (i, j), o in bonds.items():
        mol.AddBond(i, j, ORDER[o])
    Chem.SanitizeMol(mol)
    return mol


# ---------------------------------------------------------------------------------------------
# checks of a batch against the references
# ---------------------------------------------------------------------------------------------
def read_actions(env: AtomEnv, states: AtomStates, masks, types) -> list[list[tuple[int, int, int]]]:
    """Per state, the allowed (type, local row, col) of ``masks``, rows located through to_graph."""
    g = env.to_graph(states)
    out: list[list] = [[] for _ in range(len(states))]
    for t, (at, m) in enumerate(zip(types, masks)):
        rows = element_batch(g, at.level)
        assert m.dtype == torch.bool and m.shape == (rows.shape[0], at.width)
        first = torch.searchsorted(rows, torch.arange(len(states)))
        for r, c in m.nonzero().tolist():
            b = int(rows[r])
            out[b].append((t, r - int(first[b]), c))
    return [sorted(a) for a in out]


def forward_actions(env, states):
    return read_actions(env, states, env.forward_masks(states), env.forward_action_types)


def check_state(env: AtomEnv, states: AtomStates, i: int) -> None:
    """Padding, symmetry, the state rules, and RDKit's molecule (hydrogens fill the valence)."""
    N = env.max_atoms
    n = int(states.n[i])
    elem, bonds = states.graph(i)
    assert states.elem[i, n:].tolist() == [-1] * (N - n) and all(0 <= e < env.E for e in elem)
    b = states.bond[i]
    assert torch.equal(b, b.t()) and not b.diagonal().any() and not b[n:].any()
    assert all(1 <= o <= 3 for o in bonds.values())
    assert is_state(env, elem, bonds)
    assert bool(env.is_valid(states[i]))
    if n == 0:
        assert env.to_smiles(states[i]) == [""]
        return
    mol = env.to_mol(states, i)
    free = free_valence(env, elem, bonds)
    assert [a.GetSymbol() for a in mol.GetAtoms()] == [env.elements[e] for e in elem]
    assert [a.GetTotalNumHs() for a in mol.GetAtoms()] == free
    assert {(bd.GetBeginAtomIdx(), bd.GetEndAtomIdx()) for bd in mol.GetBonds()} == set(bonds)
    again = Chem.MolFromSmiles(env.to_smiles(states[i])[0])
    assert again is not None and again.GetNumAtoms() == n and len(Chem.GetMolFrags(again)) == 1


def check_forward(env: AtomEnv, states: AtomStates, legal, rng: random.Random) -> None:
    """Masks equal the brute-force legal set; legal actions build the brute-force child, the
    rest raise."""
    B = len(states)
    for i in range(B):
        elem, bonds = states.graph(i)
        assert set(legal[i]) == brute_forward(env, elem, bonds)
        acts = torch.tensor(legal[i])
        children = env.step(states[torch.full((len(acts),), i)], acts)
        for k, a in enumerate(legal[i]):
            assert children.graph(k) == brute_step(elem, bonds, a)
        assert env.is_valid(children).all()
        n, widths = len(elem), [at.width for at in env.forward_action_types]
        rows = [1, 1, max(n, 1), max(n * (n - 1) // 2, 1), max(n * (n - 1) // 2, 1)]
        bad = {(t, rng.randrange(rows[t]), rng.randrange(widths[t])) for t in range(5) for _ in range(4)}
        bad |= {(ADD_ATOM, n, 0), (ADD_ATOM, -1, 0), (ADD_ATOM, 0, env.E), (ADD_FIRST, 0, env.E),
                (ADD_BOND, n * (n - 1) // 2, 0), (RAISE_BOND, -1, 0), (ADD_BOND, 0, 1), (5, 0, 0), (-1, 0, 0)}
        for a in sorted(bad - set(legal[i]))[:12]:
            with pytest.raises(ValueError):
                env.step(states[i], torch.tensor([a]))
        if B > 1 and bad - set(legal[i]):  # one bad action in a batch of good ones
            acts = torch.tensor([legal[j][0] for j in range(B)])
            acts[i] = torch.tensor(sorted(bad - set(legal[i]))[0])
            with pytest.raises(ValueError):
                env.step(states, acts)


def check_backward(env: AtomEnv, states: AtomStates, i: int) -> None:
    """Backward masks and num_parents equal the brute-force parents; each backward action gives
    that parent and a legal forward action that rebuilds the state tensor-exactly."""
    elem, bonds = states.graph(i)
    want = brute_parents(env, elem, bonds)
    back = read_actions(env, states[i], env.backward_masks(states[i]), env.backward_action_types)[0]
    assert set(back) == set(want)
    assert int(env.num_parents(states[i])) == len(back)
    if not back:
        assert not elem
        return
    k = len(back)
    child = states[torch.full((k,), i)]
    parents, fwd = env.backward_step(child, torch.tensor(back))
    legal_p = forward_actions(env, parents)
    for j, a in enumerate(back):
        pe, pb, f = want[a]
        assert parents.graph(j) == (pe, pb) and tuple(fwd[j].tolist()) == f
        assert f in legal_p[j]
    assert env.is_valid(parents).all()
    assert env.step(parents, fwd).equal(child).all()
    for a in [(REMOVE_ATOM, 0, 0), (REMOVE_ATOM, len(elem), 0), (REMOVE_BOND, 0, 0), (LOWER_BOND, 0, 0),
              (REMOVE_BOND, 0, 1), (3, 0, 0), (-1, 0, 0)]:
        if a not in back:
            with pytest.raises(ValueError):
                env.backward_step(states[i], torch.tensor([a]))


def edge_set(edge_index, edge_attr) -> list[tuple]:
    return sorted(tuple(e) + tuple(a) for e, a in zip(edge_index.t().tolist(), edge_attr.tolist()))


def check_graph(env: AtomEnv, states: AtomStates) -> None:
    """to_graph against per-state reference graphs collated by PyG."""
    refs = [reference_data(env, *states.graph(i)) for i in range(len(states))]
    ref = Batch.from_data_list(refs)
    g = env.to_graph(states)
    assert g.num_graphs == len(states) and g.x.shape[1] == env.node_dim and g.edge_attr.shape[1] == env.edge_dim
    for key in ("x", "batch", "ptr", "action_edge_index"):
        assert torch.equal(g[key], ref[key]), key
    assert edge_set(g.edge_index, g.edge_attr) == edge_set(ref.edge_index, ref.edge_attr)
    for i in range(len(states)):
        d = env.to_data(states, i)
        assert torch.equal(d.x, refs[i].x) and torch.equal(d.action_edge_index, refs[i].action_edge_index)


# ---------------------------------------------------------------------------------------------
# random trajectories
# ---------------------------------------------------------------------------------------------
@quick(30)
@given(data=st.data(), elements=st.sampled_from(ELEMENT_SETS), max_atoms=st.integers(1, 6),
       ban=st.booleans(), batch=st.integers(1, 4))
def test_random_trajectories(data, elements, max_atoms, ban, batch):
    env = AtomEnv(elements, max_atoms=max_atoms, ban_3ring_triple=ban)
    rng = random.Random(data.draw(st.integers(0, 2**16), label="seed"))
    states = env.initial(batch)
    done = torch.zeros(batch, dtype=torch.bool)
    for _ in range(env.max_steps):
        legal = forward_actions(env, states)
        for i in range(batch):
            check_state(env, states, i)
        check_forward(env, states, legal, rng)
        check_graph(env, states)
        check_backward(env, states, data.draw(st.integers(0, batch - 1), label="probe"))
        acts = torch.tensor([(STOP, 0, 0) if done[b] else data.draw(st.sampled_from(legal[b]), label=f"a[{b}]")
                             for b in range(batch)])
        new = env.step(states, acts)
        for b in range(batch):
            assert new[b].equal(env.step(states[b], acts[b:b + 1])).all()
        assert (new.bond.sum((1, 2)) >= states.bond.sum((1, 2))).all()  # the input was not modified
        done |= env.is_stop(acts)
        states = new
    assert done.all(), "a trajectory ran past max_steps"


@quick(25)
@given(seed=st.integers(0, 2**16), ban=st.booleans())
def test_every_parent_of_random_states(seed, ban):
    """Deep random states (up to 9 atoms, a mixed batch): backward against the brute force."""
    env = AtomEnv(max_atoms=9, ban_3ring_triple=ban)
    states = random_states(env, 5, random.Random(seed))
    assert env.num_parents(states).tolist() == [len(brute_parents(env, *states.graph(i))) for i in range(5)]
    for i in range(len(states)):
        check_state(env, states, i)
        check_backward(env, states, i)
    check_graph(env, states)


def random_states(env: AtomEnv, B: int, rng: random.Random) -> AtomStates:
    """``B`` states after random legal actions (stop only at the end of each walk)."""
    out = []
    for _ in range(B):
        s = env.initial(1)
        for _ in range(rng.randrange(env.max_steps)):
            legal = [a for a in forward_actions(env, s)[0] if a[0] != STOP]
            if not legal:
                break
            s = env.step(s, torch.tensor([rng.choice(legal)]))
        out.append(s)
    return AtomStates.cat(out)


# ---------------------------------------------------------------------------------------------
# exhaustive small settings
# ---------------------------------------------------------------------------------------------
def key(states: AtomStates, i: int) -> tuple:
    return tuple(states.elem[i].tolist()), tuple(states.bond[i].flatten().tolist())


def bfs(env: AtomEnv) -> tuple[AtomStates, Counter]:
    """Every reachable state and the number of (state, forward action) pairs leading to each."""
    frontier = env.initial(1)
    seen, indeg, layers = {key(frontier, 0)}, Counter(), [frontier]
    while len(frontier):
        legal = forward_actions(env, frontier)
        idx = torch.tensor([i for i, acts in enumerate(legal) for a in acts if a[0] != STOP], dtype=torch.long)
        acts = torch.tensor([a for acts in legal for a in acts if a[0] != STOP], dtype=torch.long).reshape(-1, 3)
        children = env.step(frontier[idx], acts)
        new = []
        for c in range(len(children)):
            k = key(children, c)
            indeg[k] += 1
            if k not in seen:
                seen.add(k)
                new.append(c)
        frontier = children[torch.tensor(new, dtype=torch.long)]
        layers.append(frontier)
    return AtomStates.cat(layers), indeg


def canonical_graph(elem, bonds) -> tuple:
    """The smallest relabelling of a graph (brute force over permutations)."""
    n = len(elem)
    best = None
    for perm in itertools.permutations(range(n)):  # perm[old] = new
        e2 = tuple(elem[perm.index(k)] for k in range(n))
        b2 = tuple(sorted((min(perm[i], perm[j]), max(perm[i], perm[j]), o) for (i, j), o in bonds.items()))
        best = min(best, (e2, b2)) if best else (e2, b2)
    return best


def all_graphs(env: AtomEnv):
    """Every graph with atom order on at most max_atoms atoms that is a state, by enumeration."""
    for n in range(env.max_atoms + 1):
        pairs = [(i, j) for j in range(n) for i in range(j)]
        for elem in itertools.product(range(env.E), repeat=n):
            for orders in itertools.product(range(4), repeat=len(pairs)):
                bonds = {p: o for p, o in zip(pairs, orders) if o}
                if is_state(env, list(elem), bonds):
                    yield list(elem), bonds


def connected(n: int, bonds) -> bool:
    reach, stack = {0}, [0]
    while stack:
        u = stack.pop()
        for (i, j) in bonds:
            for a, b in ((i, j), (j, i)):
                if a == u and b not in reach:
                    reach.add(b)
                    stack.append(b)
    return len(reach) == n


@pytest.mark.parametrize("ban", [True, False])
def test_exhaustive_carbon_oxygen_three_atoms(ban):
    env = AtomEnv(("C", "O"), max_atoms=3, ban_3ring_triple=ban)
    states, indeg = bfs(env)
    graphs = [states.graph(i) for i in range(len(states))]
    # the reachable states are exactly the documented state space
    assert sorted(map(repr, graphs)) == sorted(map(repr, all_graphs(env)))
    # every state: num_parents = the number of (parent, action) pairs that reach it
    assert env.num_parents(states).tolist() == [indeg[key(states, i)] for i in range(len(states))]
    # terminal molecules = every connected valence-valid molecule of <= 3 C/O atoms
    smiles = set(env.to_smiles(states)) - {""}
    want = set()
    for n in range(1, 4):
        pairs = list(itertools.combinations(range(n), 2))
        for elem in itertools.product(range(2), repeat=n):
            for orders in itertools.product(range(4), repeat=len(pairs)):
                bonds = {p: o for p, o in zip(pairs, orders) if o}
                if (connected(n, bonds) and all(f >= 0 for f in free_valence(env, elem, bonds))
                        and not (ban and triple_in_triangle(n, bonds))):
                    want.add(Chem.MolToSmiles(reference_mol(env, elem, bonds)))
    assert smiles == want
    canon = {Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in
             ["C", "O", "C=O", "CCO", "C1CO1", "OO", "C#C", "C=C=O", "OCO", "O=CO", "C1CC1", "CC#C", "C=C=C"]}
    assert canon <= smiles
    assert ("C1#CC1" in smiles) == (not ban)
    assert not {"CCCC", "CCOC", "C#O", "OOOO", "O=C=O=C"} & smiles
    # multiplicity: reachable states per graph
    per_graph = Counter(canonical_graph(*g) for g in graphs)
    mult = env.log_multiplicity(states).exp().round().long().tolist()
    assert mult == [per_graph[canonical_graph(*g)] for g in graphs]


def test_exhaustive_parents_four_atoms():
    """C/N/O up to 4 atoms: num_parents and multiplicities against the forward enumeration."""
    env = AtomEnv(("C", "N", "O"), max_atoms=4)
    states, indeg = bfs(env)
    assert env.num_parents(states).tolist() == [indeg[key(states, i)] for i in range(len(states))]
    graphs = [states.graph(i) for i in range(len(states))]
    per_graph = Counter(canonical_graph(*g) for g in graphs)
    mult = env.log_multiplicity(states).exp().round().long().tolist()
    assert mult == [per_graph[canonical_graph(*g)] for g in graphs]


@quick(15)
@given(seed=st.integers(0, 2**16))
def test_log_multiplicity_against_permutations(seed):
    """m = distinct atom orders (tensors) of the graph that are states, over all permutations."""
    env = AtomEnv(max_atoms=6)
    states = random_states(env, 3, random.Random(seed))
    got = env.log_multiplicity(states).exp().round().long().tolist()
    for i in range(len(states)):
        elem, bonds = states.graph(i)
        n = len(elem)
        distinct = set()
        for perm in itertools.permutations(range(n)):
            e2 = [elem[perm.index(k)] for k in range(n)]
            b2 = {(min(perm[a], perm[b]), max(perm[a], perm[b])): o for (a, b), o in bonds.items()}
            if is_state(env, e2, b2):
                distinct.add((tuple(e2), tuple(sorted(b2.items()))))
        assert got[i] == max(len(distinct), 1)


# ---------------------------------------------------------------------------------------------
# small cases and validation
# ---------------------------------------------------------------------------------------------
def test_action_types_and_empty_state():
    env = AtomEnv()
    assert [(a.name, a.level, a.width) for a in env.forward_action_types] == [
        ("stop", "graph", 1), ("add_first", "graph", 4), ("add_atom", "node", 4), ("add_bond", "edge", 1),
        ("raise_bond", "edge", 1)]
    assert [(a.name, a.level, a.width) for a in env.backward_action_types] == [
        ("remove_atom", "node", 1), ("remove_bond", "edge", 1), ("lower_bond", "edge", 1)]
    assert (env.node_dim, env.edge_dim, env.max_steps) == (4 + 10 + 9, 3, 20)
    s = env.initial(2)
    assert forward_actions(env, s) == [[(ADD_FIRST, 0, e) for e in range(4)]] * 2
    assert env.num_parents(s).tolist() == [0, 0] and env.log_multiplicity(s).tolist() == [0.0, 0.0]
    assert [m.shape for m in env.backward_masks(s)] == [(0, 1), (0, 1), (0, 1)]
    g = env.to_graph(s)
    assert g.num_graphs == 2 and g.x.shape == (0, env.node_dim) and g.action_edge_index.shape == (2, 0)
    for bad in ([[STOP, 0, 0]] * 2, [[ADD_FIRST, 0, 0]], [[ADD_ATOM, 0, 0]] * 2):
        with pytest.raises(ValueError):
            env.step(s, torch.tensor(bad))
    with pytest.raises(ValueError):
        env.backward_step(s[0], torch.tensor([[REMOVE_ATOM, 0, 0]]))


def test_one_atom_env_and_fluorine():
    env = AtomEnv(("F",), max_atoms=1)
    s = env.step(env.initial(1), torch.tensor([[ADD_FIRST, 0, 0]]))
    assert forward_actions(env, s) == [[(STOP, 0, 0)]] and env.to_smiles(s) == ["F"]
    env = AtomEnv(("F",), max_atoms=3)
    s = env.step(env.step(env.initial(1), torch.tensor([[ADD_FIRST, 0, 0]])), torch.tensor([[ADD_ATOM, 0, 0]]))
    assert forward_actions(env, s) == [[(STOP, 0, 0)]] and env.to_smiles(s) == ["FF"]


def test_triple_bond_in_three_ring():
    """C#C then C on atom 0: closing the ring is banned; raising a ring bond to triple too."""
    for ban in (True, False):
        env = AtomEnv(("C",), max_atoms=3, ban_3ring_triple=ban)
        s = env.from_graph([0, 0, 0], {(0, 1): 3, (0, 2): 1})
        assert ((ADD_BOND, pair_no(1, 2), 0) in forward_actions(env, s)[0]) == (not ban)
        ring = env.from_graph([0, 0, 0], {(0, 1): 2, (0, 2): 1, (1, 2): 1})
        assert ((RAISE_BOND, pair_no(0, 1), 0) in forward_actions(env, ring)[0]) == (not ban)


def test_only_the_last_atom_is_removed():
    """N-C-O: O is the last leaf; C-N's N is a leaf but not last, so it stays."""
    env = AtomEnv()
    s = env.from_graph([0, 1, 2], {(0, 1): 1, (0, 2): 1})  # C0-N1, C0-O2
    assert read_actions(env, s, env.backward_masks(s), env.backward_action_types) == [[(REMOVE_ATOM, 2, 0)]]
    p, f = env.backward_step(s, torch.tensor([[REMOVE_ATOM, 2, 0]]))
    assert f.tolist() == [[ADD_ATOM, 0, 2]] and env.to_smiles(p) == ["CN"]


def test_from_graph_and_constructor_reject():
    env = AtomEnv(max_atoms=4)
    for elem, bonds in [([0, 0], {}), ([0, 3, 0], {(0, 1): 1, (1, 2): 1}),  # disconnected, F with 2 bonds
                        ([0, 0, 0], {(0, 1): 1, (1, 2): 3, (0, 2): 1}),  # triple in a 3-ring
                        ([0, 0, 0], {(0, 2): 1, (1, 2): 1}),  # atom 1 has no earlier neighbour
                        ([0, 0], {(0, 1): 4}), ([0, 0], {(0, 0): 1}), ([0, 0], {(0, 2): 1}),
                        ([4], {}), ([-1], {}), ([0] * 5, {(i, i + 1): 1 for i in range(4)})]:
        with pytest.raises(ValueError):
            env.from_graph(elem, bonds)
    for args in [((), 3), (("C", "C"), 3), (("Xx",), 3), (("C",), 0)]:
        with pytest.raises(ValueError):
            AtomEnv(*args)


# ---------------------------------------------------------------------------------------------
# end to end with the model
# ---------------------------------------------------------------------------------------------
def test_sample_and_train_step():
    env = AtomEnv()
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    beta = torch.logspace(0, 1.5, 32)
    traj, rep = L.sample_and_evaluate(gfn, env, beta, epsilon=0.1, generator=torch.Generator().manual_seed(0))
    term = traj.terminal
    assert env.is_valid(term).all() and (term.n >= 1).all() and (traj.length <= env.max_steps).all()
    mols = [env.to_mol(term, i) for i in range(len(term))]
    assert all(m.GetNumAtoms() == int(k) for m, k in zip(mols, term.n))
    # the recorded log P_B is -log(num_parents) of each child
    for t in range(traj.actions.shape[0]):
        live = (traj.actions[t, :, 0] >= 0) & ~env.is_stop(traj.actions[t])
        want = -env.num_parents(traj.states[t + 1][live]).float().log()
        assert torch.allclose(traj.log_pb[live, t], want)
    log_r = torch.tensor([float(m.GetNumAtoms()) for m in mols]).log()
    log_pb = traj.log_pb.sum(1) - env.log_multiplicity(term)
    loss = L.trajectory_balance(gfn.log_z(beta), rep.log_pf, log_pb, log_r, beta).mean()
    loss.backward()
    grads = [p.grad for p in gfn.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    assert gfn.policy.backbone.node_in.weight.grad.abs().sum() > 0
