"""The action space of a batch of graphs: action types, the graph of each row of logits, and a
masked categorical distribution over every action."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

LEVELS = ("graph", "node", "edge")


@dataclass(frozen=True)
class ActionType:
    """One kind of action, tied to one kind of graph element.

    Args:
        name: what the action does, e.g. ``"stop"`` or ``"attach"``.
        level: the element that carries the logits: ``"graph"`` (one row per graph),
            ``"node"`` (one row per node) or ``"edge"`` (one row per action edge).
        width: the number of choices on each row.
    """

    name: str
    level: str
    width: int

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"ActionType {self.name!r}: level must be one of {LEVELS}, got {self.level!r}")
        if self.width < 1:
            raise ValueError(f"ActionType {self.name!r}: width must be >= 1, got {self.width}")


def action_edge_index(data: Batch) -> Tensor:
    """The edges that carry edge-level actions, ``[2, num_action_edges]``.

    ``data.action_edge_index`` when the environment sets it, else each undirected edge once
    (the direction with ``source < target``).
    """
    if getattr(data, "action_edge_index", None) is not None:
        return data.action_edge_index
    ei = data.edge_index
    return ei[:, ei[0] < ei[1]]


def element_batch(data: Batch, level: str) -> Tensor:
    """The graph of each row of a ``level``-level action type, long ``[n_rows]``: the ``batch``
    argument of :class:`GraphActionCategorical` for that type.

    Shapes: ``[num_graphs]`` (``"graph"``), ``[num_nodes]`` (``"node"``) or
    ``[num_action_edges]`` (``"edge"``, the edges of :func:`action_edge_index`).
    """
    if level == "graph":
        return torch.arange(data.num_graphs, device=data.x.device)
    if level == "node":
        return data.batch
    return data.batch[action_edge_index(data)[0]]


class GraphActionCategorical:
    r"""A categorical over every action of every graph in a batch, normalised per graph.

    Each action type :math:`t` contributes a logit matrix of shape ``[n_t, w_t]`` whose rows
    belong to graphs through ``batch[t]``. The distribution of graph :math:`b` is the softmax
    over all unmasked entries of all types whose row belongs to :math:`b`. Work over the
    ``w_t`` choices of a row is dense; only per-row summaries (``[n_t]``) go through segment
    operations over graphs, so there is no loop over graphs and the large per-entry tensors
    are never scattered.

    Every graph's logits are shifted by its best legal logit (detached), which changes no
    probability and makes the log-sum-exp exact and overflow-free. With ``max_log_ratio`` the
    shifted logits are also raised to at least ``-max_log_ratio``: no legal action is then less
    likely than ``exp(-max_log_ratio)`` times the graph's most likely one (the entries raised get
    no gradient), and actions within that bound keep their ratios.

    Masked actions get probability exactly 0 and gradient exactly 0. A graph with no unmasked
    action is an error unless ``allow_empty`` (then it must not be sampled or queried).

    An action is a row ``(type, row, col)`` of a long tensor ``[num_graphs, 3]``, where ``row``
    is *local* to its graph (the node index inside that graph for node-level types, 0 for
    graph-level types).

    Args:
        logits: per type, ``[n_t, w_t]``.
        masks: per type, bool ``[n_t, w_t]``; ``True`` marks an allowed action.
        batch: per type, long ``[n_t]``, the graph of each row, sorted ascending.
        num_graphs: the number of graphs ``B``.
        allow_empty: accept graphs with no legal action (e.g. initial states under a backward
            policy).
        max_log_ratio: the largest log-ratio of the probabilities of two legal actions of one
            graph (``0``: unbounded).
    """

    def __init__(self, logits: Sequence[Tensor], masks: Sequence[Tensor], batch: Sequence[Tensor], num_graphs: int,
                 allow_empty: bool = False, max_log_ratio: float = 0.0):
        if not (len(logits) == len(masks) == len(batch)):
            raise ValueError("logits, masks and batch must have one entry per action type")
        self.num_graphs = B = int(num_graphs)
        for t, (l, m, b) in enumerate(zip(logits, masks, batch)):
            if l.dim() != 2 or m.shape != l.shape or b.shape != l.shape[:1]:
                raise ValueError(f"action type {t}: logits {tuple(l.shape)}, mask {tuple(m.shape)} "
                                 f"and batch {tuple(b.shape)} do not match")
        if max_log_ratio < 0:
            raise ValueError(f"max_log_ratio must be >= 0, got {max_log_ratio}")
        self.masks, self.batch = list(masks), list(batch)
        self.widths = [int(l.shape[1]) for l in logits]
        self.dtype = logits[0].dtype
        self.device = device = logits[0].device
        self._row_batch = torch.cat(self.batch)  # the graph of every row of every type, [R]
        sizes = torch.tensor([int(l.shape[0]) for l in logits], device=device)
        self._type_end = sizes.cumsum(0)  # [T]: where each type's rows end in the concatenation
        self._type_start = self._type_end - sizes
        counts = (torch.stack([torch.bincount(b, minlength=B)[:B] for b in batch]) if B
                  else torch.zeros(len(batch), 0, dtype=torch.long, device=device))
        self.row_offsets = counts.cumsum(1) - counts  # first row of each graph, per type: [T, B]
        self.row_counts = counts  # [T, B]
        neg_inf = torch.tensor(float("-inf"), dtype=self.dtype, device=device)
        best = self._per_graph([torch.where(m, l.detach(), neg_inf).amax(1) for l, m in zip(logits, masks)], "max")
        # PyG's max leaves a graph without rows at 0: such a graph has no legal action either
        self.empty = ~torch.isfinite(best) | (counts.sum(0) == 0)  # [B]
        if B and not allow_empty and bool(self.empty.any()):
            bad = self.empty.nonzero().flatten().tolist()
            raise ValueError(f"graphs {bad[:10]} have every action masked; the environment offered no legal action")
        shift = torch.where(self.empty, torch.zeros_like(best), best)
        # per type, the shifted (and bounded) logits, -inf where masked: the distribution itself
        self.masked = []
        for l, m, b in zip(logits, masks, batch):
            y = l - shift[b][:, None]
            if max_log_ratio:
                y = y.clamp_min(-max_log_ratio)
            self.masked.append(torch.where(m, y, neg_inf))
        row_mass = torch.cat([y.exp().sum(1) for y in self.masked])  # [R], each <= w_t, some >= 1
        self._row_log_mass = row_mass.detach().log()  # [R], for two-stage sampling
        mass = scatter(row_mass, self._row_batch, dim=0, dim_size=B, reduce="sum")
        # a graph with no legal action gets 0, not log 0, so no NaN gradient flows back
        self.log_norm = torch.where(self.empty, torch.ones_like(mass), mass).log()  # [B]

    # -- per-row summaries reduced over graphs -------------------------------------------------
    def _per_graph(self, rows: list[Tensor], reduce: str) -> Tensor:
        """Reduce per-row values (per type ``[n_t]``) to per-graph ``[B]``."""
        return scatter(torch.cat(rows), self._row_batch, dim=0, dim_size=self.num_graphs, reduce=reduce)

    def _best_row(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """For each graph, the row (over all types) with the largest score, the first on ties:
        ``(type [B], row [B])``, the row indexing that type's rows. ``scores: [R]``, ``-inf``
        for rows that may not be chosen; every graph must have a finite one."""
        b = self._row_batch
        best = scatter(scores, b, dim=0, dim_size=self.num_graphs, reduce="max")
        pos = torch.arange(scores.shape[0], device=self.device)
        win = scatter(torch.where(scores == best[b], pos, scores.shape[0]), b, dim=0,
                      dim_size=self.num_graphs, reduce="min").clamp(0, max(scores.shape[0] - 1, 0))
        t = torch.searchsorted(self._type_end, win, right=True)
        return t, win - self._type_start[t]

    def _cols(self, t: Tensor, row: Tensor, scores) -> Tensor:
        """The column of each graph's chosen row with the largest ``scores(k, rows) -> [s, w_k]``."""
        col = torch.zeros_like(t)
        for k in range(len(self.masked)):
            sel = (t == k).nonzero().flatten()
            if sel.numel():
                col[sel] = scores(k, row[sel], sel).argmax(1)
        return col

    def _local(self, t: Tensor, row: Tensor) -> Tensor:
        """Actions ``[B, 3]`` from each graph's type and row (indexing that type's rows)."""
        graph = torch.arange(self.num_graphs, device=self.device)
        return torch.stack([t, row - self.row_offsets[t, graph]], 1)

    # -- the distribution ----------------------------------------------------------------------
    def log_prob(self, actions: Tensor, graph: Tensor | None = None, check: bool = True) -> Tensor:
        """Log-probability of actions. ``actions: [K, 3]`` of graphs ``graph [K]`` (default: one
        action per graph, ``K = B``) -> ``[K]``.

        ``check=False`` skips the checks that each action is in range and legal, for callers
        that drew the actions from this distribution (a masked action then gets ``-inf``)."""
        if graph is None:
            if actions.shape != (self.num_graphs, 3):
                raise ValueError(f"actions must have shape [{self.num_graphs}, 3], got {tuple(actions.shape)}")
            graph = torch.arange(self.num_graphs, device=actions.device)
        elif actions.shape != (graph.shape[0], 3):
            raise ValueError(f"actions must have shape [{graph.shape[0]}, 3], got {tuple(actions.shape)}")
        if check:
            self._check(actions, graph)
        t, row, col = actions.unbind(-1)
        out = torch.zeros(actions.shape[0], dtype=self.dtype, device=actions.device)
        for k, x in enumerate(self.masked):
            sel = (t == k).nonzero().flatten()
            if sel.numel():
                out = out.index_put((sel,), x[self.row_offsets[k, graph[sel]] + row[sel], col[sel]])
        return out - self.log_norm[graph]

    def _check(self, actions: Tensor, graph: Tensor) -> None:
        t, row, col = actions.unbind(-1)
        widths = torch.tensor(self.widths, device=actions.device)
        in_range = (t >= 0) & (t < len(self.widths)) & (row >= 0) & (col >= 0)
        tt = t.clamp(0, len(self.widths) - 1)
        in_range &= (row < self.row_counts[tt, graph]) & (col < widths[tt])
        if not bool(in_range.all()):
            raise ValueError(f"actions of graphs {graph[~in_range][:10].tolist()} are out of range: "
                             f"{actions[~in_range][:3].tolist()}")
        legal = torch.ones(actions.shape[0], dtype=torch.bool, device=actions.device)
        for k, m in enumerate(self.masks):
            sel = (t == k).nonzero().flatten()
            if sel.numel():
                legal[sel] = m[self.row_offsets[k, graph[sel]] + row[sel], col[sel]]
        if not bool(legal.all()):
            raise ValueError(f"actions of graphs {graph[~legal][:10].tolist()} are masked (illegal): "
                             f"{actions[~legal][:3].tolist()}")

    def log_probs(self) -> list[Tensor]:
        """Per type, the log-probabilities ``[n_t, w_t]`` (``-inf`` where masked)."""
        return [x - self.log_norm[b][:, None] for x, b in zip(self.masked, self.batch)]

    def legal_actions(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every legal action of every graph: ``(graph [A], actions [A, 3], log_prob [A])``,
        grouped by action type."""
        graphs, actions, lps = [], [], []
        for k, (lp, m, b) in enumerate(zip(self.log_probs(), self.masks, self.batch)):
            r, c = m.nonzero(as_tuple=True)
            g = b[r]
            graphs.append(g)
            actions.append(torch.stack([torch.full_like(r, k), r - self.row_offsets[k, g], c], 1))
            lps.append(lp[r, c])
        return torch.cat(graphs), torch.cat(actions), torch.cat(lps)

    def sample(self, epsilon: float | Tensor = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw one action per graph, ``[B, 3]``.

        With probability ``epsilon`` (a float or a ``[B]`` tensor) a graph's action is drawn
        uniformly among its legal actions instead of from the policy.

        Two exact stages, so that random numbers are drawn per row rather than per entry: a row
        with probability its share of the graph's mass, then an entry of that row from the
        row's softmax (each by Gumbel-max). Random numbers come from ``generator`` on its own
        device (a CPU generator also serves a model on a GPU).
        """
        eps = torch.as_tensor(epsilon, dtype=self.dtype, device=self.device).expand(self.num_graphs)
        uniform = None
        if bool((eps > 0).any()):
            uniform = self._rand((self.num_graphs,), generator) < eps
        lm = self._row_log_mass
        if uniform is not None:  # a uniform action picks a row by its number of legal entries
            n_legal = torch.cat([m.sum(1) for m in self.masks]).to(lm.dtype)
            lm = torch.where(uniform[self._row_batch], n_legal.log(), lm)
        t, row = self._best_row(lm + self._gumbel(lm.shape, generator))

        def scores(k, rows, sel):
            x = self.masked[k][rows].detach()
            if uniform is not None:
                x = torch.where(uniform[sel][:, None] & self.masks[k][rows], torch.zeros_like(x), x)
            return x + self._gumbel(x.shape, generator)

        return torch.cat([self._local(t, row), self._cols(t, row, scores)[:, None]], 1)

    def _rand(self, shape, generator: torch.Generator | None) -> Tensor:
        dev = generator.device if generator is not None else self.device
        return torch.rand(shape, generator=generator, dtype=self.dtype, device=dev).to(self.device)

    def _gumbel(self, shape, generator: torch.Generator | None) -> Tensor:
        # -log(-log U): torch.rand is ~5x faster than exponential_ on CPU
        return -torch.log(-torch.log(self._rand(shape, generator).clamp(1e-12, 1.0 - 1e-7)))

    def argmax(self) -> Tensor:
        """The most probable action of each graph, ``[B, 3]`` (the first on ties)."""
        t, row = self._best_row(torch.cat([x.detach().amax(1) for x in self.masked]))
        return torch.cat([self._local(t, row), self._cols(t, row, lambda k, r, s: self.masked[k][r].detach())[:, None]], 1)

    def entropy(self) -> Tensor:
        """Entropy of each graph's distribution, ``[B]``."""
        rows = []
        for lp, m in zip(self.log_probs(), self.masks):
            lp = torch.where(m, lp, torch.zeros_like(lp))  # no -inf, so no NaN gradient through exp * lp
            rows.append(torch.where(m, lp.exp() * lp, torch.zeros_like(lp)).sum(1))
        return -self._per_graph(rows, "sum")

    def uniform_log_prob(self) -> Tensor:
        """Log-probability of any legal action under the uniform policy, ``[B]``."""
        return -self._per_graph([m.sum(1) for m in self.masks], "sum").to(self.dtype).log()
