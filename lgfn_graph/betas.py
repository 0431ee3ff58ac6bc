"""Inverse temperatures ``beta``: validation and the distributions training draws them from."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BETA_DISTRIBUTIONS = ("constant", "uniform", "log_uniform", "exp_uniform", "normal", "gamma", "annealing",
                      "inverse_annealing")


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
    r"""Draws ``beta`` for a batch from a distribution on ``[low, high]``.

    ``kind``:

    * ``"constant"``: always ``low`` (``high`` is ignored);
    * ``"uniform"``: :math:`U[\text{low}, \text{high}]`;
    * ``"log_uniform"``: :math:`\log\beta` uniform, favouring small beta;
    * ``"exp_uniform"``: density :math:`\propto e^{\beta}` on the range (i.e. :math:`e^\beta`
      uniform), favouring large beta, the mirror of ``log_uniform``;
    * ``"normal"``: :math:`\mathcal N(\text{mean}, \text{std}^2)` clipped to the range;
    * ``"gamma"``: :math:`\Gamma(\text{shape}, \text{scale})` clipped to the range;
    * ``"annealing"``: uniform on a window of ``window`` times the range that slides from the
      low end to the high end as training ``progress`` goes from 0 to 1;
      ``"inverse_annealing"`` slides it from the high end to the low end.

    Args:
        low, high: the range (finite, > 0, ``low <= high``).
        kind: one of the above.
        mean, std: of ``"normal"`` (``mean`` defaults to the middle of the range).
        shape, scale: of ``"gamma"``.
        window: the annealing window's fraction of the range, in ``(0, 1]``.
    """

    low: float = 1.0
    high: float = 1.0
    kind: str = "uniform"
    mean: float | None = None
    std: float = 1.0
    shape: float = 2.0
    scale: float = 1.0
    window: float = 0.25

    def __post_init__(self):
        if self.kind not in BETA_DISTRIBUTIONS:
            raise ValueError(f"BetaSampler kind must be one of {BETA_DISTRIBUTIONS}, got {self.kind!r}")
        if self.kind == "constant":
            self.high = self.low
        check_beta([self.low, self.high], "BetaSampler low/high")
        if self.low > self.high:
            raise ValueError(f"BetaSampler: low ({self.low}) > high ({self.high})")
        for name in ("std", "shape", "scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BetaSampler {name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.window <= 1:
            raise ValueError(f"BetaSampler window must lie in (0, 1], got {self.window}")

    @classmethod
    def constant(cls, beta: float) -> "BetaSampler":
        return cls(beta, beta, "constant")

    def sample(self, n: int, generator: torch.Generator | None = None, progress: float = 0.0) -> Tensor:
        """``[n]`` betas in ``[low, high]``. ``progress`` in ``[0, 1]`` moves the annealing window."""
        lo, hi, k = self.low, self.high, self.kind
        if k == "constant" or lo == hi:
            return torch.full((n,), float(lo))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        if k == "uniform":
            b = lo + (hi - lo) * u
        elif k == "log_uniform":
            b = (math.log(lo) + (math.log(hi) - math.log(lo)) * u).exp()
        elif k == "exp_uniform":
            # log(e^lo + u (e^hi - e^lo)) written so that e^hi never overflows
            b = hi + torch.log(u + (1 - u) * math.exp(lo - hi))
        elif k == "normal":
            mean = (lo + hi) / 2 if self.mean is None else self.mean
            b = mean + self.std * torch.randn(n, generator=generator, dtype=torch.float64)
        elif k == "gamma":
            # torch's gamma sampler takes no generator; a numpy one seeded from ours stays reproducible
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            b = torch.from_numpy(np.random.default_rng(seed).gamma(self.shape, self.scale, n))
        else:
            p = min(max(float(progress), 0.0), 1.0)
            if k == "inverse_annealing":
                p = 1.0 - p
            width = self.window * (hi - lo)
            start = lo + p * (hi - lo - width)
            b = start + width * u
        return b.clamp(lo, hi).float()
