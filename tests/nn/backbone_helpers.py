"""Node models of a user's own, importable by path for tests/nn/test_backbones.py
(``ModelConfig(backbone="tests.nn.backbone_helpers:EdgeGatedGCN")``)."""
from torch import Tensor, nn
from torch_geometric.nn import GCNConv


class EdgeGatedGCN(nn.Module):
    """GCN layers whose edge weights are a learned gate of the edge features, in PyG's
    ``BasicGNN`` convention: ``x [N, in_channels] -> [N, hidden_channels]``."""

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int, edge_dim: int | None = None,
                 gate_bias: float = 0.0):
        super().__init__()
        self.gate = nn.Linear(edge_dim, 1) if edge_dim is not None else None
        if self.gate is not None:
            nn.init.constant_(self.gate.bias, gate_bias)
        self.convs = nn.ModuleList(GCNConv(in_channels if i == 0 else hidden_channels, hidden_channels)
                                   for i in range(num_layers))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        weight = self.gate(edge_attr).sigmoid().squeeze(-1) if self.gate is not None else None
        for i, conv in enumerate(self.convs):
            x = conv(x, edge_index, weight)
            x = x.relu() if i < len(self.convs) - 1 else x
        return x


class HalfWidth(nn.Module):
    """Breaks the contract: returns node embeddings half as wide as asked."""

    def __init__(self, in_channels: int, hidden_channels: int):
        super().__init__()
        self.lin = nn.Linear(in_channels, hidden_channels // 2)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.lin(x)
