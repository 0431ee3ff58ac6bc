"""Rewards: callables from RDKit molecules to non-negative scores, and their validation.

Any callable ``mols (length B) -> [B]`` non-negative scores is a reward ("bring your own
reward"): the oracles here, :class:`SmilesReward` around a function of SMILES strings,
:class:`~lgfn_graph.proxy.FingerprintProxy`, or a plain function. :func:`score_molecules`
turns a reward's output into ``log R`` and deals with invalid molecules and bad scores.
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Literal, Sequence

import torch
from rdkit import Chem, RDConfig, rdBase
from rdkit.Chem import QED as _QED
from rdkit.Chem import Crippen, Descriptors
from torch import Tensor

from .smiles import describe_molecule

RewardFn = Callable[[Sequence[Chem.Mol]], Tensor]
"""A reward: ``mols (length B) -> [B]`` non-negative scores."""

OnError = Literal["raise", "floor"]


class RewardError(ValueError):
    """A molecule could not be scored: invalid, or its reward is NaN, negative, or raised;
    or the reward's output has the wrong shape."""


def _name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _as_scores(fn, out, n: int) -> Tensor:
    """``fn``'s output ``out`` (tensor, array or list) as float32 ``[n]``, or a RewardError."""
    try:
        r = torch.as_tensor(out, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise RewardError(f"reward {_name(fn)} returned {type(out).__name__}, not numbers: {e}") from e
    if r.shape != (n,):
        raise RewardError(f"reward {_name(fn)} returned shape {tuple(r.shape)} for {n} molecules; expected ({n},)")
    return r


def _descriptor(fn: Callable[[Chem.Mol], float], mols: Sequence[Chem.Mol]) -> Tensor:
    return torch.tensor([fn(m) for m in mols], dtype=torch.float32)


# -- oracles ------------------------------------------------------------------------------------
class QED:
    """Quantitative estimate of drug-likeness (RDKit), in ``(0, 1]``. Shapes: ``B mols -> [B]``."""

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        return _descriptor(_QED.qed, mols)


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
    Shapes: ``B mols -> [B]``.
    """

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        sa = _descriptor(_sascorer().calculateScore, mols)
        return (10.0 - sa) / 9.0 if self.normalize else sa


@dataclass(frozen=True)
class Window:
    r"""A soft window: :math:`w(x) = \exp(-d^2 / (2\,\mathrm{width}^2))`, where
    :math:`d = \max(\mathrm{low} - x,\ 0,\ x - \mathrm{high})` is the distance to ``[low, high]``.

    So ``w = 1`` inside the window, ``e^{-1/2} ~ 0.61`` one ``width`` outside, ``e^{-2}`` two.
    ``low == high`` gives a Gaussian bump around a target. Shapes: ``[B] -> [B]``.
    """

    low: float
    high: float
    width: float

    def __post_init__(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"window needs finite low <= high, got low={self.low}, high={self.high}")
        if not (math.isfinite(self.width) and self.width > 0):
            raise ValueError(f"window width must be finite and > 0, got width={self.width}")

    def __call__(self, x: Tensor) -> Tensor:
        d = (self.low - x).clamp_min(0) + (x - self.high).clamp_min(0)
        return torch.exp(-0.5 * (d / self.width) ** 2)


class MolecularWeightWindow:
    """1 for an average molecular weight (RDKit ``MolWt``, Da) in ``[low, high]``, decaying
    smoothly outside as a :class:`Window`: ``exp(-d^2 / (2 width^2))``, ``d`` Da from the window.

    Shapes: ``B mols -> [B]`` in ``(0, 1]``.
    """

    def __init__(self, low: float = 200.0, high: float = 500.0, width: float = 50.0):
        self.window = Window(low, high, width)

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        return self.window(_descriptor(Descriptors.MolWt, mols))


class LogP:
    """Crippen logP (Wildman & Crippen 1999, RDKit ``MolLogP``).

    Args:
        target: ``None`` (default) returns raw logP, which can be negative: a property to
            combine (e.g. in :class:`WeightedSum`), not a reward alone. A number ``t`` returns
            the Gaussian ``exp(-(logP - t)^2 / (2 width^2))``; a pair ``(low, high)`` returns
            the :class:`Window` (1 inside, Gaussian decay outside). Both lie in ``(0, 1]``.
        width: the decay scale in logP units (default 1).

    Shapes: ``B mols -> [B]``.
    """

    def __init__(self, target: float | tuple[float, float] | None = None, width: float = 1.0):
        if target is None:
            self.window = None
        elif isinstance(target, (int, float)):
            self.window = Window(target, target, width)
        else:
            self.window = Window(*target, width)

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        logp = _descriptor(Crippen.MolLogP, mols)
        return logp if self.window is None else self.window(logp)


# -- combinations -------------------------------------------------------------------------------
class Product:
    """The product of several rewards (a multi-property reward). Shapes: ``B mols -> [B]``."""

    def __init__(self, *rewards: RewardFn):
        self.rewards = rewards

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        out = torch.ones(len(mols))
        for r in self.rewards:
            out = out * _as_scores(r, r(mols), len(mols))
        return out


class WeightedSum:
    """``sum_k weights[k] * rewards[k](mols)``. Shapes: ``B mols -> [B]``.

    Weights must be finite; with a negative weight the sum can be negative, which
    :func:`score_molecules` reports as an invalid reward.
    """

    def __init__(self, rewards: Sequence[RewardFn], weights: Sequence[float]):
        if len(rewards) != len(weights) or not rewards:
            raise ValueError(f"WeightedSum needs one weight per reward, got {len(rewards)} rewards "
                             f"and {len(weights)} weights")
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"WeightedSum weights must be finite, got {list(weights)}")
        self.rewards, self.weights = list(rewards), [float(w) for w in weights]

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        out = torch.zeros(len(mols))
        for r, w in zip(self.rewards, self.weights):
            out = out + w * _as_scores(r, r(mols), len(mols))
        return out


class SmilesReward:
    """A reward from any function of canonical SMILES strings: ``fn(list[str])`` returning
    ``B`` scores as a list, NumPy array or tensor. Shapes: ``B mols -> [B]``.

    Example (the function reads canonical SMILES)::

        >>> from rdkit import Chem
        >>> reward = SmilesReward(lambda smiles: [len(s) / 50 for s in smiles])
        >>> reward([Chem.MolFromSmiles("OCC"), Chem.MolFromSmiles("c1ccccc1")])  # CCO and c1ccccc1
        tensor([0.0600, 0.1600])
    """

    def __init__(self, fn: Callable[[list[str]], object]):
        self.fn = fn
        self.__name__ = f"SmilesReward({_name(fn)})"

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        return _as_scores(self, self.fn([Chem.MolToSmiles(m) for m in mols]), len(mols))


def qed_sa() -> Product:
    """The default task's reward: QED times normalised synthetic accessibility."""
    return Product(QED(), SyntheticAccessibility())


# -- scoring a batch with invalid molecules -----------------------------------------------------
@dataclass
class RewardResult:
    """Scores of a batch of ``B`` molecules.

    Attributes:
        log_reward: ``[B]`` float32, ``log max(R(x), floor)``; ``log floor`` where invalid.
        invalid: ``[B]`` bool, the molecules (or their rewards) that were unusable.
        messages: one line per invalid molecule, naming its index and SMILES.
    """

    log_reward: Tensor
    invalid: Tensor
    messages: list[str] = field(default_factory=list)

    @property
    def num_invalid(self) -> int:
        return int(self.invalid.sum())


def _structure_problem(i: int, mol) -> str | None:
    if mol is None:
        return f"molecule {i} is None (not a molecule)"
    with rdBase.BlockLogs():
        try:
            problems = Chem.DetectChemistryProblems(mol)
        except RuntimeError as e:  # RDKit cannot even check some molecules, e.g. [CH128]
            return f"molecule {i} fails RDKit sanitization ({e}): {describe_molecule(mol)}"
    if problems:
        return f"molecule {i} fails RDKit sanitization ({problems[0].Message()}): {describe_molecule(mol)}"
    return None


def _one_at_a_time(reward: RewardFn, mols: list, idx: list[int], problems: dict[int, str],
                   on_error: OnError, batch_error: Exception) -> Tensor:
    """Scores ``[len(idx)]`` of ``mols[idx]`` one molecule at a time, to find which raise."""
    r = torch.zeros(len(idx))
    for k, i in enumerate(idx):
        try:
            out = reward([mols[i]])
        except Exception as e:  # any error of user code names its molecule
            msg = f"reward {_name(reward)} raised {type(e).__name__}: {e} on molecule {i}: {describe_molecule(mols[i])}"
            if on_error == "raise":
                raise RewardError(msg) from e
            problems[i] = msg
            continue
        r[k] = _as_scores(reward, out, 1)[0]
    if on_error == "raise":
        raise RewardError(f"reward {_name(reward)} raised {type(batch_error).__name__}: {batch_error} on a "
                          f"batch of {len(idx)} molecules, but on none of them alone") from batch_error
    return r


def _raise_first(problems: dict[int, str], on_error: OnError) -> None:
    if problems and on_error == "raise":
        first = min(problems)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RewardError(problems[first] + more)


def score_molecules(reward: RewardFn, mols: Sequence[Chem.Mol | None], floor: float = 1e-8,
                    on_error: OnError = "raise") -> RewardResult:
    """Score ``B`` molecules, checking the molecules and the reward's output.

    A molecule is invalid if it is ``None``, fails RDKit sanitization, makes the reward raise,
    or gets a NaN, infinite or negative reward. With ``on_error="raise"`` the first one raises
    :class:`RewardError` naming its index and SMILES; with ``"floor"`` each gets ``log floor``
    and a line in ``messages``. Invalid molecules are never passed to the reward. If the reward
    raises on the batch, the molecules are scored one at a time to find the culprit(s).
    An output that is not of shape ``[B]`` is always an error.

    Shapes: ``B mols -> RewardResult`` of ``[B]`` tensors.
    """
    if on_error not in ("raise", "floor"):
        raise ValueError(f"on_error must be 'raise' or 'floor', got {on_error!r}")
    mols = list(mols)
    problems = {i: p for i, m in enumerate(mols) if (p := _structure_problem(i, m)) is not None}
    _raise_first(problems, on_error)
    idx = [i for i in range(len(mols)) if i not in problems]
    r = torch.zeros(len(mols))
    if idx:
        try:
            out = reward([mols[i] for i in idx])
        except Exception as e:  # isolate the molecule that makes user code fail
            r[idx] = _one_at_a_time(reward, mols, idx, problems, on_error, e)
        else:
            r[idx] = _as_scores(reward, out, len(idx))
    bad = ~torch.isfinite(r) | (r < 0)
    for i in bad.nonzero().flatten().tolist():
        if i not in problems:
            problems[i] = (f"reward {_name(reward)} returned {r[i].item()} (must be finite and >= 0) "
                           f"for molecule {i}: {describe_molecule(mols[i])}")
    _raise_first(problems, on_error)
    invalid = torch.zeros(len(mols), dtype=torch.bool)
    invalid[list(problems)] = True
    log_r = r.masked_fill(invalid, floor).clamp_min(floor).log()
    return RewardResult(log_r, invalid, [problems[i] for i in sorted(problems)])


def log_reward(reward: RewardFn, mols: Sequence[Chem.Mol], floor: float = 1e-8) -> Tensor:
    """``log max(R(x), floor)`` for each molecule, ``[B]``: :func:`score_molecules` with
    ``on_error="raise"``, so any invalid molecule or bad score raises :class:`RewardError`."""
    return score_molecules(reward, mols, floor, "raise").log_reward


__all__ = ["RewardFn", "RewardError", "RewardResult", "QED", "SyntheticAccessibility", "Window",
           "MolecularWeightWindow", "LogP", "Product", "WeightedSum", "SmilesReward", "qed_sa",
           "score_molecules", "log_reward"]
