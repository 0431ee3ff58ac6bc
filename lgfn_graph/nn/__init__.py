"""Neural network parts: the graph backbones, the adapter for PyG node models, and the action heads."""
from .adapter import NodeModelBackbone
from .backbone import CONVS, GraphTransformer, Readout
from .backbones import BACKBONES, BUILTIN, BackboneError, build_backbone, check_backbone
from .contract import BackboneContractError, check_embeddings, check_output
from .gps import GPS
from .heads import ActionHeads

__all__ = ["ActionHeads", "BACKBONES", "BackboneContractError", "BackboneError", "build_backbone", "BUILTIN",
           "check_backbone", "check_embeddings", "check_output", "CONVS", "GPS", "GraphTransformer",
           "NodeModelBackbone", "Readout"]
