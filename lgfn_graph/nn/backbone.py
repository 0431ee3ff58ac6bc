"""The default GNN backbone: a graph transformer over node and edge features."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, TransformerConv
from torch_geometric.utils import scatter

CONVS = ("transformer", "gine")


class Readout(nn.Sequential):
    r"""Graph embeddings from node embeddings: the mean and the sum / 8 of each graph's nodes,
    concatenated, through a two-layer MLP. Graphs with no nodes pool to zeros (``dim_size``), so
    they still get an embedding; the scaled sum tells graph sizes apart, which the mean cannot.

    Shapes:
        - **input:** ``h [num_nodes, H]``, ``batch [num_nodes]``, ``num_graphs = B``
        - **output:** ``[B, H]``
    """

    def __init__(self, hidden: int):
        super().__init__(nn.Linear(2 * hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        pooled = torch.cat([scatter(h, batch, 0, dim_size=num_graphs, reduce="mean"),
                            scatter(h, batch, 0, dim_size=num_graphs, reduce="sum") / 8.0], dim=1)
        return super().forward(pooled)


class GraphTransformer(nn.Module):
    r"""Pre-norm residual graph transformer (or GINE) layers with a pooled graph embedding.

    The built-in backbone (``ModelConfig.backbone = "graph_transformer"``). Any module that
    keeps the contract of :mod:`lgfn_graph.nn.contract` can replace it in
    :class:`~lgfn_graph.policy.Policy`; a PyG-style node model gets there through
    :class:`~lgfn_graph.nn.adapter.NodeModelBackbone`.

    Args:
        node_dim: input node feature width ``F_n``.
        edge_dim: input edge feature width ``F_e``.
        hidden: embedding width ``H``.
        num_layers: message-passing layers.
        heads: attention heads (``transformer`` only; must divide ``hidden``).
        conv: ``"transformer"`` (PyG ``TransformerConv``) or ``"gine"`` (PyG ``GINEConv``).
        cond_dim: width of the condition added to every node and to the graph embedding
            (``0``: unconditioned).

    Shapes:
        - **input:** ``data.x [num_nodes, F_n]``, ``data.edge_index [2, num_edges]``,
          ``data.edge_attr [num_edges, F_e]``, ``data.batch [num_nodes]``,
          ``cond [num_graphs, cond_dim]`` or ``None``
        - **output:** ``(node [num_nodes, H], graph [num_graphs, H])``
    """

    def __init__(self, node_dim: int, edge_dim: int, hidden: int = 128, num_layers: int = 4, heads: int = 4,
                 conv: str = "transformer", cond_dim: int = 0):
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"conv must be one of {CONVS}, got {conv!r}")
        if conv == "transformer" and hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.hidden = hidden
        self.node_in = nn.Linear(node_dim, hidden)
        self.edge_in = nn.Linear(edge_dim, hidden)
        self.cond_in = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.convs = nn.ModuleList(
            TransformerConv(hidden, hidden // heads, heads=heads, edge_dim=hidden) if conv == "transformer"
            else GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden)), edge_dim=hidden)
            for _ in range(num_layers))
        self.norms1 = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.norms2 = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(num_layers))
        self.ffns = nn.ModuleList(nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.LeakyReLU(), nn.Linear(2 * hidden, hidden))
                                  for _ in range(num_layers))
        self.readout = Readout(hidden)

    def forward(self, data: Batch, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B = data.num_graphs
        h = self.node_in(data.x)
        e = self.edge_in(data.edge_attr)
        c = self.cond_in(cond) if self.cond_in is not None and cond is not None else None
        if c is not None:
            h = h + c[data.batch]
        for conv, n1, n2, ffn in zip(self.convs, self.norms1, self.norms2, self.ffns):
            h = h + conv(n1(h), data.edge_index, e)
            h = h + ffn(n2(h))
        g = self.readout(h, data.batch, B)
        if c is not None:
            g = g + c
        return h, g
