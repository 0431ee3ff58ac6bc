"""A store of terminal states with their log-rewards: a replay buffer or an offline dataset."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

PRIORITIES = ("uniform", "reward")


class ReplayBuffer:
    """Terminal states and ``log R``, from which training draws trajectories backwards.

    Used two ways: as a replay buffer that keeps the ``capacity`` most recent (or, with
    ``keep="best"``, highest-reward) samples of online training, and as a fixed offline
    dataset (:meth:`from_states`) that training draws every batch from.

    Args:
        capacity: the most states held (``0``: unbounded).
        priority: how :meth:`sample` draws: ``"uniform"`` or ``"reward"`` (probability
            proportional to ``R``, i.e. ``softmax(log R)``).
        keep: when full, drop the ``"oldest"`` states or keep the ``"best"`` rewards.
    """

    def __init__(self, capacity: int = 0, priority: str = "uniform", keep: str = "oldest"):
        if priority not in PRIORITIES:
            raise ValueError(f"ReplayBuffer priority must be one of {PRIORITIES}, got {priority!r}")
        if keep not in ("oldest", "best"):
            raise ValueError(f"ReplayBuffer keep must be 'oldest' or 'best', got {keep!r}")
        if capacity < 0:
            raise ValueError(f"ReplayBuffer capacity must be >= 0, got {capacity}")
        self.capacity, self.priority, self.keep = capacity, priority, keep
        self.states = None
        self.log_reward = torch.zeros(0)

    @classmethod
    def from_states(cls, states, log_reward: Tensor, priority: str = "uniform") -> "ReplayBuffer":
        """A fixed dataset of ``B`` terminal states with ``log_reward: [B]``."""
        buf = cls(0, priority)
        buf.add(states, log_reward)
        return buf

    def __len__(self) -> int:
        return self.log_reward.shape[0]

    def add(self, states, log_reward: Tensor) -> None:
        """Append ``B`` states with ``log_reward: [B]`` (finite), then trim to capacity."""
        log_reward = torch.as_tensor(log_reward, dtype=torch.float32).detach().flatten()
        if log_reward.shape[0] != len(states):
            raise ValueError(f"{len(states)} states but {log_reward.shape[0]} log-rewards")
        if not bool(torch.isfinite(log_reward).all()):
            bad = (~torch.isfinite(log_reward)).nonzero().flatten()[0].item()
            raise ValueError(f"log-reward of state {bad} is {log_reward[bad].item()}: buffers need finite values")
        self.states = states.clone() if self.states is None else type(states).cat([self.states, states])
        self.log_reward = torch.cat([self.log_reward, log_reward])
        if self.capacity and len(self) > self.capacity:
            if self.keep == "oldest":
                keep = torch.arange(len(self) - self.capacity, len(self))
            else:  # stable: among equal rewards the newer state wins
                keep = torch.sort(torch.argsort(self.log_reward, stable=True)[-self.capacity:]).values
            self.states, self.log_reward = self.states[keep], self.log_reward[keep]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[object, Tensor]:
        """Draw ``n`` states with replacement: ``(states, log_reward [n])``."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty buffer")
        if self.priority == "uniform":
            idx = torch.randint(len(self), (n,), generator=generator)
        else:
            p = torch.softmax(self.log_reward.double(), 0)
            idx = torch.multinomial(p, n, replacement=True, generator=generator)
        return self.states[idx], self.log_reward[idx]

    def state_dict(self) -> dict:
        """Everything needed to rebuild the buffer exactly, as plain tensors and numbers (so a
        checkpoint holding it loads with ``torch.load(weights_only=True)``)."""
        states = None
        if self.states is not None:
            states = {f.name: getattr(self.states, f.name) for f in dataclasses.fields(self.states)}
        return {"capacity": self.capacity, "priority": self.priority, "keep": self.keep,
                "log_reward": self.log_reward.clone(), "states": states}

    def load_state_dict(self, state: dict, states_type: type | None = None) -> None:
        """Restore :meth:`state_dict`. ``states_type``: the dataclass of the environment's
        states (``type(env.initial(0))``), needed when the buffer held states."""
        self.capacity, self.priority, self.keep = state["capacity"], state["priority"], state["keep"]
        self.log_reward, states = state["log_reward"], state["states"]
        if states is not None:
            if states_type is None:
                raise ValueError("the buffer holds states: pass states_type (type(env.initial(0)))")
            states = states_type(**states)
        self.states = states
