"""Action heads: one MLP per action type, reading node, edge or graph embeddings."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ..categorical import ActionType, action_edge_index


def mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.LeakyReLU(), nn.Linear(hidden, out))


class ActionHeads(nn.Module):
    """Logits for every action type from the backbone's embeddings.

    Graph-level heads read the graph embedding; node-level heads read each node's embedding
    beside its graph's; edge-level heads read the sum of the two end nodes' embeddings beside
    the graph's.

    Shapes:
        - **input:** ``node [num_nodes, H]``, ``graph [num_graphs, H]``, the PyG batch
        - **output:** per type ``t``, logits ``[n_t, width_t]``
    """

    def __init__(self, action_types: list[ActionType], hidden: int):
        super().__init__()
        self.action_types = list(action_types)
        self.hidden = hidden
        self.mlps = nn.ModuleList(mlp(hidden if t.level == "graph" else 2 * hidden, hidden, t.width)
                                  for t in self.action_types)

    def forward(self, node: Tensor, graph: Tensor, data: Batch) -> list[Tensor]:
        out = []
        for t, head in zip(self.action_types, self.mlps):
            if t.level == "graph":
                inp = graph
            elif t.level == "node":
                inp = torch.cat([node, graph[data.batch]], dim=1)
            else:
                ei = action_edge_index(data)
                inp = torch.cat([node[ei[0]] + node[ei[1]], graph[data.batch[ei[0]]]], dim=1)
            out.append(head(inp))
        return out
