"""Fragment-based molecule building: add a fragment at a free stem, or stop."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..categorical import ActionType
from ..fragments import FragmentLibrary
from .base import Env, PaddedStates

STOP, ADD_FIRST, ATTACH = 0, 1, 2  # forward action types
REMOVE = 0  # backward action type


@dataclass
class FragmentStates(PaddedStates):
    """A batch of fragment trees as padded tensors (``B`` states, at most ``N`` fragments).

    Attributes:
        frag: long ``[B, N]``, the fragment of each node, ``-1`` past ``n``.
        n: long ``[B]``, the number of fragments.
        edges: long ``[B, N - 1, 4]``, bonds ``(u, v, stem_u, stem_v)``; bond ``e`` exists iff
            ``e < n - 1`` (a tree), ``-1`` elsewhere.
        stem_used: bool ``[B, N, S]``, which stems of each node already carry a bond.
    """

    frag: Tensor
    n: Tensor
    edges: Tensor
    stem_used: Tensor

    def bonds(self, i: int) -> list[tuple[int, int, int, int]]:
        """The bonds of state ``i`` as Python tuples."""
        return [tuple(e) for e in self.edges[i, : max(int(self.n[i]) - 1, 0)].tolist()]

    def fragments(self, i: int) -> list[int]:
        return self.frag[i, : int(self.n[i])].tolist()


class FragmentEnv(Env):
    """Build molecules as trees of fragments joined at stems.

    Forward actions (``forward_action_types``):

    * ``stop`` (graph-level, width 1): end the trajectory; needs at least ``min_fragments``.
    * ``add_first`` (graph-level, width ``num_fragments``): place the first fragment.
    * ``attach`` (node-level, width ``max_stems * num_library_stems``): at free stem ``k`` of
      node ``i``, bond a new fragment through library stem ``t``; ``col = k * T + t``.

    Backward actions: ``remove`` (node-level, width 1) deletes a leaf fragment.

    States are :class:`FragmentStates`; every transition works on the whole batch at once.
    Molecules are built with :meth:`FragmentLibrary.assemble`. Two states are the same object
    when their labelled trees are isomorphic (:meth:`canonical_key`); two different stems of a
    fragment give different objects even when the molecules coincide.

    Args:
        library: the fragment library.
        max_fragments: the largest number of fragments in a molecule.
        min_fragments: the smallest number of fragments at which ``stop`` is allowed.
    """

    kind = "fragment"
    states_type = FragmentStates
    size_name = "num_fragments"
    stop_type = STOP
    has_backward_actions = True
    has_fragment_graph = True

    def __init__(self, library: FragmentLibrary, max_fragments: int = 9, min_fragments: int = 1):
        if max_fragments < 1 or not 1 <= min_fragments <= max_fragments:
            raise ValueError(f"need 1 <= min_fragments <= max_fragments, got {min_fragments}, {max_fragments}")
        self.library = library
        self.max_fragments = N = max_fragments
        self.min_fragments = min_fragments
        self.S, self.T, self.F = library.max_stems, library.num_library_stems, library.num_fragments
        self.forward_action_types = [
            ActionType("stop", "graph", 1),
            ActionType("add_first", "graph", self.F),
            ActionType("attach", "node", self.S * self.T),
        ]
        self.backward_action_types = [ActionType("remove", "node", 1)]
        self.node_dim = self.F + self.S
        self.edge_dim = 2 * self.S
        self.max_degree = self.S  # a fragment bonds at most once per stem
        self.max_steps = N + 1
        self._n_stems = library.n_stems
        self._stem_frag = library.stem_frag
        self._stem_slot = library.stem_slot
        self._stem_id = library.stem_id

    # -- specs ---------------------------------------------------------------------------------
    def spec(self) -> dict:
        """``{"kind": "fragment", "max_fragments", "min_fragments", "fragments": [(smiles,
        attachment_atoms), ...]}``: what rebuilds the environment (:meth:`Env.from_spec`)."""
        return {"kind": self.kind, "max_fragments": self.max_fragments, "min_fragments": self.min_fragments,
                "fragments": [(f.smiles, list(f.attachment_atoms)) for f in self.library.fragments]}

    @classmethod
    def _from_spec(cls, spec: dict) -> "FragmentEnv":
        lib = FragmentLibrary.from_pairs([(s, a) for s, a in spec["fragments"]], name="checkpoint")
        return cls(lib, spec["max_fragments"], spec["min_fragments"])

    @classmethod
    def _describe(cls, spec: dict) -> str:
        return f"{len(spec['fragments'])} fragments, at most {spec['max_fragments']}"

    # -- states --------------------------------------------------------------------------------
    def initial(self, batch_size: int) -> FragmentStates:
        """``batch_size`` empty states."""
        B, N, S = batch_size, self.max_fragments, self.S
        return FragmentStates(
            frag=torch.full((B, N), -1, dtype=torch.long),
            n=torch.zeros(B, dtype=torch.long),
            edges=torch.full((B, max(N - 1, 0), 4), -1, dtype=torch.long),
            stem_used=torch.zeros(B, N, S, dtype=torch.bool),
        )

    def from_tree(self, frags: list[int], bonds: list[tuple[int, int, int, int]]) -> FragmentStates:
        """One state from its fragments and bonds (checked to be a tree on free stems)."""
        s = self.initial(1)
        if any(not 0 <= f < self.F for f in frags):
            raise ValueError(f"fragment indices {frags} must lie in [0, {self.F})")
        if len(frags) > self.max_fragments or len(bonds) != max(len(frags) - 1, 0):
            raise ValueError(f"a state needs at most {self.max_fragments} fragments and n - 1 bonds: {frags}, {bonds}")
        s.frag[0, : len(frags)] = torch.tensor(frags, dtype=torch.long)
        s.n[0] = len(frags)
        for e, (u, v, su, sv) in enumerate(bonds):
            for node, stem in ((u, su), (v, sv)):
                if not (0 <= node < len(frags) and 0 <= stem < int(self._n_stems[frags[node]])) or s.stem_used[0, node, stem]:
                    raise ValueError(f"bond {e} {(u, v, su, sv)}: stem {stem} of node {node} is missing or taken")
                s.stem_used[0, node, stem] = True
            s.edges[0, e] = torch.tensor([u, v, su, sv])
        if len(frags) > 1 and self.canonical_key(s, 0) is None:
            raise ValueError(f"bonds {bonds} do not connect fragments {frags} into a tree")
        return s

    def degree(self, states: FragmentStates) -> Tensor:
        """Bonds per node, long ``[B, N]``."""
        return states.stem_used.sum(-1)

    def free_stems(self, states: FragmentStates) -> Tensor:
        """bool ``[B, N, S]``: stem exists on the node's fragment and carries no bond."""
        n_stems = self._n_stems[states.frag.clamp_min(0)]
        exists = (torch.arange(self.S) < n_stems[..., None]) & (states.frag >= 0)[..., None]
        return exists & ~states.stem_used

    # -- model input ---------------------------------------------------------------------------
    def to_graph(self, states: FragmentStates) -> Batch:
        """The batch of PyG graphs the model reads, built with tensor operations only.

        Returns a :class:`~torch_geometric.data.Batch` with ``x: [num_nodes, F + S]`` (fragment
        one-hot, used-stem flags), ``edge_index: [2, 2 * num_bonds]`` (both directions),
        ``edge_attr: [2 * num_bonds, 2 * S]`` (one-hot of the source stem, then of the target
        stem), ``batch: [num_nodes]`` and ``ptr: [B + 1]``.
        """
        B, N = states.frag.shape
        valid = torch.arange(N) < states.n[:, None]
        ptr = torch.zeros(B + 1, dtype=torch.long)
        ptr[1:] = states.n.cumsum(0)
        batch = torch.repeat_interleave(torch.arange(B), states.n)
        x = torch.cat([F.one_hot(states.frag[valid], self.F).float(), states.stem_used[valid].float()], dim=1)
        evalid = torch.arange(max(N - 1, 0)) < (states.n - 1).clamp_min(0)[:, None]
        e = states.edges[evalid]
        eb = torch.arange(B)[:, None].expand(-1, max(N - 1, 0))[evalid]
        u, v = e[:, 0] + ptr[eb], e[:, 1] + ptr[eb]
        su, sv = F.one_hot(e[:, 2], self.S).float(), F.one_hot(e[:, 3], self.S).float()
        edge_index = torch.stack([torch.cat([u, v]), torch.cat([v, u])])
        edge_attr = torch.cat([torch.cat([su, sv], 1), torch.cat([sv, su], 1)])
        return Batch(x=x, edge_index=edge_index, edge_attr=edge_attr, batch=batch, ptr=ptr)

    def to_data(self, states: FragmentStates, i: int) -> Data:
        """State ``i`` as a single PyG :class:`~torch_geometric.data.Data` graph."""
        g = self.to_graph(states[i])
        return Data(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr)

    # -- masks ---------------------------------------------------------------------------------
    def forward_masks(self, states: FragmentStates) -> list[Tensor]:
        """Legal forward actions, aligned with :meth:`to_graph`'s rows.

        Returns ``[stop [B, 1], add_first [B, F], attach [num_nodes, S * T]]`` (bool).
        """
        B, N = states.frag.shape
        n = states.n
        stop = (n >= self.min_fragments)[:, None]
        add_first = (n == 0)[:, None].expand(B, self.F)
        free = self.free_stems(states) & (n < self.max_fragments)[:, None, None]
        valid = torch.arange(N) < n[:, None]
        keep = self._keeps_growing(states).repeat_interleave(n, 0)  # [num_nodes, T]
        attach = free[valid][:, :, None] & keep[:, None, :]
        return [stop, add_first, attach.reshape(-1, self.S * self.T)]

    def _keeps_growing(self, states: FragmentStates) -> Tensor:
        """bool ``[B, T]``: attaching library stem ``t`` leaves a legal continuation.

        Below ``min_fragments`` the tree must keep a free stem, or it could neither stop nor grow.
        """
        n_free = self.free_stems(states).sum((1, 2))
        after = n_free[:, None] - 1 + (self._n_stems[self._stem_frag] - 1)[None, :]
        return (states.n + 1 >= self.min_fragments)[:, None] | (after >= 1)

    def backward_masks(self, states: FragmentStates) -> list[Tensor]:
        """Legal backward actions: ``[remove [num_nodes, 1]]``, true on leaf fragments."""
        valid = torch.arange(states.frag.shape[1]) < states.n[:, None]
        return [(self.degree(states) <= 1)[valid][:, None]]

    def num_parents(self, states: FragmentStates) -> Tensor:
        """Number of legal backward actions of each state (leaves), long ``[B]``."""
        valid = torch.arange(states.frag.shape[1]) < states.n[:, None]
        return ((self.degree(states) <= 1) & valid).sum(1)

    # -- transitions ---------------------------------------------------------------------------
    def step(self, states: FragmentStates, actions: Tensor, check: bool = True) -> FragmentStates:
        """Apply forward actions ``[B, 3]``; ``stop`` leaves a state unchanged. Returns new states.

        ``check=False`` skips validating the actions, for callers that drew them from this
        environment's masks (the sampler)."""
        if check:
            self._check_forward(states, actions)
        s = states.clone()
        t, row, col = actions.unbind(1)
        first = (t == ADD_FIRST).nonzero().flatten()
        s.frag[first, 0] = col[first]
        s.n[first] = 1
        att = (t == ATTACH).nonzero().flatten()
        if att.numel():
            k, lib_stem = col[att] // self.T, col[att] % self.T
            new_f, j = self._stem_frag[lib_stem], self._stem_slot[lib_stem]
            pos = s.n[att]
            s.frag[att, pos] = new_f
            s.edges[att, pos - 1] = torch.stack([row[att], pos, k, j], 1)
            s.stem_used[att, row[att], k] = True
            s.stem_used[att, pos, j] = True
            s.n[att] += 1
        return s

    def backward_step(self, states: FragmentStates, actions: Tensor) -> tuple[FragmentStates, Tensor]:
        """Remove leaf ``row`` of each state. ``actions: [B, 3]`` (type ``remove``).

        Returns the parent states and, per state, the forward action that rebuilds the child
        from its parent (``[B, 3]``).
        """
        B, N = states.frag.shape
        leaf = actions[:, 1]
        ok = (actions[:, 0] == REMOVE) & (leaf < states.n) & (leaf >= 0)
        ok &= self.degree(states).gather(1, leaf.clamp(0, N - 1)[:, None]).squeeze(1) <= 1
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(f"illegal backward actions for states {bad[:10]}: {actions[bad[:3]].tolist()}")
        s = states.clone()
        bidx = torch.arange(B)
        fwd = torch.zeros(B, 3, dtype=torch.long)
        single = states.n == 1
        fwd[single] = torch.stack([torch.full_like(leaf[single], ADD_FIRST), torch.zeros_like(leaf[single]),
                                   states.frag[single, 0]], 1)
        multi = ~single
        if bool(multi.any()):
            E = N - 1
            e_valid = torch.arange(E) < (states.n - 1)[:, None]
            touch = ((states.edges[..., 0] == leaf[:, None]) | (states.edges[..., 1] == leaf[:, None])) & e_valid
            e_leaf = touch.float().argmax(1)  # the one bond of the leaf
            bond = states.edges[bidx, e_leaf]  # [B, 4]
            leaf_is_u = bond[:, 0] == leaf
            other = torch.where(leaf_is_u, bond[:, 1], bond[:, 0])
            stem_other = torch.where(leaf_is_u, bond[:, 3], bond[:, 2])
            stem_leaf = torch.where(leaf_is_u, bond[:, 2], bond[:, 3])
            s.stem_used[bidx[multi], other[multi], stem_other[multi]] = False
            # drop bond e_leaf, shifting later bonds down, then renumber nodes past the leaf
            eidx = (torch.arange(E) + (torch.arange(E) >= e_leaf[:, None]).long()).clamp_max(E - 1)
            new_edges = s.edges.gather(1, eidx[..., None].expand(-1, -1, 4))
            ends = new_edges[..., :2]
            new_edges[..., :2] = ends - (ends > leaf[:, None, None]).long()
            keep_e = torch.arange(E) < (states.n - 2)[:, None]
            new_edges[~keep_e] = -1
            s.edges[multi] = new_edges[multi]
            parent_row = other - (other > leaf).long()
            lib_stem = self._stem_id[states.frag[bidx, leaf], stem_leaf]
            fwd[multi] = torch.stack([torch.full_like(leaf, ATTACH), parent_row, stem_other * self.T + lib_stem], 1)[multi]
        nidx = (torch.arange(N) + (torch.arange(N) >= leaf[:, None]).long()).clamp_max(N - 1)
        s.frag = s.frag.gather(1, nidx)
        s.stem_used = s.stem_used.gather(1, nidx[..., None].expand(-1, -1, self.S))
        s.n = states.n - 1
        gone = torch.arange(N) >= s.n[:, None]
        s.frag[gone] = -1
        s.stem_used[gone] = False
        return s, fwd

    def _check_forward(self, states: FragmentStates, actions: Tensor) -> None:
        if actions.shape != (len(states), 3):
            raise ValueError(f"actions must have shape [{len(states)}, 3], got {tuple(actions.shape)}")
        t, row, col = actions.unbind(1)
        n = states.n
        ok = torch.zeros_like(n, dtype=torch.bool)
        ok |= (t == STOP) & (n >= self.min_fragments) & (row == 0) & (col == 0)
        ok |= (t == ADD_FIRST) & (n == 0) & (row == 0) & (col >= 0) & (col < self.F)
        free = self.free_stems(states)
        r, k = row.clamp(0, self.max_fragments - 1), (col // self.T).clamp(0, self.S - 1)
        ok |= ((t == ATTACH) & (n < self.max_fragments) & (row >= 0) & (row < n) & (col >= 0)
               & (col < self.S * self.T) & free[torch.arange(len(states)), r, k]
               & self._keeps_growing(states).gather(1, (col % self.T).clamp_min(0)[:, None]).squeeze(1))
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(f"illegal forward actions for states {bad[:10]}: {actions[bad[:3]].tolist()}")

    # -- chemistry and identity ----------------------------------------------------------------
    def to_mol(self, states: FragmentStates, i: int):
        """State ``i`` as a sanitized RDKit molecule."""
        return self.library.assemble(states.fragments(i), states.bonds(i))

    def canonical_key(self, states: FragmentStates, i: int) -> str | None:
        """A string equal for two states iff their labelled trees are isomorphic.

        Nodes are labelled by fragment and bonds by the stems they use at both ends. The tree is
        rooted at its centre(s) (AHU canonical form). ``None`` if the bonds do not form a tree.
        """
        codes = self._centre_codes(states, i)
        return min(codes) if codes is not None else None

    def log_automorphisms(self, states: FragmentStates) -> Tensor:
        r"""``log |Aut(s)|`` of each state's labelled tree, ``[B]``.

        Children of a fragment sit on distinct stems, so the only possible symmetry swaps the two
        halves of a tree with two centres: ``|Aut| = 2`` when both halves read the same, else 1.
        Balance over actions learns :math:`p(x) \propto R(x)/|\mathrm{Aut}(x)|` (Ma et al. 2023).
        """
        out = torch.zeros(len(states))
        for i in range(len(states)):
            codes = self._centre_codes(states, i)
            if codes is not None and len(codes) == 2 and codes[0] == codes[1]:
                out[i] = math.log(2.0)
        return out

    def log_reward_correction(self, states: FragmentStates) -> Tensor:
        """What the trainer adds to ``beta * log R(x)`` so that balance over actions learns
        ``R(x)^beta`` over objects: :meth:`log_automorphisms`, ``[B]``."""
        return self.log_automorphisms(states)

    def backward_actions(self, states: FragmentStates, actions: Tensor) -> Tensor:
        """The backward action that undoes each non-stop forward action, ``[B, 3]``, in the
        child's indexing: remove the fragment that ``add_first`` or ``attach`` placed (its node
        index is the parent's fragment count)."""
        return torch.stack([torch.full_like(states.n, REMOVE), states.n, torch.zeros_like(states.n)], 1)

    def _centre_codes(self, states: FragmentStates, i: int) -> list[str] | None:
        """The AHU code of state ``i`` rooted at each of its one or two centres; ``None`` if the
        bonds do not form a tree."""
        frags, bonds = states.fragments(i), states.bonds(i)
        n = len(frags)
        if n == 0:
            return ["()"]
        adj: list[list[tuple[int, int, int]]] = [[] for _ in range(n)]
        for u, v, su, sv in bonds:
            adj[u].append((v, su, sv))
            adj[v].append((u, sv, su))
        seen, stack = {0}, [0]
        while stack:
            for nb, _, _ in adj[stack.pop()]:
                if nb not in seen:
                    seen.add(nb)
                    stack.append(nb)
        if len(seen) != n or len(bonds) != n - 1:
            return None
        deg = [len(a) for a in adj]
        layer = [i for i in range(n) if deg[i] <= 1]
        left = n
        while left > 2:
            left -= len(layer)
            nxt = []
            for leaf in layer:
                for nb, _, _ in adj[leaf]:
                    deg[nb] -= 1
                    if deg[nb] == 1:
                        nxt.append(nb)
            layer = nxt

        def encode(node: int, parent: int) -> str:
            kids = sorted(f"{s_self}-{s_kid}:{encode(kid, node)}" for kid, s_self, s_kid in adj[node] if kid != parent)
            return f"{frags[node]}({','.join(kids)})"

        return [encode(c, -1) for c in layer]
