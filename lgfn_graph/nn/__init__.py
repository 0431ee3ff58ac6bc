"""Neural network parts: the graph backbone and the action heads."""
from .backbone import GraphTransformer
from .heads import ActionHeads

__all__ = ["GraphTransformer", "ActionHeads"]
