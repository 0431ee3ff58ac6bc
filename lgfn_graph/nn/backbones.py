"""Backbones by name: the built-in graph transformer, stock PyG models, or ``package.module:Class``.

``ModelConfig.backbone`` names one and ``ModelConfig.backbone_kwargs`` gives its keyword
arguments; :func:`check_backbone` validates both when the config is made and
:func:`build_backbone` builds the backbone for an environment. Every name but the built-in is
a node model in PyG's ``BasicGNN`` convention, wrapped by
:class:`~lgfn_graph.nn.adapter.NodeModelBackbone`.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch_geometric.nn import GATConv, GATv2Conv, GINConv, MessagePassing, PNAConv, SAGEConv
from torch_geometric.nn.models import GAT, GIN, PNA, GraphSAGE

from ..checks import import_failure, import_object, is_import_path
from .adapter import NodeModelBackbone
from .backbone import GraphTransformer
from .gps import GPS

BUILTIN = "graph_transformer"


@dataclass(frozen=True)
class Stock:
    """A node model class and how a name builds it.

    Attributes:
        model: the class, called with keyword arguments.
        conv: the layer a ``BasicGNN`` passes its extra keyword arguments to (they are checked
            against its signature), or ``None``.
        fixed: keyword arguments the name sets (``gatv2`` is ``GAT`` with ``v2=True``).
        defaults: keyword arguments used unless ``backbone_kwargs`` gives them.
        inner: arguments of ``conv`` that ``model`` fills itself (``GIN`` builds the ``nn``).
    """

    model: type
    conv: type | None = None
    fixed: tuple[tuple[str, Any], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()
    inner: tuple[str, ...] = ()


STOCK = {
    "gin": Stock(GIN, GINConv, inner=("nn",)),
    "gat": Stock(GAT, GATConv),
    "gatv2": Stock(GAT, GATv2Conv, fixed=(("v2", True),)),
    "sage": Stock(GraphSAGE, SAGEConv),
    # the PNA paper's aggregators and scalers
    "pna": Stock(PNA, PNAConv, defaults=(("aggregators", ["mean", "min", "max", "std"]),
                                         ("scalers", ["identity", "amplification", "attenuation"]))),
    "gps": Stock(GPS),
}
BACKBONES = (BUILTIN, *STOCK)
#: names whose ``heads`` must divide ``hidden``
ATTENTION = ("gat", "gatv2", "gps")

# filled from the model config or the environment, never from backbone_kwargs
_SET_BY = {"in_channels": "ModelConfig.hidden", "hidden_channels": "ModelConfig.hidden",
           "out_channels": "ModelConfig.hidden", "num_layers": "ModelConfig.num_layers",
           "heads": "ModelConfig.heads", "edge_dim": "the environment's edge_dim"}


class BackboneError(ValueError):
    """A backbone name or keyword argument that cannot be used.

    Attributes:
        field: the config field at fault, ``"backbone"`` or ``"backbone_kwargs.<key>"``.
        problem: what is wrong, e.g. ``"is not a keyword argument of backbone 'gat' (did you mean 'dropout'?)"``.
    """

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def resolve(name: str) -> Stock:
    """The :class:`Stock` entry of a stock name or of an import path ``package.module:Class``
    (an ``nn.Module`` class); :class:`BackboneError` if there is none."""
    if name in STOCK:
        return STOCK[name]
    if not is_import_path(name):
        raise BackboneError("backbone", f"must be one of {BACKBONES} or an import path 'package.module:Class', "
                                        f"got {name!r}")
    try:
        cls = import_object(name)
    except Exception as e:  # the user's module may fail to import in any way; say which and why
        raise BackboneError("backbone", import_failure(name, e)) from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise BackboneError("backbone", f"{name!r} is not a torch.nn.Module class")
    return Stock(cls)


def check_backbone(name: str, kwargs: dict[str, Any], hidden: int, num_layers: int, heads: int) -> None:
    """Raise :class:`BackboneError` unless ``name`` builds with ``kwargs``: every key must be a
    keyword argument of the model (or of its ``conv``), not one the config fills (``_SET_BY``),
    and a trial build (random state untouched) must accept the values."""
    if name == BUILTIN:
        if kwargs:
            raise BackboneError("backbone_kwargs", f"must be empty for backbone {BUILTIN!r} (its settings are "
                                                   f"hidden, num_layers, heads and conv), got {kwargs!r}")
        return
    spec = resolve(name)
    names, open_ = _keywords(spec)
    for key in kwargs:
        if key in _SET_BY and key in names:
            raise BackboneError(f"backbone_kwargs.{key}", f"is set from {_SET_BY[key]}, not from backbone_kwargs")
        if key not in names - set(_SET_BY) and not open_:
            valid = sorted(names - set(_SET_BY))
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            raise BackboneError(f"backbone_kwargs.{key}", f"is not a keyword argument of backbone {name!r} ({hint})")
    # the trial build checks the values too: on the meta device (no memory, no random numbers)
    # for the stock models, on the CPU for a user's class, which may compute in its constructor;
    # two layers show what any number would, at a bounded cost
    trial = torch.device("meta") if name in STOCK else torch.device("cpu")
    with torch.random.fork_rng(devices=[]), trial:
        build_node_model(name, kwargs, hidden=hidden, num_layers=min(num_layers, 2), heads=heads, edge_dim=1,
                         max_degree=1)


def build_backbone(name: str, kwargs: dict[str, Any], *, node_dim: int, edge_dim: int, hidden: int,
                   num_layers: int, heads: int, conv: str, cond_dim: int, max_degree: int | None) -> nn.Module:
    """The backbone ``name`` for an environment's ``node_dim`` and ``edge_dim``: the built-in
    :class:`GraphTransformer` (with ``conv``), or the node model wrapped by
    :class:`NodeModelBackbone`. ``cond_dim``: width of the beta embedding (``0``: none);
    ``max_degree``: the environment's, for PNA's default degree histogram."""
    if name == BUILTIN:
        return GraphTransformer(node_dim, edge_dim, hidden, num_layers, heads, conv, cond_dim=cond_dim)
    model = build_node_model(name, kwargs, hidden=hidden, num_layers=num_layers, heads=heads, edge_dim=edge_dim,
                             max_degree=max_degree)
    return NodeModelBackbone(model, node_dim, hidden, cond_dim)


def build_node_model(name: str, kwargs: dict[str, Any], *, hidden: int, num_layers: int, heads: int,
                     edge_dim: int, max_degree: int | None) -> nn.Module:
    """The node model ``name`` reading and returning ``hidden``-wide node embeddings.

    It gets ``in_channels = hidden_channels = hidden``, ``num_layers``, ``heads`` and
    ``edge_dim`` where its signature (or its ``conv``'s) names them, then the name's defaults,
    then ``kwargs``. A model taking ``deg`` (PNA's in-degree histogram) gets ``kwargs["deg"]``
    (a list of counts) or, by default, a flat histogram over degrees ``0..max_degree``.
    Raises :class:`BackboneError` when the model rejects its arguments.
    """
    spec = resolve(name)
    names, _ = _keywords(spec)
    given = {"in_channels": hidden, "hidden_channels": hidden, "num_layers": num_layers, "heads": heads,
             "edge_dim": edge_dim}
    args = {k: v for k, v in given.items() if k in names} | dict(spec.defaults) | dict(spec.fixed) | kwargs
    if "deg" in names and "deg" not in kwargs and max_degree is None:
        raise BackboneError("backbone_kwargs.deg", f"is needed by backbone {name!r}: the environment has no "
                                                   f"max_degree to make a default histogram from")
    try:
        if "deg" in names:
            # on the CPU whatever the default device: PNA reads the histogram's values when built
            args["deg"] = torch.as_tensor(kwargs["deg"] if "deg" in kwargs else [1] * (max_degree + 1), device="cpu")
        return spec.model(**args)
    except Exception as e:  # any complaint of the constructor is about these arguments: say it in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise BackboneError("backbone_kwargs", f"cannot build backbone {name!r} with {kwargs!r} "
                                               f"({type(e).__name__}: {first})") from None


def _keywords(spec: Stock) -> tuple[set[str], bool]:
    """The keyword arguments the model (and its ``conv``) accept, and whether the model takes
    any keyword (``**kwargs`` with no ``conv`` to check them against)."""
    names, open_ = _signature(spec.model)
    if spec.conv is not None:
        conv_names, conv_open = _signature(spec.conv)
        names |= conv_names - {"in_channels", "out_channels", *spec.inner}
        if conv_open and issubclass(spec.conv, MessagePassing):
            names |= _signature(MessagePassing)[0]
        open_ = False
    return names - {name for name, _ in spec.fixed}, open_


def _signature(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


__all__ = ["BUILTIN", "STOCK", "BACKBONES", "ATTENTION", "BackboneError", "Stock", "resolve", "check_backbone",
           "build_backbone", "build_node_model"]
