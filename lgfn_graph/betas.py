"""Inverse temperatures ``beta``: validation and the distributions training draws them from."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


def check_beta(beta, name: str = "beta") -> Tensor:
    """Return ``beta`` as a float tensor; raise if any value is <= 0 or not finite."""
    b = torch.as_tensor(beta, dtype=torch.float32)
    bad = ~torch.isfinite(b) | (b <= 0)
    if bool(bad.any()):
        v = b[bad].flatten()[0].item() if b.dim() else b.item()
        raise ValueError(f"{name} must be finite and > 0, got {v}")
    return b


@dataclass
class BetaSampler:
    """Draws ``beta`` for a batch: uniform on ``[low, high]`` (``low == high``: constant).

    ``kind="log_uniform"`` draws ``log beta`` uniformly instead.
    """

    low: float = 1.0
    high: float = 1.0
    kind: str = "uniform"

    def __post_init__(self):
        check_beta([self.low, self.high], "BetaSampler low/high")
        if self.low > self.high:
            raise ValueError(f"BetaSampler: low ({self.low}) > high ({self.high})")
        if self.kind not in ("uniform", "log_uniform"):
            raise ValueError(f"BetaSampler kind must be 'uniform' or 'log_uniform', got {self.kind!r}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n]`` betas."""
        u = torch.rand(n, generator=generator)
        if self.kind == "log_uniform":
            lo, hi = math.log(self.low), math.log(self.high)
            return (lo + (hi - lo) * u).exp()
        return self.low + (self.high - self.low) * u
