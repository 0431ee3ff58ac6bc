"""Conditioning on the inverse temperature ``beta``: logit scaler, layer embedding, log Z."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENCODINGS = ("raw", "log")


class BetaEncoding(nn.Module):
    """``beta [B] -> features [B, 1]``: the raw value (as in the paper) or its logarithm."""

    def __init__(self, kind: str = "raw"):
        super().__init__()
        if kind not in ENCODINGS:
            raise ValueError(f"beta encoding must be one of {ENCODINGS}, got {kind!r}")
        self.kind = kind
        self.dim = 1

    def forward(self, beta: Tensor) -> Tensor:
        b = beta.float()[:, None]
        return b.log() if self.kind == "log" else b


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
        encoding: ``"raw"`` or ``"log"`` beta.

    Shapes:
        - **input:** ``beta [B]``
        - **output:** ``[B]``
    """

    def __init__(self, kind: str = "positive", hidden: int = 32, encoding: str = "raw"):
        super().__init__()
        if kind not in ("positive", "unconstrained"):
            raise ValueError(f"LogitScaler kind must be 'positive' or 'unconstrained', got {kind!r}")
        self.kind = kind
        self.mlp = beta_mlp(BetaEncoding(encoding), hidden, 1)
        if kind == "positive":
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, beta: Tensor) -> Tensor:
        out = self.mlp(beta).squeeze(-1)
        # the floor keeps g > 0 where exp underflows for very negative outputs
        return (F.elu(out) + 1.0).clamp_min(1e-6) if self.kind == "positive" else out


class BetaEmbedding(nn.Module):
    """Layer conditioning: ``beta [B] -> [B, dim]``, added inside the backbone."""

    def __init__(self, dim: int, hidden: int = 32, encoding: str = "raw"):
        super().__init__()
        self.dim = dim
        self.mlp = beta_mlp(BetaEncoding(encoding), hidden, dim)

    def forward(self, beta: Tensor) -> Tensor:
        return self.mlp(beta)


class LogZ(nn.Module):
    """:math:`\\log Z(\\beta)` as an MLP of beta. ``beta [B] -> [B]``."""

    def __init__(self, hidden: int = 32, encoding: str = "raw"):
        super().__init__()
        self.mlp = beta_mlp(BetaEncoding(encoding), hidden, 1)

    def forward(self, beta: Tensor) -> Tensor:
        return self.mlp(beta).squeeze(-1)
