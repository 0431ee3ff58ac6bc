"""A masked categorical distribution over the actions of a batch of graphs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
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


class GraphActionCategorical:
    r"""A categorical over every action of every graph in a batch, normalised per graph.

    Each action type :math:`t` contributes a logit matrix of shape ``[n_t, w_t]`` whose rows
    belong to graphs through ``batch[t]``. The distribution of graph :math:`b` is the softmax
    over all unmasked entries of all types whose row belongs to :math:`b`. Everything is done
    with segment operations over one flat vector; there is no loop over graphs.

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
    """

    def __init__(self, logits: Sequence[Tensor], masks: Sequence[Tensor], batch: Sequence[Tensor], num_graphs: int,
                 allow_empty: bool = False):
        if not (len(logits) == len(masks) == len(batch)):
            raise ValueError("logits, masks and batch must have one entry per action type")
        self.num_graphs = B = int(num_graphs)
        for t, (l, m, b) in enumerate(zip(logits, masks, batch)):
            if l.dim() != 2 or m.shape != l.shape or b.shape != l.shape[:1]:
                raise ValueError(f"action type {t}: logits {tuple(l.shape)}, mask {tuple(m.shape)} "
                                 f"and batch {tuple(b.shape)} do not match")
        self.widths = [int(l.shape[1]) for l in logits]
        device = logits[0].device
        sizes = [l.numel() for l in logits]
        self.type_offsets = torch.tensor([0] + sizes, device=device).cumsum(0)  # [T + 1]
        self.widths_t = torch.tensor(self.widths, device=device)
        # first row of each graph, per type: [T, B]
        counts = torch.stack([torch.bincount(b, minlength=B)[:B] for b in batch]) if B else torch.zeros(len(batch), 0, dtype=torch.long, device=device)
        self.row_offsets = counts.cumsum(1) - counts
        self.row_counts = counts  # [T, B]
        self.flat_logits = torch.cat([l.reshape(-1) for l in logits])
        self.flat_mask = torch.cat([m.reshape(-1) for m in masks])
        self.flat_batch = torch.cat([b.repeat_interleave(w) for b, w in zip(batch, self.widths)])
        n_valid = scatter(self.flat_mask.long(), self.flat_batch, dim=0, dim_size=B, reduce="sum")
        if B and not allow_empty and bool((n_valid == 0).any()):
            bad = (n_valid == 0).nonzero().flatten().tolist()
            raise ValueError(f"graphs {bad[:10]} have every action masked; the environment offered no legal action")
        self.n_valid = n_valid  # [B]
        masked = torch.where(self.flat_mask, self.flat_logits, float("-inf"))
        # subtract a detached per-graph max for a stable log-sum-exp
        gmax = scatter(masked.detach(), self.flat_batch, dim=0, dim_size=B, reduce="max")
        gmax = torch.where(torch.isfinite(gmax), gmax, torch.zeros_like(gmax))
        sum_exp = scatter((masked - gmax[self.flat_batch]).exp(), self.flat_batch, dim=0, dim_size=B, reduce="sum")
        self.log_norm = sum_exp.log() + gmax  # [B]
        self.flat_log_probs = torch.where(self.flat_mask, self.flat_logits - self.log_norm[self.flat_batch],
                                          float("-inf"))

    # -- conversions between actions and flat positions -------------------------------------
    def _flat_index(self, actions: Tensor, graph: Tensor) -> Tensor:
        t, row, col = actions.unbind(-1)
        grow = self.row_offsets[t, graph] + row
        return self.type_offsets[t] + grow * self.widths_t[t] + col

    def _decode(self, flat: Tensor, graph: Tensor | None = None) -> Tensor:
        if graph is None:
            graph = torch.arange(flat.shape[0], device=flat.device)
        t = torch.searchsorted(self.type_offsets, flat, right=True) - 1
        within = flat - self.type_offsets[t]
        grow = within // self.widths_t[t]
        col = within % self.widths_t[t]
        return torch.stack([t, grow - self.row_offsets[t, graph], col], dim=-1)

    def _segment_argmax(self, scores: Tensor) -> Tensor:
        """Flat position of the largest unmasked score of each graph: ``[B]``."""
        scores = torch.where(self.flat_mask, scores, float("-inf"))
        best = scatter(scores, self.flat_batch, dim=0, dim_size=self.num_graphs, reduce="max")
        pos = torch.arange(scores.shape[0], device=scores.device)
        cand = self.flat_mask & (scores == best[self.flat_batch])
        big = torch.full_like(pos, scores.shape[0])
        return scatter(torch.where(cand, pos, big), self.flat_batch, dim=0, dim_size=self.num_graphs, reduce="min")

    # -- the distribution ----------------------------------------------------------------------
    def log_prob(self, actions: Tensor, graph: Tensor | None = None) -> Tensor:
        """Log-probability of actions. ``actions: [K, 3]`` of graphs ``graph [K]`` (default: one
        action per graph, ``K = B``) -> ``[K]``."""
        if graph is None:
            if actions.shape != (self.num_graphs, 3):
                raise ValueError(f"actions must have shape [{self.num_graphs}, 3], got {tuple(actions.shape)}")
            graph = torch.arange(self.num_graphs, device=actions.device)
        elif actions.shape != (graph.shape[0], 3):
            raise ValueError(f"actions must have shape [{graph.shape[0]}, 3], got {tuple(actions.shape)}")
        t, row, col = actions.unbind(-1)
        in_range = (t >= 0) & (t < len(self.widths)) & (row >= 0) & (col >= 0)
        tt = t.clamp(0, len(self.widths) - 1)
        in_range &= (row < self.row_counts[tt, graph]) & (col < self.widths_t[tt])
        if not bool(in_range.all()):
            bad = graph[~in_range].tolist()
            raise ValueError(f"actions of graphs {bad[:10]} are out of range: {actions[~in_range][:3].tolist()}")
        flat = self._flat_index(actions, graph)
        if bool((~self.flat_mask[flat]).any()):
            bad = graph[~self.flat_mask[flat]].tolist()
            raise ValueError(f"actions of graphs {bad[:10]} are masked (illegal): {actions[~self.flat_mask[flat]][:3].tolist()}")
        return self.flat_log_probs[flat]

    def legal_actions(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every legal action of every graph: ``(graph [A], actions [A, 3], log_prob [A])``,
        grouped by action type."""
        flat = self.flat_mask.nonzero().flatten()
        graph = self.flat_batch[flat]
        return graph, self._decode(flat, graph), self.flat_log_probs[flat]

    def log_probs(self) -> list[Tensor]:
        """Per type, the log-probabilities ``[n_t, w_t]`` (``-inf`` where masked)."""
        out = self.flat_log_probs.split([int(x) for x in self.type_offsets.diff()])
        return [o.view(-1, w) for o, w in zip(out, self.widths)]

    def sample(self, epsilon: float | Tensor = 0.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw one action per graph (Gumbel-max), ``[B, 3]``.

        With probability ``epsilon`` (a float or a ``[B]`` tensor) a graph's action is drawn
        uniformly among its legal actions instead of from the policy.
        """
        logits = self.flat_logits.detach()
        # Gumbel noise -log(-log U); torch.rand is ~5x faster than exponential_ on CPU
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-12, 1.0 - 1e-7)))
        eps = torch.as_tensor(epsilon, dtype=logits.dtype, device=logits.device).expand(self.num_graphs)
        if bool((eps > 0).any()):
            uniform = torch.rand(self.num_graphs, generator=generator, device=logits.device) < eps
            logits = torch.where(uniform[self.flat_batch], torch.zeros_like(logits), logits)
        return self._decode(self._segment_argmax(logits + gumbel))

    def argmax(self) -> Tensor:
        """The most probable action of each graph, ``[B, 3]``."""
        return self._decode(self._segment_argmax(self.flat_logits.detach()))

    def entropy(self) -> Tensor:
        """Entropy of each graph's distribution, ``[B]``."""
        lp = self.flat_log_probs
        plogp = torch.where(self.flat_mask, lp.exp() * lp, torch.zeros_like(lp))
        return -scatter(plogp, self.flat_batch, dim=0, dim_size=self.num_graphs, reduce="sum")

    def uniform_log_prob(self) -> Tensor:
        """Log-probability of any legal action under the uniform policy, ``[B]``."""
        return -self.n_valid.to(self.flat_logits.dtype).log()
