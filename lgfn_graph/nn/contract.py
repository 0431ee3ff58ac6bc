"""The backbone contract and its check: what the policy needs from any backbone.

A backbone is a module ``backbone(data, cond) -> (node, graph)`` where, for a PyG ``Batch``
``data`` of ``B = data.num_graphs`` graphs and ``N = data.num_nodes`` nodes,

* ``node`` is ``[N, H]``: one embedding per node, in the order of ``data.x``;
* ``graph`` is ``[B, H]``: one embedding per graph, *including graphs with no nodes* (the
  initial state is an empty graph), so pooling must be given ``size=num_graphs``;
* ``cond`` is ``None`` or the beta embedding ``[B, C]`` of layer conditioning.

``H`` is the width the action heads read (``ModelConfig.hidden``). A mistake surfaces as a
:class:`BackboneContractError` saying in one line what is wrong, before any head runs, instead
of a torch shape error deep inside the heads.
"""
from __future__ import annotations

from torch import Tensor
from torch_geometric.data import Batch


class BackboneContractError(ValueError):
    """A backbone returned something other than ``(node [N, H], graph [B, H])``."""


def check_embeddings(node: Tensor, graph: Tensor | None, data: Batch, hidden: int | None,
                     who: str = "backbone") -> None:
    """Raise :class:`BackboneContractError` unless ``node`` is ``[data.num_nodes, hidden]`` and
    ``graph`` (unless ``None``) is ``[data.num_graphs, hidden]``; ``hidden=None`` only asks the
    two widths to agree. ``who`` names the module in the message, e.g. ``backbone returned
    node embeddings of width 32, expected hidden=64``.
    """
    _check_tensor(node, "node", who)
    if node.dim() != 2 or node.shape[0] != data.num_nodes:
        raise BackboneContractError(f"{who} returned node embeddings of shape {tuple(node.shape)} for a batch of "
                                    f"{data.num_nodes} nodes, expected [{data.num_nodes}, hidden]")
    if graph is not None and (graph.dim() != 2 or graph.shape[0] != data.num_graphs):
        got = f"{graph.shape[0]} graph embeddings" if graph.dim() == 2 else f"graph embeddings of shape {tuple(graph.shape)}"
        raise BackboneContractError(f"{who} returned {got} for a batch of {data.num_graphs} graphs "
                                    f"(pool with size=num_graphs: a graph with no nodes needs one too)")
    expected = hidden if hidden is not None else node.shape[1]
    wanted = f"hidden={hidden}" if hidden is not None else f"the node embeddings' width {expected}"
    for what, x in (("node", node), ("graph", graph)):
        if x is not None and x.shape[1] != expected:
            raise BackboneContractError(f"{who} returned {what} embeddings of width {x.shape[1]}, expected {wanted}")


def check_output(out, data: Batch, hidden: int | None, who: str = "backbone") -> tuple[Tensor, Tensor]:
    """``out``, a backbone's return value, checked to be ``(node [N, H], graph [B, H])``
    (:func:`check_embeddings`)."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise BackboneContractError(f"{who} returned {type(out).__name__}, expected a pair "
                                    f"(node [num_nodes, hidden], graph [num_graphs, hidden])")
    _check_tensor(out[1], "graph", who)
    check_embeddings(out[0], out[1], data, hidden, who)
    return out[0], out[1]


def _check_tensor(x, what: str, who: str) -> None:
    if not isinstance(x, Tensor):
        raise BackboneContractError(f"{who} returned {type(x).__name__} as {what} embeddings, expected a tensor")


__all__ = ["BackboneContractError", "check_embeddings", "check_output"]
