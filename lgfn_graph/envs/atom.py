"""Atom-by-atom molecule building (QM9-style): add atoms, add bonds, raise bond orders, or stop."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..categorical import ActionType
from .base import Env, PaddedStates

STOP, ADD_FIRST, ADD_ATOM, ADD_BOND, RAISE_BOND = range(5)  # forward action types
REMOVE_ATOM, REMOVE_BOND, LOWER_BOND = range(3)  # backward action types

#: Neutral default valences of the elements an :class:`AtomEnv` may use.
VALENCE = {"B": 3, "C": 4, "N": 3, "O": 2, "F": 1, "P": 3, "S": 2, "Cl": 1, "Br": 1, "I": 1}


@dataclass
class AtomStates(PaddedStates):
    """A batch of molecular graphs as padded tensors (``B`` states, at most ``N`` atoms).

    Atom ``k`` is the ``k``-th atom added; the order is part of the state (see :class:`AtomEnv`).

    Attributes:
        elem: long ``[B, N]``, the element of each atom (index into ``AtomEnv.elements``),
            ``-1`` past ``n``.
        n: long ``[B]``, the number of atoms.
        bond: long ``[B, N, N]``, symmetric bond orders (``0`` none, ``1`` single, ``2`` double,
            ``3`` triple), ``0`` on the diagonal and past ``n``.
    """

    elem: Tensor
    n: Tensor
    bond: Tensor

    def graph(self, i: int) -> tuple[list[int], dict[tuple[int, int], int]]:
        """State ``i`` as Python objects: elements and ``{(u, v): order}`` with ``u < v``."""
        n = int(self.n[i])
        b = self.bond[i, :n, :n].tolist()
        return self.elem[i, :n].tolist(), {(u, v): b[u][v] for v in range(n) for u in range(v) if b[u][v]}


class AtomEnv(Env):
    r"""Build molecules one atom or one bond order at a time.

    Forward actions (``forward_action_types``; rows ``(type, row, col)``):

    * ``stop`` (graph, width 1): end the trajectory; needs at least one atom.
    * ``add_first`` (graph, width ``E``): place atom 0 of element ``col`` in the empty state.
    * ``add_atom`` (node, width ``E``): append atom ``n`` of element ``col``, single-bonded to
      atom ``row``.
    * ``add_bond`` (edge, width 1): single-bond the unbonded atoms of pair ``row``.
    * ``raise_bond`` (edge, width 1): raise the order of bonded pair ``row`` by one
      (single -> double -> triple).

    The two edge-level types share one row set, ``data.action_edge_index``: every pair
    ``(i, j)``, ``i < j``, of existing atoms, numbered ``p = j (j - 1) / 2 + i`` inside its graph
    (so a pair keeps its number as atoms are added). Masks forbid exceeding an atom's neutral
    valence (:data:`VALENCE`) or ``max_atoms``, bonding a bonded pair, raising past triple and,
    with ``ban_3ring_triple`` (default), a triple bond inside a 3-membered ring (RDKit would
    sanitize it, but it is not a molecule). Every reachable state sanitizes in RDKit, with
    implicit hydrogens filling free valence.

    Backward actions (``backward_action_types``), each the inverse of one forward action:

    * ``remove_atom`` (node, width 1): delete the *last* atom ``n - 1`` when it is a leaf on a
      single bond, or the only atom (inverse of ``add_atom`` / ``add_first``).
    * ``remove_bond`` (edge, width 1): delete the single bond of pair ``(i, j)``, ``i < j``,
      when ``j`` keeps another bond to an atom before it (inverse of ``add_bond``).
    * ``lower_bond`` (edge, width 1): lower a double or triple bond by one (inverse of
      ``raise_bond``).

    **State identity.** A state is a graph *with its atom order*: only the last atom can be
    removed and nothing is re-indexed, so ``step(backward_step(s, a))`` rebuilds ``s`` exactly
    (tensor-equal), distinct actions lead to distinct states, and the uniform backward policy
    ``1 / num_parents`` is exact. The reachable states are the connected graphs within valence
    whose every atom ``k >= 1`` bonds to some atom before it. One molecular graph is thus
    :math:`m` = ``exp(log_multiplicity)`` states (its admissible atom orders; the Kekulé forms of
    an aromatic molecule are different graphs). Trained with trajectory balance, terminal
    states are sampled :math:`\propto R^\beta`, so a graph is sampled :math:`\propto m\,
    R^\beta`; subtract :meth:`log_multiplicity` from the target (:math:`\beta \log R - \log m`)
    to sample graphs :math:`\propto R^\beta`.

    States are :class:`AtomStates`; every transition, mask and graph is built with tensor
    operations over the whole batch.

    Args:
        elements: element symbols, keys of :data:`VALENCE`.
        max_atoms: the largest number of (heavy) atoms.
        ban_3ring_triple: forbid triple bonds in 3-membered rings.
    """

    kind = "atom"
    states_type = AtomStates
    size_name = "num_atoms"
    stop_type = STOP

    def __init__(self, elements: Sequence[str] = ("C", "N", "O", "F"), max_atoms: int = 9,
                 ban_3ring_triple: bool = True):
        elements = tuple(elements)
        if not elements or len(set(elements)) != len(elements) or any(e not in VALENCE for e in elements):
            raise ValueError(f"elements must be distinct symbols among {sorted(VALENCE)}, got {elements}")
        if max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
        self.elements = elements
        self.max_atoms = N = max_atoms
        self.ban_3ring_triple = ban_3ring_triple
        self.E = E = len(elements)
        self.P = N * (N - 1) // 2
        self.valence = torch.tensor([VALENCE[e] for e in elements])
        self.V = V = int(self.valence.max())
        self.forward_action_types = [ActionType("stop", "graph", 1), ActionType("add_first", "graph", E),
                                     ActionType("add_atom", "node", E), ActionType("add_bond", "edge", 1),
                                     ActionType("raise_bond", "edge", 1)]
        self.backward_action_types = [ActionType("remove_atom", "node", 1), ActionType("remove_bond", "edge", 1),
                                      ActionType("lower_bond", "edge", 1)]
        self.node_dim = E + 2 * (V + 1) + N
        self.edge_dim = 3
        self.max_degree = V  # each neighbour takes at least one unit of valence
        # add_first, one action per unit of bond order, stop
        self.max_steps = min(N * V // 2, 3 * self.P) + 2
        self._pj, self._pi = torch.tril_indices(N, N, -1)  # pair p = (pi, pj), p = pj (pj - 1) / 2 + pi
        self._before = torch.arange(N)[None, :] < torch.arange(N)[:, None]  # [k, m]: m < k

    # -- specs ---------------------------------------------------------------------------------
    def spec(self) -> dict:
        """``{"kind": "atom", "elements", "max_atoms", "ban_3ring_triple"}``: what rebuilds the
        environment (:meth:`Env.from_spec`)."""
        return {"kind": self.kind, "elements": list(self.elements), "max_atoms": self.max_atoms,
                "ban_3ring_triple": self.ban_3ring_triple}

    @classmethod
    def _from_spec(cls, spec: dict) -> "AtomEnv":
        return cls(spec["elements"], spec["max_atoms"], spec["ban_3ring_triple"])

    @classmethod
    def _describe(cls, spec: dict) -> str:
        return f"atoms {spec['elements']}, at most {spec['max_atoms']}"

    # -- states --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> AtomStates:
        """``batch_size`` empty states."""
        B, N = batch_size, self.max_atoms
        return AtomStates(torch.full((B, N), -1, dtype=torch.long), torch.zeros(B, dtype=torch.long),
                          torch.zeros(B, N, N, dtype=torch.long))

    def from_graph(self, elem: Sequence[int], bonds: dict[tuple[int, int], int]) -> AtomStates:
        """One state from element indices and ``{(u, v): order}``; raises unless it is reachable."""
        n = len(elem)
        if n > self.max_atoms or any(not 0 <= e < self.E for e in elem):
            raise ValueError(f"need at most {self.max_atoms} atoms with elements in [0, {self.E}), got {list(elem)}")
        s = self.initial(1)
        s.elem[0, :n] = torch.tensor(list(elem), dtype=torch.long)
        s.n[0] = n
        for (u, v), order in bonds.items():
            if not (0 <= u < n and 0 <= v < n and u != v and 1 <= order <= 3) or s.bond[0, u, v]:
                raise ValueError(f"bond {(u, v)} of order {order} is out of range or repeated")
            s.bond[0, u, v] = s.bond[0, v, u] = order
        if not bool(self.is_valid(s).all()):
            raise ValueError(f"graph {list(elem)}, {bonds} is not a reachable state (valence, atom order, rings)")
        return s

    def is_valid(self, states: AtomStates) -> Tensor:
        """bool ``[B]``: padding, symmetry, valence, atom order and ring rules all hold."""
        N = self.max_atoms
        atom = torch.arange(N) < states.n[:, None]
        pair = atom[:, :, None] & atom[:, None, :] & ~torch.eye(N, dtype=torch.bool)
        b = states.bond
        ok = (states.n >= 0) & (states.n <= N)
        ok &= torch.where(atom, (states.elem >= 0) & (states.elem < self.E), states.elem == -1).all(1)
        ok &= (b == b.transpose(1, 2)).flatten(1).all(1) & ((b >= 0) & (b <= 3)).flatten(1).all(1)
        ok &= (pair | (b == 0)).flatten(1).all(1)
        ok &= (self.free_valence(states) >= 0).all(1)
        earlier = ((b > 0) & self._before).sum(2)
        ok &= ((earlier >= 1) | ~atom | (torch.arange(N) == 0)).all(1)
        if self.ban_3ring_triple:
            A, T3 = (b > 0).float(), (b == 3).float()
            ok &= ~((T3 * (A @ A)) > 0).flatten(1).any(1)
        return ok

    def free_valence(self, states: AtomStates) -> Tensor:
        """Valence left on each atom, long ``[B, N]`` (``0`` past ``n``)."""
        return torch.where(states.elem >= 0, self.valence[states.elem.clamp_min(0)] - states.bond.sum(2), 0)

    def _pairs(self, states: AtomStates) -> tuple[Tensor, Tensor]:
        """``(exists [B, P], order [B, P])`` for every pair of atom slots."""
        return self._pj < states.n[:, None], states.bond[:, self._pi, self._pj]

    # -- masks ---------------------------------------------------------------------------------
    def _dense_forward(self, states: AtomStates) -> list[Tensor]:
        """Legal forward actions as ``[B, rows, width]`` per type (rows: 1, ``N`` or ``P``)."""
        B, N, E = len(states), self.max_atoms, self.E
        n, free = states.n, self.free_valence(states)
        exists, order = self._pairs(states)
        both = (free[:, self._pi] >= 1) & (free[:, self._pj] >= 1) & exists
        add_bond, raise_bond = both & (order == 0), both & (order >= 1) & (order <= 2)
        if self.ban_3ring_triple:
            A, T3 = (states.bond > 0).float(), (states.bond == 3).float()
            M = T3 @ A
            closes_tri = (M + M.transpose(1, 2))[:, self._pi, self._pj] > 0  # would close a ring on a triple
            in_tri = (A @ A)[:, self._pi, self._pj] > 0
            add_bond &= ~closes_tri
            raise_bond &= ~((order == 2) & in_tri)
        add_atom = (free >= 1) & (n < N)[:, None]
        return [(n >= 1)[:, None, None], (n == 0)[:, None, None].expand(B, 1, E),
                add_atom[:, :, None].expand(B, N, E), add_bond[:, :, None], raise_bond[:, :, None]]

    def _dense_backward(self, states: AtomStates) -> list[Tensor]:
        """Legal backward actions as ``[B, rows, 1]`` per type (rows: ``N`` or ``P``)."""
        N = self.max_atoms
        n, b = states.n, states.bond
        leaf = ((b > 0).sum(2) == 1) & (b.sum(2) == 1)
        remove_atom = (torch.arange(N) == (n - 1)[:, None]) & (leaf | (n == 1)[:, None])
        exists, order = self._pairs(states)
        earlier = ((b > 0) & self._before).sum(2)
        remove_bond = exists & (order == 1) & (earlier[:, self._pj] >= 2)
        return [remove_atom[:, :, None], remove_bond[:, :, None], (exists & (order >= 2))[:, :, None]]

    def _rows(self, states: AtomStates, level: str) -> Tensor:
        """bool ``[B, rows]``: which rows of a ``level``-level type exist."""
        if level == "graph":
            return torch.ones(len(states), 1, dtype=torch.bool)
        if level == "node":
            return torch.arange(self.max_atoms) < states.n[:, None]
        return self._pairs(states)[0]

    def _flat(self, states: AtomStates, dense: list[Tensor], types: list[ActionType]) -> list[Tensor]:
        return [d[self._rows(states, t.level)] for d, t in zip(dense, types)]

    def forward_masks(self, states: AtomStates) -> list[Tensor]:
        """Legal forward actions, aligned with :meth:`to_graph`'s rows (bool).

        Returns ``[stop [B, 1], add_first [B, E], add_atom [num_nodes, E],
        add_bond [num_pairs, 1], raise_bond [num_pairs, 1]]``.
        """
        return self._flat(states, self._dense_forward(states), self.forward_action_types)

    def backward_masks(self, states: AtomStates) -> list[Tensor]:
        """Legal backward actions: ``[remove_atom [num_nodes, 1], remove_bond [num_pairs, 1],
        lower_bond [num_pairs, 1]]`` (bool)."""
        return self._flat(states, self._dense_backward(states), self.backward_action_types)

    def num_parents(self, states: AtomStates) -> Tensor:
        """Number of legal backward actions (= distinct parents) of each state, long ``[B]``."""
        return sum(d.flatten(1).sum(1) for d in self._dense_backward(states))

    # -- transitions ---------------------------------------------------------------------------
    @staticmethod
    def _check(states: AtomStates, actions: Tensor, dense: list[Tensor], kind: str) -> None:
        """Raise unless every ``actions[b]`` is in range and allowed by ``dense[type][b]``."""
        if actions.shape != (len(states), 3):
            raise ValueError(f"actions must have shape [{len(states)}, 3], got {tuple(actions.shape)}")
        t, row, col = actions.unbind(1)
        ok = torch.zeros(len(states), dtype=torch.bool)
        for k, d in enumerate(dense):
            R, W = d.shape[1:]
            if not R:
                continue
            inside = (t == k) & (row >= 0) & (row < R) & (col >= 0) & (col < W)
            ok |= inside & d[torch.arange(len(states)), row.clamp(0, R - 1), col.clamp(0, W - 1)]
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(f"illegal {kind} actions for states {bad[:10]}: {actions[bad[:3]].tolist()}")

    def step(self, states: AtomStates, actions: Tensor, check: bool = True) -> AtomStates:
        """Apply forward actions ``[B, 3]``; ``stop`` leaves a state unchanged. Returns new states.

        ``check=False`` skips validating the actions, for callers that drew them from this
        environment's masks (the sampler)."""
        if check:
            self._check(states, actions, self._dense_forward(states), "forward")
        s = states.clone()
        t, row, col = actions.unbind(1)
        first = (t == ADD_FIRST).nonzero().flatten()
        s.elem[first, 0] = col[first]
        add = (t == ADD_ATOM).nonzero().flatten()
        pos = s.n[add]
        s.elem[add, pos] = col[add]
        s.bond[add, row[add], pos] = s.bond[add, pos, row[add]] = 1
        s.n[first] = 1
        s.n[add] += 1
        inc = ((t == ADD_BOND) | (t == RAISE_BOND)).nonzero().flatten()
        i, j = self._pi[row[inc]], self._pj[row[inc]]
        s.bond[inc, i, j] += 1
        s.bond[inc, j, i] += 1
        return s

    def backward_step(self, states: AtomStates, actions: Tensor) -> tuple[AtomStates, Tensor]:
        """Undo one action per state. ``actions: [B, 3]`` of backward types.

        Returns the parent states and, per state, the forward action that rebuilds the child
        exactly from its parent (``[B, 3]``).
        """
        self._check(states, actions, self._dense_backward(states), "backward")
        s = states.clone()
        t, row, _ = actions.unbind(1)
        fwd = torch.zeros_like(actions)
        rem = (t == REMOVE_ATOM).nonzero().flatten()
        last = row[rem]
        nb = states.bond[rem, last].argmax(1)  # the leaf's one neighbour (0 for a lone atom)
        lone = states.n[rem] == 1
        fwd[rem] = torch.stack([torch.where(lone, ADD_FIRST, ADD_ATOM), torch.where(lone, 0, nb),
                                states.elem[rem, last]], 1)
        s.elem[rem, last] = -1
        s.bond[rem, last, nb] = s.bond[rem, nb, last] = 0
        s.n[rem] -= 1
        dec = (t != REMOVE_ATOM).nonzero().flatten()
        i, j = self._pi[row[dec]], self._pj[row[dec]]
        s.bond[dec, i, j] -= 1
        s.bond[dec, j, i] -= 1
        fwd[dec, 0] = torch.where(t[dec] == REMOVE_BOND, ADD_BOND, RAISE_BOND)
        fwd[dec, 1] = row[dec]
        return s, fwd

    # -- model input ---------------------------------------------------------------------------
    def to_graph(self, states: AtomStates) -> Batch:
        """The batch of PyG graphs the model reads, built with tensor operations only.

        The empty state is a graph with no nodes; graph-level heads still get its logits.

        Returns a :class:`~torch_geometric.data.Batch` with ``x: [num_nodes, node_dim]``
        (one-hots of the element, bond count ``0..V``, free valence ``0..V`` and atom position
        ``0..N-1``: the order is part of the state), ``edge_index: [2, 2 * num_bonds]`` (both directions),
        ``edge_attr: [2 * num_bonds, 3]`` (one-hot bond order), ``action_edge_index:
        [2, num_pairs]`` (the rows of the edge-level actions, pair ``p`` of a graph in column
        ``first_pair + p``), ``batch: [num_nodes]`` and ``ptr: [B + 1]``.
        """
        B, N = states.elem.shape
        atom = torch.arange(N) < states.n[:, None]
        ptr = torch.zeros(B + 1, dtype=torch.long)
        ptr[1:] = states.n.cumsum(0)
        V = self.V + 1
        x = torch.cat([F.one_hot(states.elem[atom], self.E), F.one_hot((states.bond > 0).sum(2)[atom], V),
                       F.one_hot(self.free_valence(states)[atom], V),
                       F.one_hot(torch.arange(N).expand(B, N)[atom], N)], 1).float()
        exists, order = self._pairs(states)
        gb, p = exists.nonzero().unbind(1)
        pairs = torch.stack([self._pi[p], self._pj[p]]) + ptr[gb]
        bonded = order[gb, p] > 0
        u, v = pairs[:, bonded]
        attr = F.one_hot(order[gb, p][bonded] - 1, 3).float()
        return Batch(x=x, edge_index=torch.stack([torch.cat([u, v]), torch.cat([v, u])]),
                     edge_attr=torch.cat([attr, attr]), action_edge_index=pairs,
                     batch=torch.repeat_interleave(torch.arange(B), states.n), ptr=ptr)

    def to_data(self, states: AtomStates, i: int) -> Data:
        """State ``i`` as a single PyG :class:`~torch_geometric.data.Data` graph."""
        g = self.to_graph(states[i])
        return Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr, action_edge_index=g.action_edge_index)

    # -- chemistry and identity ----------------------------------------------------------------
    def to_mol(self, states: AtomStates, i: int):
        """State ``i`` as a sanitized RDKit molecule (implicit hydrogens fill free valence)."""
        from rdkit import Chem
        kinds = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
        elem, bonds = states.graph(i)
        mol = Chem.RWMol()
        for e in elem:
            mol.AddAtom(Chem.Atom(self.elements[e]))
        for (u, v), order in bonds.items():
            mol.AddBond(u, v, kinds[order])
        mol = mol.GetMol()
        Chem.SanitizeMol(mol)
        return mol

    def canonical_key(self, states: AtomStates, i: int) -> str:
        """State ``i``'s elements and bonds *in atom order*: states are never merged, so two
        states share a key iff they are tensor-equal."""
        elem, bonds = states.graph(i)
        return f"{elem}{sorted(bonds.items())}"

    def log_reward_correction(self, states: AtomStates) -> Tensor:
        """What the trainer adds to ``beta * log R(x)`` so that balance over actions learns
        ``R(x)^beta`` over graphs rather than atom orders: ``-log_multiplicity``, ``[B]``."""
        return -self.log_multiplicity(states)

    def log_multiplicity(self, states: AtomStates) -> Tensor:
        r"""``log m`` per state, float ``[B]``: how many reachable states share its graph.

        :math:`m` = (atom orders in which every atom after the first bonds to an earlier one) /
        (automorphisms of the graph with elements and bond orders). The orders are counted by a
        batched dynamic programme over atom subsets (:math:`2^N` entries per state); the
        automorphisms by backtracking, one state at a time (a Python loop: call it once per
        batch of terminal states, not per step). ``0`` for the empty state.
        """
        orders = self._connected_orders(states).double().clamp_min(1).log()
        auts = torch.tensor([math.log(_num_automorphisms(*states.graph(i))) if int(states.n[i]) else 0.0
                             for i in range(len(states))], dtype=torch.float64)
        return (orders - auts).float()

    def _connected_orders(self, states: AtomStates) -> Tensor:
        """long ``[B]``: orders of the atoms in which each atom after the first has an earlier neighbour."""
        B, N = len(states), self.max_atoms
        bit = 1 << torch.arange(N)
        nbr = ((states.bond > 0).long() * bit).sum(2)  # [B, N] neighbour bitmasks
        masks = torch.arange(1 << N)
        size = ((masks[:, None] & bit) > 0).sum(1)
        count = torch.zeros(B, 1 << N, dtype=torch.long)
        count[:, bit] = 1
        for k in range(2, N + 1):
            S = masks[size == k]  # [K] subsets of k atoms
            has = (S[:, None] & bit) > 0  # [K, N]
            rest = S[:, None] ^ bit  # S without atom v (where v in S)
            grows = has & ((nbr[:, None, :] & rest) > 0)  # [B, K, N]: v bonds into the rest
            count[:, S] = (count[:, rest] * grows).sum(2)
        return count[torch.arange(B), (1 << states.n) - 1]


def _num_automorphisms(elem: list[int], bonds: dict[tuple[int, int], int]) -> int:
    """Permutations of the atoms keeping elements and bond orders, by backtracking."""
    n = len(elem)
    b = [[0] * n for _ in range(n)]
    for (u, v), order in bonds.items():
        b[u][v] = b[v][u] = order
    label = [(elem[i], sorted(b[i])) for i in range(n)]
    image, used = [-1] * n, [False] * n

    def extend(k: int) -> int:
        if k == n:
            return 1
        total = 0
        for c in range(n):
            if not used[c] and label[c] == label[k] and all(b[k][m] == b[c][image[m]] for m in range(k)):
                image[k], used[c] = c, True
                total += extend(k + 1)
                used[c] = False
        return total

    return extend(0)


__all__ = ["AtomEnv", "AtomStates", "VALENCE", "STOP", "ADD_FIRST", "ADD_ATOM", "ADD_BOND", "RAISE_BOND",
           "REMOVE_ATOM", "REMOVE_BOND", "LOWER_BOND"]
