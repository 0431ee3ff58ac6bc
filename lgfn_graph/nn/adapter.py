"""Any PyG-style node model as a backbone: the adapter to the contract of :mod:`.contract`."""
from __future__ import annotations

import inspect

from torch import Tensor, nn
from torch_geometric.data import Batch

from .backbone import Readout
from .contract import check_embeddings

# what the adapter passes to a model's forward besides ``(x, edge_index)``, when it names them
_FORWARD_EXTRAS = ("edge_attr", "batch", "batch_size")


class NodeModelBackbone(nn.Module):
    r"""Wraps a node model ``model(x, edge_index, ...) -> [N, H]`` (the calling convention of
    PyG's ``GIN``, ``GAT``, ``GraphSAGE``, ``PNA``..., and of :class:`~lgfn_graph.nn.gps.GPS`)
    into the backbone contract ``(data, cond) -> (node [N, H], graph [B, H])``.

    * Node features are cast to the adapter's dtype and projected to ``H`` (``node_in``); with
      layer conditioning the beta embedding is projected too and added to every node's input
      and to its graph's embedding, as :class:`~lgfn_graph.nn.GraphTransformer` does.
    * The model's forward gets ``edge_attr``, ``batch`` and ``batch_size = B`` when its
      signature names them (a model built without ``edge_dim`` ignores ``edge_attr``).
    * A batch with no nodes at all (the first step of sampling: every graph is the empty
      initial state) skips the model, which could not run on it (``GPSConv``) and would return
      ``[0, H]`` anyway.
    * Graph embeddings are :class:`~lgfn_graph.nn.backbone.Readout` of the model's node
      embeddings, pooled with ``size=B``, so graphs with no nodes get one too.
    * The model's output is checked (:func:`~lgfn_graph.nn.contract.check_embeddings`): a
      wrong width is named before the readout fails on it.

    Args:
        model: the node model, reading and returning ``H``-wide node embeddings.
        node_dim: input node feature width ``F_n``.
        hidden: the width ``H``.
        cond_dim: width of the beta embedding (``0``: unconditioned).

    Shapes:
        - **input:** ``data.x [N, F_n]``, ``data.edge_index [2, E]``, ``data.edge_attr [E, F_e]``,
          ``data.batch [N]``, ``cond [B, cond_dim]`` or ``None``
        - **output:** ``(node [N, H], graph [B, H])``
    """

    def __init__(self, model: nn.Module, node_dim: int, hidden: int, cond_dim: int = 0):
        super().__init__()
        self.hidden = hidden
        self.node_in = nn.Linear(node_dim, hidden)
        self.cond_in = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.model = model
        self.readout = Readout(hidden)
        params = inspect.signature(model.forward).parameters
        self.extras = tuple(name for name in _FORWARD_EXTRAS if name in params)

    def forward(self, data: Batch, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B = data.num_graphs
        h = self.node_in(data.x.to(self.node_in.weight.dtype))
        c = self.cond_in(cond) if self.cond_in is not None and cond is not None else None
        if c is not None:
            h = h + c[data.batch]
        if data.num_nodes > 0:
            given = {"edge_attr": data.edge_attr, "batch": data.batch, "batch_size": B}
            h = self.model(h, data.edge_index, **{k: given[k] for k in self.extras})
            check_embeddings(h, None, data, self.hidden, f"backbone model {type(self.model).__name__}")
        g = self.readout(h, data.batch, B)
        return h, g + c if c is not None else g


__all__ = ["NodeModelBackbone"]
