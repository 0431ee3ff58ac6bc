"""The environment contract: what the sampler, exact evaluation, metrics, checkpoints and the
trainer may ask of an environment, and the padded batch of states every environment here uses.

An environment subclasses :class:`Env`, implements its abstract members, sets the class
attributes it differs on (``kind``, ``size_name``, ``has_backward_actions``, ...) and keeps its
states in a dataclass subclass of :class:`PaddedStates`. ``tests/envs/test_base.py`` checks
every listed environment against this contract; a new environment is checked by adding its
factory to that list.

Actions are long rows ``(type, row, col)``: ``type`` indexes ``forward_action_types`` (or
``backward_action_types``), ``row`` the element of that type's level *within its graph* (0 for
graph-level types; a node; an action edge) and ``col`` the choice on that row.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, ClassVar, Sequence, TypeVar

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..categorical import ActionType

S = TypeVar("S", bound="PaddedStates")


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class PaddedStates:
    """Base of a dataclass holding a batch of ``B`` states as padded tensors.

    Every field is a tensor whose first dimension is the batch; one of them, ``n`` (long
    ``[B]``), is each state's size (nodes). The container methods act on every field alike, so
    a subclass declares its fields and nothing else::

        @dataclass
        class MyStates(PaddedStates):
            node: Tensor  # long [B, N]
            n: Tensor     # long [B]
    """

    n: Tensor

    def __len__(self) -> int:
        return self.n.shape[0]

    def __getitem__(self: S, idx) -> S:
        """The states at ``idx``: an ``int`` (a batch of one), a slice, or a long ``[k]`` or bool
        ``[B]`` index tensor."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return type(self)(*[getattr(self, name)[idx] for name in _field_names(type(self))])

    def clone(self: S) -> S:
        """A copy sharing no memory with ``self``."""
        return type(self)(*[getattr(self, name).clone() for name in _field_names(type(self))])

    def put(self: S, idx: Tensor, other: S) -> None:
        """Overwrite the states at ``idx`` (long ``[k]``) with ``other`` (``k`` states), in place."""
        for name in _field_names(type(self)):
            getattr(self, name)[idx] = getattr(other, name)

    @classmethod
    def cat(cls: type[S], states: Sequence[S]) -> S:
        """The states of every batch in ``states``, in order, as one batch."""
        return cls(*[torch.cat([getattr(s, name) for s in states]) for name in _field_names(cls)])

    def equal(self: S, other: S) -> Tensor:
        """Exact (same node order) equality per state, bool ``[B]``."""
        same = [getattr(self, name) == getattr(other, name) for name in _field_names(type(self))]
        return torch.stack([s.flatten(1).all(1) if s.dim() > 1 else s for s in same]).all(0)


