"""The temperature-conditional forward policy and the model that bundles it with log Z."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn
from torch_geometric.data import Batch

from .categorical import ActionType, GraphActionCategorical
from .conditioning import BetaEmbedding, LogitScaler, LogZ
from .nn import ActionHeads, GraphTransformer
from .nn.heads import element_batch

MODES = ("logit", "layer", "logit+layer", "none")


@dataclass
class ModelConfig:
    """Model size and temperature conditioning.

    Args:
        hidden, num_layers, heads, conv: the backbone (see :class:`GraphTransformer`).
        conditioning: ``"logit"`` (Logit-GFN), ``"layer"`` (beta embedding in the backbone),
            ``"logit+layer"`` or ``"none"`` (the policy ignores beta).
        scaler: ``"positive"`` or ``"unconstrained"`` (see :class:`LogitScaler`).
        beta_encoding: ``"raw"`` or ``"log"``, for every MLP of beta.
        logit_clip: scaled logits are clamped to ``[-logit_clip, logit_clip]`` (as in the
            official Logit-GFN code), which bounds every probability ratio by
            ``exp(2 * logit_clip)``; ``0`` disables the clamp.
    """

    hidden: int = 128
    num_layers: int = 4
    heads: int = 4
    conv: str = "transformer"
    conditioning: str = "logit"
    scaler: str = "positive"
    beta_encoding: str = "raw"
    logit_clip: float = 20.0

    def __post_init__(self):
        if self.conditioning not in MODES:
            raise ValueError(f"conditioning must be one of {MODES}, got {self.conditioning!r}")


class Policy(nn.Module):
    r"""Forward policy :math:`\pi(a \mid s, \beta) = \mathrm{softmax}_{\text{legal}}(g(\beta)\, f(s))`.

    Args:
        action_types: the environment's forward action types.
        backbone: module ``(data, cond) -> (node [num_nodes, H], graph [B, H])``.
        heads: module ``(node, graph, data) -> list of logits``, one per action type.
        scaler: module ``beta [B] -> [B]`` multiplying each graph's logits, or ``None``.
        beta_embedding: module ``beta [B] -> [B, C]`` passed to the backbone as ``cond``, or
            ``None``.
        logit_clip: clamp of the scaled logits (``0``: none).
    """

    def __init__(self, action_types: list[ActionType], backbone: nn.Module, heads: nn.Module,
                 scaler: nn.Module | None = None, beta_embedding: nn.Module | None = None, logit_clip: float = 20.0):
        super().__init__()
        self.action_types = list(action_types)
        self.backbone = backbone
        self.heads = heads
        self.scaler = scaler
        self.beta_embedding = beta_embedding
        self.logit_clip = logit_clip

    def logits(self, data: Batch, beta: Tensor) -> list[Tensor]:
        """Scaled, clamped logits per action type, ``[n_t, width_t]``. ``beta: [B]``."""
        cond = self.beta_embedding(beta) if self.beta_embedding is not None else None
        node, graph = self.backbone(data, cond)
        logits = self.heads(node, graph, data)
        scale = self.scaler(beta) if self.scaler is not None else None
        out = []
        for t, l in zip(self.action_types, logits):
            if scale is not None:
                l = l * scale[element_batch(data, t.level)][:, None]
            if self.logit_clip:
                l = l.clamp(-self.logit_clip, self.logit_clip)
            out.append(l)
        return out

    def forward(self, data: Batch, beta: Tensor, masks: list[Tensor]) -> GraphActionCategorical:
        """The action distribution of each graph. ``beta: [B]``; ``masks`` per type ``[n_t, width_t]``."""
        batches = [element_batch(data, t.level) for t in self.action_types]
        return GraphActionCategorical(self.logits(data, beta), masks, batches, data.num_graphs)


class TemperatureGFlowNet(nn.Module):
    """A temperature-conditional GFlowNet: forward policy and :math:`\\log Z(\\beta)`.

    The backward policy is uniform over legal backward actions.
    """

    def __init__(self, policy: Policy, log_z: nn.Module, config: ModelConfig | None = None):
        super().__init__()
        self.policy = policy
        self.log_z = log_z
        self.config = config

    @classmethod
    def build(cls, env, config: ModelConfig | None = None) -> "TemperatureGFlowNet":
        """The default model for an environment with ``node_dim``, ``edge_dim`` and action types."""
        c = config or ModelConfig()
        layer = c.conditioning in ("layer", "logit+layer")
        logit = c.conditioning in ("logit", "logit+layer")
        backbone = GraphTransformer(env.node_dim, env.edge_dim, c.hidden, c.num_layers, c.heads, c.conv,
                                    cond_dim=c.hidden if layer else 0)
        policy = Policy(env.forward_action_types, backbone, ActionHeads(env.forward_action_types, c.hidden),
                        scaler=LogitScaler(c.scaler, encoding=c.beta_encoding) if logit else None,
                        beta_embedding=BetaEmbedding(c.hidden, encoding=c.beta_encoding) if layer else None,
                        logit_clip=c.logit_clip)
        return cls(policy, LogZ(encoding=c.beta_encoding), c)

    def config_dict(self) -> dict:
        return asdict(self.config) if self.config is not None else {}

    def parameter_groups(self, lr: float, lr_log_z: float) -> list[dict]:
        """Optimizer groups: the policy at ``lr``, log Z at ``lr_log_z``."""
        return [{"params": list(self.policy.parameters()), "lr": lr},
                {"params": list(self.log_z.parameters()), "lr": lr_log_z}]


def uniform_backward_log_prob(env, states) -> Tensor:
    """``log P_B`` of the uniform backward policy at each state: ``-log(#parents)``, ``[B]``."""
    return -env.num_parents(states).clamp_min(1).float().log()


__all__ = ["ModelConfig", "Policy", "TemperatureGFlowNet", "uniform_backward_log_prob", "MODES"]
