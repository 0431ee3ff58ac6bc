"""What both kinds of proxy share: their error and the accuracy scores of their reports."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import spearmanr

from .datasets import MoleculeDataset


class ProxyError(ValueError):
    """A proxy cannot be fitted, used or loaded; the message names the file or molecule."""


@dataclass(frozen=True)
class Scores:
    """Accuracy of predictions: root mean squared error, R^2 (NaN for constant values) and
    Spearman rank correlation (NaN where the values or the predictions are constant)."""

    rmse: float
    r2: float
    spearman: float

    def scores_text(self) -> str:
        return f"RMSE {self.rmse:.3f}, R^2 {self.r2:.3f}, Spearman {self.spearman:.3f}"


def training_data(data: MoleculeDataset | Sequence, values: Sequence[float] | None, who: str) -> tuple[list, np.ndarray]:
    """``(N molecules or SMILES, [N] float64 values)`` of a :class:`MoleculeDataset` (its SMILES
    and values) or of ``N`` molecules and ``N`` values; :class:`ProxyError` for values that are
    not ``N`` finite numbers, naming ``who`` (the function fitting)."""
    if isinstance(data, MoleculeDataset):
        if values is not None:
            raise ValueError("give values only with a list of molecules, not with a MoleculeDataset (it holds its own)")
        data, values = data.smiles, data.values
    if values is None:
        raise ValueError(f"{who} needs values: one score per molecule")
    y = np.asarray(values, dtype=np.float64)
    if y.shape != (len(data),) or not np.isfinite(y).all():
        raise ProxyError(f"{who} needs {len(data)} finite values, got shape {y.shape} "
                         f"with {int((~np.isfinite(y)).sum())} non-finite")
    return list(data), y


def regression_scores(y, pred) -> tuple[float, float, float]:
    """``(rmse, r2, spearman)`` of predictions ``pred [N]`` of values ``y [N]`` (arrays), as :class:`Scores` defines them."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((pred - y) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    constant = np.ptp(y) == 0 or np.ptp(pred) == 0  # the rank correlation is undefined (scipy would warn)
    rho = math.nan if constant else float(spearmanr(y, pred).statistic)
    return float(np.sqrt(np.mean((pred - y) ** 2))), r2, rho


__all__ = ["ProxyError", "Scores", "regression_scores", "training_data"]