class Env(ABC):
    """A batched graph-building environment: states, legal actions, transitions and chemistry.

    Every method acts on a whole batch of ``B`` states with tensor operations (except where it
    says ``i``, one state of the batch). Instances set these attributes in ``__init__``:

    Attributes:
        forward_action_types: the forward :class:`~lgfn_graph.ActionType` list; entry
            :attr:`stop_type` is the stop action (graph-level, width 1).
        backward_action_types: the backward action types (each undoes forward actions).
        node_dim: width of ``to_graph(...).x``.
        edge_dim: width of ``to_graph(...).edge_attr``.
        max_degree: the most bonds a node of :meth:`to_graph` can have (PNA's degree histogram).
        max_steps: the most actions of any trajectory, its stop included.

    and subclasses set these class attributes:

    Attributes:
        kind: the key of :meth:`spec` (``spec()["kind"]``) under which :meth:`from_spec` finds
            the class; set once per concrete environment.
        states_type: the :class:`PaddedStates` dataclass of its states.
        size_name: what :meth:`size` counts, as a column name (``"num_atoms"``).
        stop_type: the index of the stop action in ``forward_action_types`` (default ``0``).
        has_backward_actions: whether :meth:`backward_actions` is implemented (needed by a
            learned backward policy).
        has_fragment_graph: whether :meth:`to_data` is a graph of building blocks rather than
            of atoms, worth exporting beside the molecule (:func:`lgfn_graph.pyg.sample_pyg`).
    """

    forward_action_types: list[ActionType]
    backward_action_types: list[ActionType]
    node_dim: int
    edge_dim: int
    max_degree: int
    max_steps: int

    kind: ClassVar[str]
    states_type: ClassVar[type[PaddedStates]]
    size_name: ClassVar[str]
    stop_type: ClassVar[int] = 0
    has_backward_actions: ClassVar[bool] = False
    has_fragment_graph: ClassVar[bool] = False

    _registry: ClassVar[dict[str, type["Env"]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Env._registry[cls.kind] = cls

    # -- states --------------------------------------------------------------------------------
    @abstractmethod
    def initial(self, batch_size: int) -> PaddedStates:
        """``batch_size`` copies of the initial (empty) state."""

    def size(self, states: PaddedStates) -> Tensor:
        """The size of each state that :attr:`size_name` names, long ``[B]`` (default ``states.n``)."""
        return states.n

    # -- model input ---------------------------------------------------------------------------
    @abstractmethod
    def to_graph(self, states: PaddedStates) -> Batch:
        """The batch of PyG graphs the model reads.

        Shapes:
            ``x [num_nodes, node_dim]`` (float), ``edge_index [2, E]`` (both directions of each
            bond), ``edge_attr [E, edge_dim]`` (float), ``batch [num_nodes]``, ``ptr [B + 1]``;
            with edge-level action types also ``action_edge_index [2, num_action_edges]``
            (their rows, grouped by graph).
        """

    @abstractmethod
    def to_data(self, states: PaddedStates, i: int) -> Data:
        """State ``i`` as one PyG :class:`~torch_geometric.data.Data` graph (the fields of
        :meth:`to_graph` without ``batch`` and ``ptr``)."""

    # -- masks ---------------------------------------------------------------------------------
    @abstractmethod
    def forward_masks(self, states: PaddedStates) -> list[Tensor]:
        """Legal forward actions, one bool ``[n_t, width_t]`` per forward type ``t``, its rows
        those of the type's level in :meth:`to_graph` (``B`` graphs, ``num_nodes`` nodes or
        ``num_action_edges`` action edges)."""

    @abstractmethod
    def backward_masks(self, states: PaddedStates) -> list[Tensor]:
        """Legal backward actions, one bool ``[n_t, width_t]`` per backward type, as
        :meth:`forward_masks`."""

    @abstractmethod
    def num_parents(self, states: PaddedStates) -> Tensor:
        """Number of legal backward actions of each state, long ``[B]`` (``0`` only for the
        initial state)."""

    def can_stop(self, states: PaddedStates) -> Tensor:
        """bool ``[B]``: the stop action is legal (the state is a terminal object)."""
        return self.forward_masks(states)[self.stop_type][:, 0]

    # -- transitions ---------------------------------------------------------------------------
    def is_stop(self, actions: Tensor) -> Tensor:
        """bool ``[B]``: which forward actions ``[B, 3]`` are the stop action."""
        return actions[:, 0] == self.stop_type

    def stop_actions(self, batch_size: int) -> Tensor:
        """``batch_size`` stop actions, long ``[batch_size, 3]`` (``(stop_type, 0, 0)``)."""
        a = torch.zeros(batch_size, 3, dtype=torch.long)
        a[:, 0] = self.stop_type
        return a

    @abstractmethod
    def step(self, states: PaddedStates, actions: Tensor, check: bool = True) -> PaddedStates:
        """Apply forward actions ``[B, 3]`` and return the new states (stop leaves a state as it
        is). ``check=False`` skips validating the actions, for callers that drew them from
        :meth:`forward_masks`; otherwise an illegal action raises ``ValueError``."""

    @abstractmethod
    def backward_step(self, states: PaddedStates, actions: Tensor) -> tuple[PaddedStates, Tensor]:
        """Undo one action per state: ``actions [B, 3]`` of backward types (an illegal one raises
        ``ValueError``). Returns the parent states and the forward actions ``[B, 3]`` that
        rebuild each state from its parent, up to a renumbering of nodes
        (:meth:`canonical_key` equal)."""

    def backward_actions(self, states: PaddedStates, actions: Tensor) -> Tensor:
        """The backward action, ``[B, 3]`` in the child's numbering, that undoes each non-stop
        forward action ``actions [B, 3]`` taken at ``states``. Only where
        :attr:`has_backward_actions`."""
        raise NotImplementedError(f"{type(self).__name__} has no backward_actions(states, actions) "
                                  "(has_backward_actions is False)")

    # -- chemistry and identity ----------------------------------------------------------------
    @abstractmethod
    def to_mol(self, states: PaddedStates, i: int):
        """State ``i`` as a sanitized RDKit molecule."""

    def to_smiles(self, states: PaddedStates) -> list[str]:
        """Each state's canonical SMILES, ``B`` strings."""
        from rdkit import Chem
        return [Chem.MolToSmiles(self.to_mol(states, i)) for i in range(len(states))]

    @abstractmethod
    def canonical_key(self, states: PaddedStates, i: int) -> str | None:
        """A string naming the object state ``i`` is: equal for two states iff they are the same
        node of the state DAG (isomorphic, where the environment merges relabellings);
        ``None`` for a malformed state."""

    def log_reward_correction(self, states: PaddedStates) -> Tensor:
        """What the trainer adds to ``beta * log R(x)`` so that balance over actions learns
        ``R(x)^beta`` over the objects the environment means, float ``[B]`` (default zeros)."""
        return torch.zeros(len(states))

    def log_automorphisms(self, states: PaddedStates) -> Tensor:
        """``log |Aut(s)|`` of each state as the state DAG sees it, float ``[B]``: how many
        backward walks from ``s`` differ only by a symmetry of ``s`` and rebuild it with the same
        forward actions (default zeros: states are never relabelled)."""
        return torch.zeros(len(states))

    # -- specs ---------------------------------------------------------------------------------
    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, tuples, dicts) that rebuilds the environment with
        :meth:`from_spec` and tells two tasks apart; ``spec()["kind"] == self.kind``."""

    @classmethod
    @abstractmethod
    def _from_spec(cls, spec: dict[str, Any]) -> "Env":
        """This class's environment from its :meth:`spec` (``kind`` already checked)."""

    @classmethod
    def _describe(cls, spec: dict[str, Any]) -> str:
        """One line naming the task of this class's ``spec``, for error messages."""
        return f"{spec['kind']} environment"

    @staticmethod
    def env_class(spec: dict[str, Any]) -> type["Env"]:
        """The registered class of ``spec["kind"]``; ``ValueError`` listing the kinds if none."""
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind not in Env._registry:
            raise ValueError(f"unknown environment kind {kind!r}: expected one of {sorted(Env._registry)}")
        return Env._registry[kind]

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> "Env":
        """The environment a :meth:`spec` describes, of the class registered for its ``kind``."""
        return Env.env_class(spec)._from_spec(spec)

    @staticmethod
    def describe_spec(spec: dict[str, Any]) -> str:
        """One line naming the task of ``spec`` (``"atoms [...], at most 9"``), for error messages."""
        try:
            return Env.env_class(spec)._describe(spec)
        except (ValueError, KeyError, TypeError):
            return f"unreadable spec {spec!r}"[:200]


__all__ = ["Env", "PaddedStates"]
