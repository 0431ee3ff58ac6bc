"""Data-parallel training over processes started by ``torchrun``.

Each rank samples its own trajectories; ``DistributedDataParallel`` averages gradients, so
every rank holds the same parameters after each step. Outside ``torchrun`` (or with one
process) every function here is a no-op and training runs in a single process.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def is_active() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Join the process group described by ``torchrun``'s environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``...), with ``gloo`` on CPU and ``nccl`` on CUDA. Without
    those variables, does nothing. Returns ``(rank, world_size)``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return rank(), world_size()
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return rank(), world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` when distributed (its parameters are first
    broadcast from rank 0), else itself."""
    if not is_active():
        return module
    dev = next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[dev] if dev.type == "cuda" else None)


def mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over ranks (itself when not distributed)."""
    if not is_active():
        return x
    x = x.clone()
    dist.all_reduce(x)
    return x / world_size()


def gather(obj) -> list:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` when not distributed)."""
    if not is_active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
