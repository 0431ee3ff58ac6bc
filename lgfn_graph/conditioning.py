"""Conditioning on the inverse temperature ``beta``: logit scaler, layer embedding, log Z."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODINGS = ("raw", "log", "thermometer", "fourier")
SCALERS = ("positive", "unconstrained")


class BetaEncoding(nn.Module):
    r"""Features of ``beta`` read by every MLP of beta.

    * ``"raw"``: :math:`[\beta]` (as in the paper);
    * ``"log"``: :math:`[\log\beta]`;
    * ``"thermometer"``: ``dim`` units, unit :math:`k` is
      :math:`\mathrm{clamp}((\log\beta - c_k) / \Delta, 0, 1)` for ``dim`` evenly spaced
      :math:`c_k` over :math:`[\log\text{low}, \log\text{high}]` (a soft one-hot "level");
    * ``"fourier"``: :math:`\sin` and :math:`\cos` of :math:`2^k \pi u` for ``k < dim / 2``,
      with :math:`u = \log(\beta/\text{low}) / \log(\text{high}/\text{low})`.

    The log scale makes the two expanded encodings resolve beta = 1 vs 2 as well as 1000 vs 2000.
    Beyond ``[low, high]`` the thermometer saturates and the Fourier features wrap around.

    Shapes:
        - **input:** ``beta [B]``
        - **output:** ``[B, self.dim]``
    """

    def __init__(self, kind: str = "raw", dim: int = 16, low: float = 1.0, high: float = 64.0):
        super().__init__()
        if kind not in ENCODINGS:
            raise ValueError(f"beta encoding must be one of {ENCODINGS}, got {kind!r}")
        if kind in ("thermometer", "fourier") and not (0 < low < high and dim >= 2):
            raise ValueError(f"{kind} encoding needs 0 < low < high and dim >= 2, got {low}, {high}, {dim}")
        self.kind = kind
        self.dim = dim if kind in ("thermometer", "fourier") else 1
        self.log_low, self.log_high = math.log(low), math.log(high)
        if kind == "thermometer":
            self.register_buffer("centres", torch.linspace(self.log_low, self.log_high, dim), persistent=False)
        if kind == "fourier":
            self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(dim // 2).float(), persistent=False)
            self.dim = 2 * (dim // 2)

    def forward(self, beta: Tensor) -> Tensor:
        b = beta.float()[:, None]
        if self.kind == "raw":
            return b
        lb = b.log()
        if self.kind == "log":
            return lb
        if self.kind == "thermometer":
            gap = (self.log_high - self.log_low) / (self.dim - 1)
            return ((lb - self.centres) / gap).clamp(0, 1)
        u = (lb - self.log_low) / (self.log_high - self.log_low)
        return torch.cat([torch.sin(u * self.freqs), torch.cos(u * self.freqs)], 1)


def beta_mlp(encoding: BetaEncoding, hidden: int, out: int) -> nn.Sequential:
    """The paper's shape: encoding -> hidden (LeakyReLU) -> hidden (LeakyReLU) -> out."""
    return nn.Sequential(encoding, nn.Linear(encoding.dim, hidden), nn.LeakyReLU(),
                         nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, out))


class LogitScaler(nn.Module):
    r"""Logit-GFN's scale :math:`g(\beta)`: one scalar per graph that multiplies its logits.

    Args:
        kind: ``"positive"``: :math:`g = \mathrm{elu}(\mathrm{mlp}(\beta)) + 1` with the last
            layer zero-initialised, so :math:`g \equiv 1` at initialisation and always
            :math:`g \geq 10^{-6}` (the sign of the logits never flips). ``"unconstrained"``: the
            paper's plain MLP output, any sign.
        hidden: width of the MLP.
        encoding: the features of beta (default: raw beta).

    Shapes:
        - **input:** ``beta [B]``
        - **output:** ``[B]``
    """

    def __init__(self, kind: str = "positive", hidden: int = 32, encoding: BetaEncoding | None = None):
        super().__init__()
        if kind not in SCALERS:
            raise ValueError(f"LogitScaler kind must be one of {SCALERS}, got {kind!r}")
        self.kind = kind
        self.mlp = beta_mlp(encoding or BetaEncoding(), hidden, 1)
        if kind == "positive":
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, beta: Tensor) -> Tensor:
        out = self.mlp(beta).squeeze(-1)
        # the floor keeps g > 0 where exp underflows for very negative outputs
        return (F.elu(out) + 1.0).clamp_min(1e-6) if self.kind == "positive" else out


class BetaEmbedding(nn.Module):
    """Layer conditioning: ``beta [B] -> [B, dim]``, added inside the backbone."""

    def __init__(self, dim: int, hidden: int = 32, encoding: BetaEncoding | None = None):
        super().__init__()
        self.dim = dim
        self.mlp = beta_mlp(encoding or BetaEncoding(), hidden, dim)

    def forward(self, beta: Tensor) -> Tensor:
        return self.mlp(beta)


class LogZ(nn.Module):
    """:math:`\\log Z(\\beta)` as an MLP of beta. ``beta [B] -> [B]``."""

    def __init__(self, hidden: int = 32, encoding: BetaEncoding | None = None):
        super().__init__()
        self.mlp = beta_mlp(encoding or BetaEncoding(), hidden, 1)

    def forward(self, beta: Tensor) -> Tensor:
        return self.mlp(beta).squeeze(-1)
