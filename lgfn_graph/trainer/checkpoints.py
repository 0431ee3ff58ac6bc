"""Training checkpoints: everything an exact resume needs, on top of
:func:`~lgfn_graph.checkpoint.save_checkpoint`'s model, optimizer and task.

A checkpoint's ``training`` entry holds, per rank, the trainer's generator state
(``generators``) and its layers' RNG stream (``layer_rng``, :class:`LayerRandomness`), the
number of ranks (``world_size``) and the replay buffer (``buffer``). Checkpoints written before
``layer_rng`` existed resume from their ``torch_rng`` (rank 0's global RNG, which those
versions trained with).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from ..buffer import ReplayBuffer
from ..checkpoint import check_same_task, load_checkpoint, save_checkpoint
from ..policy import TemperatureGFlowNet
from ..resume import check_resumable
from .config import TrainConfig
from .randomness import LayerRandomness


def save_training(path: Path, gfn: TemperatureGFlowNet, env, step: int, optimizer: torch.optim.Optimizer,
                  generator: torch.Generator, generators: list[torch.Tensor], layer_rng: list[dict],
                  buffer: ReplayBuffer | None, config: TrainConfig, extra: dict) -> None:
    """Write the training state of step ``step`` to ``path`` (atomically).

    Args:
        generator: this rank's generator (its state is the checkpoint's ``generator``).
        generators, layer_rng: every rank's generator state and :meth:`LayerRandomness.state`,
            indexed by rank.
        buffer: the replay buffer, or ``None``.
        config: recorded as ``extra["train_config"]``, which :func:`read_training` checks a
            resume against.
        extra: further plain data for ``extra`` (e.g. the run's whole config).
    """
    training = {"generators": generators, "layer_rng": layer_rng, "world_size": len(generators),
                "buffer": buffer.state_dict() if buffer is not None else None}
    save_checkpoint(path, gfn, env, step, optimizer, generator, extra={"train_config": asdict(config), **extra},
                    training=training)


def read_training(path: str | Path, gfn: TemperatureGFlowNet, env, config: TrainConfig, world_size: int) -> dict:
    """Load a checkpoint and check that training with ``config`` on ``world_size`` ranks can
    resume from it. Returns its state.

    Raises:
        CheckpointError: unreadable, from another task or model, or trained with settings that
            decide the batches or updates other than ``config``'s (naming them).
        ValueError: saved by another number of ranks.
    """
    state = load_checkpoint(path)
    check_same_task(path, state, gfn, env)
    recorded = (state.get("extra") or {}).get("train_config")
    if recorded is not None:
        check_resumable(str(path), {"train": recorded}, {"train": asdict(config)}, {"train": asdict(TrainConfig())})
    training = state.get("training") or {}
    if training.get("world_size", 1) != world_size:
        raise ValueError(f"{path}: saved by {training.get('world_size')} processes, resumed with {world_size}")
    return state


def restore_training(state: dict, rank: int, gfn: TemperatureGFlowNet, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, layer_rng: LayerRandomness, buffer: ReplayBuffer | None,
                     env) -> int:
    """Put a checked state (:func:`read_training`) back into rank ``rank``'s model, optimizer,
    generator, layer stream and buffer. Returns the step."""
    training = state.get("training") or {}
    gfn.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(training["generators"][rank])
    if training.get("layer_rng") is not None:
        layer_rng.load_state(training["layer_rng"][rank])
    elif state.get("torch_rng") is not None:
        layer_rng.load_state({"cpu": state["torch_rng"], "cuda": None})
    if buffer is not None and training.get("buffer") is not None:
        buffer.load_state_dict(training["buffer"], type(env.initial(0)))
    return state["step"]


__all__ = ["read_training", "restore_training", "save_training"]
