"""The random numbers the model's own layers draw while it trains (dropout), from a stream of the
trainer's own rather than the caller's.

Everything the trainer draws itself (betas, actions, replay) takes its ``torch.Generator``. A
layer takes no generator: it draws from torch's global RNG. So that training is reproducible
from ``TrainConfig.seed``, resumes exactly, and leaves the caller's RNG as it was,
:meth:`LayerRandomness.installed` puts the trainer's stream in the global RNG's place for the
duration of :meth:`Trainer.train` and takes it out again (``torch.random.fork_rng``), once per
call, not per step. With the built-in backbones (no dropout) nothing draws from it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class LayerRandomness:
    """The state of the global RNG (the CPU's, and the model's CUDA device's) as the model's
    layers see it during training.

    Args:
        seed: the stream starts where ``torch.manual_seed(seed)`` puts the global RNG.
        device: the model's device; a CUDA device's RNG is kept too.

    Shapes:
        :meth:`state`: ``{"cpu": uint8 [S], "cuda": uint8 [S'] or None}`` (``None``: the CUDA
        stream is still at its seed, or the model is on the CPU).
    """

    def __init__(self, seed: int, device: torch.device):
        self.seed = seed
        self.cuda_index = (device.index if device.index is not None else torch.cuda.current_device()) \
            if device.type == "cuda" else None
        self._cpu = torch.Generator().manual_seed(seed).get_state()
        self._cuda: torch.Tensor | None = None
        self._installed = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """While active, the global RNG draws from this stream; on leaving, the stream keeps
        where it got to and the global RNG is back where it was."""
        devices = [self.cuda_index] if self.cuda_index is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self._cpu)
            if self.cuda_index is not None:
                if self._cuda is None:
                    torch.cuda.default_generators[self.cuda_index].manual_seed(self.seed)
                else:
                    torch.cuda.set_rng_state(self._cuda, self.cuda_index)
            self._installed = True
            try:
                yield
            finally:
                self._cpu, self._cuda = self._live()
                self._installed = False

    def _live(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.cuda_index) if self.cuda_index is not None else None
        return torch.get_rng_state(), cuda

    def state(self) -> dict:
        """Where the stream is now (read from the global RNG while installed), as plain tensors."""
        cpu, cuda = self._live() if self._installed else (self._cpu, self._cuda)
        return {"cpu": cpu.clone(), "cuda": cuda.clone() if cuda is not None else None}

    def load_state(self, state: dict) -> None:
        """Continue from :meth:`state` (not while installed)."""
        if self._installed:
            raise RuntimeError("cannot load a layer RNG state during training")
        self._cpu = state["cpu"].clone()
        self._cuda = state["cuda"].clone() if state.get("cuda") is not None and self.cuda_index is not None else None


__all__ = ["LayerRandomness"]
