"""GraphGPS as a PyG-style node model: a stack of ``GPSConv`` layers.

PyG ships the layer (``torch_geometric.nn.GPSConv``) but no model; this stack is the one of
PyG's ``examples/graph_gps.py``, in the ``BasicGNN`` calling convention so that
:class:`~lgfn_graph.nn.adapter.NodeModelBackbone` wraps it like any stock model.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch_geometric.nn import GINConv, GINEConv, GPSConv


class GPS(nn.Module):
    r"""GraphGPS (Rampášek et al., *Recipe for a General, Powerful, Scalable Graph Transformer*,
    NeurIPS 2022): each layer adds a local GIN(E) message pass and global multi-head attention
    over the nodes of each graph, with residuals and an MLP.

    Args:
        hidden_channels: the node width ``H``, in and out (the adapter projects node features
            to ``H`` first).
        num_layers: ``GPSConv`` layers.
        heads: attention heads (must divide ``H``).
        edge_dim: edge feature width ``F_e``: the local pass is ``GINEConv`` reading edge
            features; ``None``: ``GINConv`` without them.
        dropout, act, attn_type, attn_kwargs: passed to every ``GPSConv``.
        norm, norm_kwargs: passed to every ``GPSConv``. The default is PyG's per-graph
            ``LayerNorm``, not ``GPSConv``'s batch norm: batch statistics would make each
            state's policy depend on the other states of the batch, and batch norm fails on a
            batch of one node.

    Shapes:
        - **input:** ``x [N, H]``, ``edge_index [2, E]``, ``edge_attr [E, F_e]``, ``batch [N]``
          (at least one node: ``GPSConv`` cannot size the attention of an empty batch)
        - **output:** ``[N, H]``
    """

    def __init__(self, hidden_channels: int, num_layers: int, heads: int = 1, edge_dim: int | None = None,
                 dropout: float = 0.0, act: str = "relu", norm: str | None = "layer_norm",
                 norm_kwargs: dict[str, Any] | None = None, attn_type: str = "multihead",
                 attn_kwargs: dict[str, Any] | None = None):
        super().__init__()
        self.edge_dim = edge_dim
        self.convs = nn.ModuleList(
            GPSConv(hidden_channels, self._local(hidden_channels, edge_dim), heads=heads, dropout=dropout, act=act,
                    norm=norm, norm_kwargs=norm_kwargs, attn_type=attn_type, attn_kwargs=attn_kwargs)
            for _ in range(num_layers))

    @staticmethod
    def _local(hidden: int, edge_dim: int | None) -> nn.Module:
        mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        return GINEConv(mlp, edge_dim=edge_dim) if edge_dim is not None else GINConv(mlp)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None) -> Tensor:
        edges = {"edge_attr": edge_attr} if self.edge_dim is not None else {}
        for conv in self.convs:
            x = conv(x, edge_index, batch, **edges)
        return x


__all__ = ["GPS"]
