"""The temperature-conditional forward policy and the model that bundles it with log Z."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor, nn
from torch_geometric.data import Batch

from .categorical import ActionType, GraphActionCategorical, element_batch
from .checks import FieldError, check_bool, check_choice, check_int, check_mapping, check_real
from .conditioning import ENCODINGS, SCALERS, BetaEmbedding, BetaEncoding, LogitScaler, LogZ, beta_mlp
from .nn import CONVS, ActionHeads
from .nn.backbones import ATTENTION, BUILTIN, BackboneError, build_backbone, check_backbone
from .nn.contract import check_output
from .nn.heads import mlp

MODES = ("logit", "layer", "logit+layer", "none")
BACKWARD_POLICIES = ("uniform", "learned")


@dataclass
class ModelConfig:
    r"""Model size and temperature conditioning.

    Every field is checked when the config is made: a value of the wrong type or out of range
    raises a one-line ``ValueError`` naming it (``ModelConfig.hidden must be an integer >= 1, got 0``).

    Args:
        backbone: ``"graph_transformer"`` (the built-in :class:`~lgfn_graph.nn.GraphTransformer`,
            the default), a stock PyG model (``"gin"``, ``"gat"``, ``"gatv2"``, ``"sage"``,
            ``"pna"``, ``"gps"``) or an import path ``"package.module:Class"`` to a node model
            in PyG's ``BasicGNN`` convention; see :mod:`lgfn_graph.nn.backbones`.
        backbone_kwargs: keyword arguments of that model (plain data, e.g. ``{"dropout": 0.1}``
            or PNA's ``{"deg": [...]}``); every key is checked against its signature, and the
            model is built once on trial. The built-in takes none.
        hidden, num_layers, heads: the backbone's width (>= 1), layers (>= 1) and attention
            heads (>= 1; they must divide ``hidden`` for the built-in transformer, ``gat``,
            ``gatv2`` and ``gps``).
        conv: the built-in backbone's layers, ``"transformer"`` or ``"gine"``.
        conditioning: ``"logit"`` (Logit-GFN), ``"layer"`` (beta embedding in the backbone),
            ``"logit+layer"`` or ``"none"`` (the policy ignores beta).
        scaler: ``"positive"`` or ``"unconstrained"`` (see :class:`LogitScaler`).
        beta_encoding: features of beta read by every MLP of beta: ``"raw"``, ``"log"``,
            ``"thermometer"`` or ``"fourier"`` (see :class:`BetaEncoding`), the last two with
            ``encoding_dim`` (>= 2) units over ``[encoding_low, encoding_high]`` (``0 < low <
            high``; all three are checked whatever the encoding).
        logit_clip: bounds every probability ratio of two legal actions by
            ``exp(2 * logit_clip)``, as the official code's clamp of the scaled logits to
            ``[-logit_clip, logit_clip]`` does, but relative to the best legal action so that
            large betas never tie the best actions (see :func:`scaled_categorical`); finite,
            >= 0 (``0``: no clip).
        backward_policy: ``"uniform"`` over legal backward actions, or ``"learned"`` (heads
            on the shared backbone).
        backward_conditioning: ``"logit"`` gives the learned backward policy its own logit
            scaler; ``"none"`` does not. Layer conditioning reaches it through the shared
            backbone when ``conditioning`` has it.
        state_flow: add a state-flow head :math:`\log F(s, \beta)` (needed by detailed and
            sub-trajectory balance).
    """

    hidden: int = 128
    num_layers: int = 4
    heads: int = 4
    conv: str = "transformer"
    backbone: str = BUILTIN
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    conditioning: str = "logit"
    scaler: str = "positive"
    beta_encoding: str = "raw"
    logit_clip: float = 20.0
    encoding_dim: int = 16
    encoding_low: float = 1.0
    encoding_high: float = 64.0
    backward_policy: str = "uniform"
    backward_conditioning: str = "none"
    state_flow: bool = False

    def __post_init__(self):
        for name in ("hidden", "num_layers", "heads"):
            check_int(self, name, 1)
        for name, allowed in (("conv", CONVS), ("conditioning", MODES), ("scaler", SCALERS),
                              ("beta_encoding", ENCODINGS), ("backward_policy", BACKWARD_POLICIES),
                              ("backward_conditioning", ("logit", "none"))):
            check_choice(self, name, allowed)
        if not isinstance(self.backbone, str):
            raise FieldError(self, "backbone", f"must be a name or an import path, got {self.backbone!r}")
        check_mapping(self, "backbone_kwargs")
        # backbones whose attention splits hidden into heads
        if self.backbone == BUILTIN and self.conv == "transformer":
            attention = "conv 'transformer'"
        else:
            attention = f"backbone {self.backbone!r}" if self.backbone in ATTENTION else None
        if attention and self.hidden % self.heads:
            raise FieldError(self, "hidden", f"must be divisible by heads ({self.heads}) with {attention}, "
                                             f"got {self.hidden}")
        try:
            check_backbone(self.backbone, self.backbone_kwargs, self.hidden, self.num_layers, self.heads)
        except BackboneError as e:
            raise FieldError(self, e.field, e.problem) from None
        check_real(self, "logit_clip", 0)
        check_int(self, "encoding_dim", 2)
        for name in ("encoding_low", "encoding_high"):
            check_real(self, name, 0, low_open=True)
        if self.encoding_low >= self.encoding_high:
            raise FieldError(self, "encoding_low", f"must be < encoding_high ({self.encoding_high}), "
                                                   f"got {self.encoding_low}")
        check_bool(self, "state_flow")

    def encoding(self) -> BetaEncoding:
        """A fresh beta encoding as configured."""
        return BetaEncoding(self.beta_encoding, self.encoding_dim, self.encoding_low, self.encoding_high)


def scaled_categorical(action_types: list[ActionType], logits: list[Tensor], data: Batch, scale: Tensor | None,
                       logit_clip: float, masks: list[Tensor], allow_empty: bool = False) -> GraphActionCategorical:
    """Multiply each graph's logits by ``scale [B]`` (if given) and mask them, bounding the
    log-ratio of any two legal actions' probabilities by ``2 * logit_clip`` (``0``: unbounded).
    ``logits`` and ``masks`` per type ``[n_t, width_t]``.

    The bound is the one the official Logit-GFN code gets by clamping the scaled logits to
    ``[-logit_clip, logit_clip]``, but measured from each graph's best legal action: that
    clamp ties every action past ``+logit_clip``, and as ``g(beta)`` keeps growing past the
    training range it made the policy *less* greedy at large beta; this one never touches the
    best actions (:class:`GraphActionCategorical`, ``max_log_ratio``).
    """
    batches = [element_batch(data, t.level) for t in action_types]
    return GraphActionCategorical(scale_logits(logits, batches, scale), masks, batches, data.num_graphs,
                                  allow_empty=allow_empty, max_log_ratio=2.0 * logit_clip)


def scale_logits(logits: list[Tensor], batches: list[Tensor], scale: Tensor | None) -> list[Tensor]:
    """Each row's logits times its graph's ``scale [B]`` (unchanged when ``None``)."""
    return logits if scale is None else [l * scale[b][:, None] for l, b in zip(logits, batches)]


class Policy(nn.Module):
    r"""Forward policy :math:`\pi(a \mid s, \beta) = \mathrm{softmax}_{\text{legal}}(g(\beta)\, f(s))`.

    Args:
        action_types: the environment's forward action types.
        backbone: module ``(data, cond) -> (node [num_nodes, H], graph [B, H])``
            (:mod:`lgfn_graph.nn.contract`).
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

    def embed(self, data: Batch, beta: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's ``(node [num_nodes, H], graph [B, H])`` embeddings. ``beta: [B]``.

        Their shapes are checked at every call (a few integer comparisons): a backbone that
        breaks the contract (:mod:`lgfn_graph.nn.contract`) raises a one-line
        :class:`~lgfn_graph.nn.BackboneContractError` naming what is wrong. ``H`` is the heads'
        ``hidden`` where they declare it."""
        cond = self.beta_embedding(beta) if self.beta_embedding is not None else None
        return check_output(self.backbone(data, cond), data, getattr(self.heads, "hidden", None))

    def logits(self, data: Batch, beta: Tensor, embedding: tuple[Tensor, Tensor] | None = None) -> list[Tensor]:
        """Scaled logits per action type, ``[n_t, width_t]``, before masking and clipping
        (both need the masks: :meth:`forward`). ``beta: [B]``."""
        node, graph = embedding if embedding is not None else self.embed(data, beta)
        scale = self.scaler(beta) if self.scaler is not None else None
        batches = [element_batch(data, t.level) for t in self.action_types]
        return scale_logits(self.heads(node, graph, data), batches, scale)

    def forward(self, data: Batch, beta: Tensor, masks: list[Tensor],
                embedding: tuple[Tensor, Tensor] | None = None) -> GraphActionCategorical:
        """The action distribution of each graph. ``beta: [B]``; ``masks`` per type ``[n_t, width_t]``."""
        node, graph = embedding if embedding is not None else self.embed(data, beta)
        scale = self.scaler(beta) if self.scaler is not None else None
        return scaled_categorical(self.action_types, self.heads(node, graph, data), data, scale, self.logit_clip, masks)


class BackwardPolicy(nn.Module):
    r"""A learned backward policy :math:`P_B(s \mid s', \beta)` on the forward policy's embeddings.

    Args:
        action_types: the environment's backward action types.
        heads: module ``(node, graph, data) -> list of logits``, one per backward action type.
        scaler: module ``beta [B] -> [B]`` (its own logit scaling), or ``None``.
        logit_clip: clamp of the scaled logits (``0``: none).
    """

    def __init__(self, action_types: list[ActionType], heads: nn.Module, scaler: nn.Module | None = None,
                 logit_clip: float = 20.0):
        super().__init__()
        self.action_types = list(action_types)
        self.heads = heads
        self.scaler = scaler
        self.logit_clip = logit_clip

    def forward(self, embedding: tuple[Tensor, Tensor], data: Batch, beta: Tensor,
                masks: list[Tensor]) -> GraphActionCategorical:
        """Backward action distribution of each graph; graphs with no legal backward action
        (initial states) are allowed and must not be queried."""
        node, graph = embedding
        scale = self.scaler(beta) if self.scaler is not None else None
        return scaled_categorical(self.action_types, self.heads(node, graph, data), data, scale, self.logit_clip,
                                  masks, allow_empty=True)


class StateFlow(nn.Module):
    r""":math:`\log F(s, \beta) = a(\beta)\, f(s) + b(\beta)`, the state flow of detailed and
    sub-trajectory balance.

    :math:`f` reads the graph embedding; :math:`b` is an MLP of beta (the flows' beta-dependent
    level, like :math:`\log Z(\beta)`); :math:`a` is a :class:`LogitScaler` when the model
    scales logits (flows grow roughly like :math:`\beta \log R`), else 1.

    Shapes:
        - **input:** ``graph [B, H]``, ``beta [B]``
        - **output:** ``[B]``
    """

    def __init__(self, hidden: int, scaler: nn.Module | None = None, encoding: BetaEncoding | None = None):
        super().__init__()
        self.head = mlp(hidden, hidden, 1)
        self.scaler = scaler
        self.offset = beta_mlp(encoding or BetaEncoding(), 32, 1)

    def forward(self, graph: Tensor, beta: Tensor) -> Tensor:
        f = self.head(graph).squeeze(-1)
        if self.scaler is not None:
            f = f * self.scaler(beta)
        return f + self.offset(beta).squeeze(-1)


@dataclass
class StepOutput:
    """The model at a batch of states: forward and (optional) backward distributions and
    (optional) log state flows ``[B]``."""

    forward: GraphActionCategorical
    backward: GraphActionCategorical | None = None
    log_flow: Tensor | None = None


class TemperatureGFlowNet(nn.Module):
    r"""A temperature-conditional GFlowNet: forward policy, :math:`\log Z(\beta)`, and optionally
    a learned backward policy and a state-flow head sharing the forward policy's backbone.

    Without ``backward_policy`` the backward policy is uniform over legal backward actions.
    """

    def __init__(self, policy: Policy, log_z: nn.Module, config: ModelConfig | None = None,
                 backward_policy: BackwardPolicy | None = None, state_flow: StateFlow | None = None):
        super().__init__()
        self.policy = policy
        self.log_z = log_z
        self.config = config
        self.backward_policy = backward_policy
        self.state_flow = state_flow
        # (low, high) of the loss's beta in training, set by Trainer and load_model; not a weight,
        # read only by sampling's far-from-training warning (betas.warn_if_far_from_training)
        self.trained_beta_range: tuple[float, float] | None = None

    @classmethod
    def build(cls, env, config: ModelConfig | None = None) -> "TemperatureGFlowNet":
        """The model ``config`` describes for an environment with ``node_dim``, ``edge_dim`` and
        action types (and ``max_degree``, read by PNA's default degree histogram)."""
        c = config or ModelConfig()
        layer = c.conditioning in ("layer", "logit+layer")
        logit = c.conditioning in ("logit", "logit+layer")
        backbone = build_backbone(c.backbone, c.backbone_kwargs, node_dim=env.node_dim, edge_dim=env.edge_dim,
                                  hidden=c.hidden, num_layers=c.num_layers, heads=c.heads, conv=c.conv,
                                  cond_dim=c.hidden if layer else 0, max_degree=env.max_degree)
        policy = Policy(env.forward_action_types, backbone, ActionHeads(env.forward_action_types, c.hidden),
                        scaler=LogitScaler(c.scaler, encoding=c.encoding()) if logit else None,
                        beta_embedding=BetaEmbedding(c.hidden, encoding=c.encoding()) if layer else None,
                        logit_clip=c.logit_clip)
        backward = None
        if c.backward_policy == "learned":
            backward = BackwardPolicy(env.backward_action_types, ActionHeads(env.backward_action_types, c.hidden),
                                      LogitScaler(c.scaler, encoding=c.encoding())
                                      if c.backward_conditioning == "logit" else None, c.logit_clip)
        flow = None
        if c.state_flow:
            flow = StateFlow(c.hidden, LogitScaler(c.scaler, encoding=c.encoding()) if logit else None, c.encoding())
        return cls(policy, LogZ(encoding=c.encoding()), c, backward, flow)

    def evaluate(self, data: Batch, beta: Tensor, forward_masks: list[Tensor],
                 backward_masks: list[Tensor] | None = None) -> StepOutput:
        """Every head at a batch of states with one backbone pass. ``beta: [B]``.

        The backward distribution is computed when the model has a learned backward policy
        and ``backward_masks`` are given; the flows when it has a state-flow head.
        """
        emb = self.policy.embed(data, beta)
        out = StepOutput(self.policy(data, beta, forward_masks, embedding=emb))
        if self.backward_policy is not None and backward_masks is not None:
            out.backward = self.backward_policy(emb, data, beta, backward_masks)
        if self.state_flow is not None:
            out.log_flow = self.state_flow(emb[1], beta)
        return out

    def config_dict(self) -> dict:
        return asdict(self.config) if self.config is not None else {}

    def parameter_groups(self, lr: float, lr_log_z: float) -> list[dict]:
        """Optimizer groups: log Z at ``lr_log_z``, everything else at ``lr``."""
        z = {id(p) for p in self.log_z.parameters()}
        return [{"params": [p for p in self.parameters() if id(p) not in z], "lr": lr},
                {"params": list(self.log_z.parameters()), "lr": lr_log_z}]


def uniform_backward_log_prob(env, states) -> Tensor:
    """``log P_B`` of the uniform backward policy at each state: ``-log(#parents)``, ``[B]``."""
    return -env.num_parents(states).clamp_min(1).float().log()


__all__ = ["ModelConfig", "Policy", "BackwardPolicy", "StateFlow", "StepOutput", "TemperatureGFlowNet",
           "uniform_backward_log_prob", "scaled_categorical", "scale_logits", "MODES", "BACKWARD_POLICIES"]
