"""Inverse temperatures ``beta``: validation, the distributions training draws them from, and
the warning when a model is sampled far outside the range it was trained on."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .checks import FieldError, check_choice, check_real, is_number

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
        low, high: the range (finite in float32, > 0, ``low <= high``).
        kind: one of the above.
        mean, std: of ``"normal"`` (``mean``: finite, defaults to the middle of the range;
            ``std`` finite and > 0).
        shape, scale: of ``"gamma"`` (finite and > 0).
        window: the annealing window's fraction of the range, in ``(0, 1]``.

    Every field is checked at construction, whatever the kind (:class:`~lgfn_graph.checks.FieldError`).
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
        check_choice(self, "kind", BETA_DISTRIBUTIONS)
        # betas are drawn as float32 tensors: a larger bound would be infinite
        check_real(self, "low", 0, low_open=True, float32=True)
        if self.kind == "constant":
            self.high = self.low
        check_real(self, "high", 0, low_open=True, float32=True)
        if self.low > self.high:
            raise FieldError(self, "low", f"must be <= high ({self.high}), got {self.low}")
        check_real(self, "mean", optional=True)
        for name in ("std", "shape", "scale"):
            check_real(self, name, 0, low_open=True)
        check_real(self, "window", 0, 1, low_open=True)

    @classmethod
    def constant(cls, beta: float) -> "BetaSampler":
        """Always ``beta``."""
        return cls(beta, beta, "constant")

    @classmethod
    def from_number(cls, beta: float) -> "BetaSampler":
        """What a plain number means where a sampler is expected (``TrainConfig(beta=4)``,
        ``train.beta=4`` in a config file or override): the constant sampler at it."""
        return cls.constant(beta)

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


def check_sampler(obj, name: str, *, optional: bool = False) -> None:
    """``obj.name`` must be a :class:`BetaSampler` or a number ``b``, stored as
    ``BetaSampler.from_number(b)`` (or ``None`` if ``optional``); errors name ``obj.name``."""
    value = getattr(obj, name)
    if optional and value is None:
        return
    if is_number(value):
        try:
            value = BetaSampler.from_number(value)
        except FieldError as e:
            raise FieldError(obj, name, e.problem) from None
    if not isinstance(value, BetaSampler):
        raise FieldError(obj, name, f"must be a BetaSampler or a number{' or None' if optional else ''}, got {value!r}")
    setattr(obj, name, value)


# Sampling warns below low / FAR_FROM_TRAINING or above high * FAR_FROM_TRAINING of the trained
# range: a little past it is the extrapolation logit scaling is meant for (the default U[1, 32]
# is evaluated up to 64), far past it the policy is untested.
FAR_FROM_TRAINING = 2.0


class BetaRangeWarning(UserWarning):
    """A model is sampled at a beta far outside the range it was trained on."""


def trained_range(beta) -> tuple[float, float] | None:
    """The ``(low, high)`` of a training beta: a :class:`BetaSampler`, its dict (as a checkpoint
    records it) or a number (a constant). ``None`` when ``beta`` is none of these."""
    if is_number(beta):
        return float(beta), float(beta)
    if isinstance(beta, BetaSampler):
        return float(beta.low), float(beta.high)
    if isinstance(beta, dict) and is_number(beta.get("low")):
        constant = beta.get("kind") == "constant" or not is_number(beta.get("high"))
        return float(beta["low"]), float(beta["low"] if constant else beta["high"])
    return None


def warn_if_far_from_training(gfn, betas) -> None:
    """Warn (:class:`BetaRangeWarning`) if any of ``betas`` lies outside ``[low / 2, 2 * high]``
    (:data:`FAR_FROM_TRAINING`) of ``gfn.trained_beta_range``: once per model, so a sweep or a
    batched draw says it once. Silent where the range is unknown (``None``: a model neither
    trained by a :class:`~lgfn_graph.Trainer` nor loaded by :func:`~lgfn_graph.load_model`)."""
    rng = getattr(gfn, "trained_beta_range", None)
    if rng is None or getattr(gfn, "_warned_beta_range", False):
        return
    low, high = rng
    far = sorted({float(b) for b in betas if not low / FAR_FROM_TRAINING <= float(b) <= high * FAR_FROM_TRAINING})
    if far:
        gfn._warned_beta_range = True
        trained = f"beta {low:g}" if low == high else f"beta in [{low:g}, {high:g}]"
        warnings.warn(f"sampling at beta {', '.join(f'{b:g}' for b in far)}, far outside the training range: the "
                      f"model was trained at {trained}, and beyond [{low / FAR_FROM_TRAINING:g}, "
                      f"{high * FAR_FROM_TRAINING:g}] its samples are an untested extrapolation",
                      BetaRangeWarning, stacklevel=3)
