"""Rewards: callables from RDKit molecules to non-negative scores, and their validation."""
from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from typing import Callable, Sequence

import torch
from rdkit import Chem, RDConfig
from rdkit.Chem import QED as _QED
from torch import Tensor

RewardFn = Callable[[Sequence[Chem.Mol]], Tensor]
"""A reward: ``mols (length B) -> [B]`` non-negative scores."""


class RewardError(ValueError):
    """A reward function returned something unusable (NaN, negative, wrong shape)."""


class QED:
    """Quantitative estimate of drug-likeness (RDKit), in ``(0, 1]``."""

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        return torch.tensor([_QED.qed(m) for m in mols], dtype=torch.float32)


@lru_cache(maxsize=1)
def _sascorer():
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    spec = importlib.util.spec_from_file_location("sascorer", path)
    if spec is None or not os.path.exists(path):
        raise FileNotFoundError(f"RDKit's SA score is missing: {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SyntheticAccessibility:
    """RDKit's SA score (Ertl & Schuffenhauer 2009), 1 (easy) .. 10 (hard).

    With ``normalize=True`` (default) returns ``(10 - SA) / 9`` in ``[0, 1]``, higher is better.
    """

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        sa = torch.tensor([_sascorer().calculateScore(m) for m in mols], dtype=torch.float32)
        return (10.0 - sa) / 9.0 if self.normalize else sa


class Product:
    """The product of several rewards (a multi-property reward)."""

    def __init__(self, *rewards: RewardFn):
        self.rewards = rewards

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        out = torch.ones(len(mols))
        for r in self.rewards:
            out = out * r(mols)
        return out


def qed_sa() -> Product:
    """The default task's reward: QED times normalised synthetic accessibility."""
    return Product(QED(), SyntheticAccessibility())


def log_reward(reward: RewardFn, mols: Sequence[Chem.Mol], floor: float = 1e-8) -> Tensor:
    """``log max(R(x), floor)`` for each molecule, ``[B]``, after checking the reward's output.

    Raises :class:`RewardError` naming the molecule whose reward is NaN, infinite or negative,
    or when the output does not have shape ``[B]``.
    """
    r = torch.as_tensor(reward(mols), dtype=torch.float32).detach().cpu()
    if r.shape != (len(mols),):
        raise RewardError(f"reward {type(reward).__name__} returned shape {tuple(r.shape)} for {len(mols)} molecules; expected ({len(mols)},)")
    bad = ~torch.isfinite(r) | (r < 0)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise RewardError(f"reward {type(reward).__name__} returned {r[i].item()} (must be finite and >= 0) "
                          f"for molecule {i}: {Chem.MolToSmiles(mols[i])}")
    return r.clamp_min(floor).log()


__all__ = ["RewardFn", "RewardError", "QED", "SyntheticAccessibility", "Product", "qed_sa", "log_reward"]
