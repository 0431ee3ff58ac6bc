r"""Evaluating molecule generators: fingerprint similarity, modes found during training, top-k
reward and diversity, importance-sampled likelihoods, correlations and the response to beta.

Similarities are Tanimoto similarities of Morgan bit fingerprints (RDKit, radius 2, 2048 bits
unless told otherwise); a distance is ``1 - similarity``. Molecules are identified by their
canonical SMILES.

Example (call ``tracker.update`` every training step)::

    >>> tracker = ModeTracker(reward_threshold=0.9, max_similarity=0.7)
    >>> tracker.update(["CCO", "OCC", "CC", "c1ccccc1"], [0.95, 0.97, 0.5, 0.92], num_trajectories=4)
    2
    >>> tracker.modes, tracker.history  # OCC is CCO again; CC is below the threshold
    (['CCO', 'c1ccccc1'], [(4, 2)])
    >>> top_k_reward(["CCO", "OCC", "CC"], [0.9, 0.7, 0.5], k=2)  # CCO at its best (0.9) and CC
    0.7
    >>> round(top_k_diversity(["CCO", "OCC", "CC"], [0.9, 0.7, 0.5], k=2), 4)  # 1 bit shared of 7: 1 - 1/7
    0.8571
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np
import torch
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from scipy import stats
from torch import Tensor

from .betas import check_beta
from .sampler import evaluate_trajectories, sample_backward_trajectories
from .smiles import mol_from_smiles

MolLike = str | Chem.Mol


# -- fingerprints and similarity ------------------------------------------------------------------
@lru_cache(maxsize=8)
def morgan_generator(radius: int = 2, n_bits: int = 2048):
    """RDKit's Morgan (ECFP-like) bit-fingerprint generator of ``radius`` and ``n_bits``, made
    once per setting and reused (building one costs more than fingerprinting a molecule)."""
    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def _to_mol(item: MolLike, i: int) -> Chem.Mol:
    """Molecule ``i`` of an input list, parsed if it is SMILES; raises ``ValueError`` naming it."""
    if isinstance(item, Chem.Mol):
        return item
    if not isinstance(item, str):
        raise ValueError(f"molecule {i} must be a SMILES string or an RDKit Mol, got {type(item).__name__}")
    mol = mol_from_smiles(item)  # the error below names the SMILES; RDKit's log line adds nothing
    if mol is None:
        raise ValueError(f"invalid SMILES at index {i}: {item!r}")
    return mol


def canonical_smiles(molecules: Sequence[MolLike]) -> list[str]:
    """RDKit canonical SMILES of each molecule (SMILES or ``Mol``); ``ValueError`` names the
    first invalid SMILES and its index."""
    return [Chem.MolToSmiles(_to_mol(m, i)) for i, m in enumerate(molecules)]


def morgan_fingerprints(molecules: Sequence[MolLike], radius: int = 2, n_bits: int = 2048) -> list:
    """Morgan bit fingerprints (``ExplicitBitVect`` of ``n_bits``) of SMILES or ``Mol``
    objects; ``ValueError`` names the first invalid SMILES and its index."""
    gen = morgan_generator(radius, n_bits)
    return [gen.GetFingerprint(_to_mol(m, i)) for i, m in enumerate(molecules)]


def bulk_tanimoto(query, fingerprints: Sequence) -> Tensor:
    """Tanimoto similarity of one fingerprint to each of ``N`` others, float64 ``[N]``:
    :math:`|A \\cap B| / |A \\cup B|` over set bits."""
    return torch.tensor(DataStructs.BulkTanimotoSimilarity(query, list(fingerprints)), dtype=torch.float64)


def mean_pairwise_similarity(molecules: Sequence[MolLike], radius: int = 2, n_bits: int = 2048) -> float:
    """Mean Tanimoto similarity over the ``N (N - 1) / 2`` unordered pairs of ``N >= 2``
    molecules (duplicates are kept: two copies of a molecule are a pair of similarity 1)."""
    if len(molecules) < 2:
        raise ValueError(f"mean_pairwise_similarity needs at least 2 molecules, got {len(molecules)}")
    fps = morgan_fingerprints(molecules, radius, n_bits)
    sims = torch.cat([bulk_tanimoto(fps[i], fps[i + 1:]) for i in range(len(fps) - 1)])
    return float(sims.mean())


# -- modes ----------------------------------------------------------------------------------------
def _as_floats(values, name: str) -> np.ndarray:
    """``values`` (a sequence, array or tensor) as a float ``[N]`` array, float64 unless it
    already is floating point: float32 rewards stay float32, so a reward of ``0.9`` meets a
    threshold of ``0.9`` (widened, it would be 0.8999999762)."""
    if isinstance(values, Tensor):
        values = values.detach().cpu()
    out = np.asarray(values)
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float64)
    if out.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {out.shape}")
    return out


@dataclass
class ModeTracker:
    """Counts the modes a generator has found, as training goes.

    A molecule is a new mode when its normalised reward ``reward / reward_scale`` is at least
    ``reward_threshold`` and its Tanimoto similarity to every mode found before it is below
    ``max_similarity``. Molecules are taken in order, so two near-duplicates in one batch count
    once. Only molecules at or above the threshold are parsed and fingerprinted, so calling
    :meth:`update` every training step is cheap.

    Args:
        reward_threshold: least normalised reward of a mode.
        max_similarity: a molecule this similar (or more) to a known mode is not a new one.
        reward_scale: rewards are divided by it (> 0), e.g. the best known reward.
        radius, n_bits: of the Morgan fingerprints.

    Attributes:
        modes: the SMILES of the modes, in the order they were found.
        trajectories_seen: trajectories passed to :meth:`update` so far.
        history: ``(trajectories_seen, len(modes))`` after each :meth:`update`, for a plot of
            modes against trajectories.
    """

    reward_threshold: float = 0.9
    max_similarity: float = 0.7
    reward_scale: float = 1.0
    radius: int = 2
    n_bits: int = 2048
    modes: list[str] = field(default_factory=list, init=False)
    trajectories_seen: int = field(default=0, init=False)
    history: list[tuple[int, int]] = field(default_factory=list, init=False)
    _fingerprints: list = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not math.isfinite(self.reward_threshold):
            raise ValueError(f"reward_threshold must be finite, got {self.reward_threshold}")
        if not 0.0 < self.max_similarity <= 1.0:
            raise ValueError(f"max_similarity must lie in (0, 1], got {self.max_similarity}")
        if not (math.isfinite(self.reward_scale) and self.reward_scale > 0):
            raise ValueError(f"reward_scale must be finite and > 0, got {self.reward_scale}")

    @property
    def num_modes(self) -> int:
        return len(self.modes)

    def update(self, smiles: Sequence[str], rewards, num_trajectories: int) -> int:
        """Add a batch; returns how many new modes it holds.

        Args:
            smiles: ``N`` molecules.
            rewards: ``[N]`` rewards (a sequence, array or tensor), not normalised.
            num_trajectories: trajectories this batch came from (``>= N``; more when some
                molecules were dropped, e.g. invalid ones); added to ``trajectories_seen``.
        """
        r = _as_floats(rewards, "rewards") / self.reward_scale
        if r.shape[0] != len(smiles):
            raise ValueError(f"{len(smiles)} SMILES but {r.shape[0]} rewards")
        if np.isnan(r).any():
            raise ValueError(f"reward of molecule {int(np.isnan(r).argmax())} is NaN")
        if num_trajectories < len(smiles):
            raise ValueError(f"num_trajectories={num_trajectories} is fewer than the {len(smiles)} molecules")
        found = 0
        gen = morgan_generator(self.radius, self.n_bits)
        for i in np.flatnonzero(r >= self.reward_threshold).tolist():
            fp = gen.GetFingerprint(_to_mol(smiles[i], i))
            if not self._fingerprints or float(bulk_tanimoto(fp, self._fingerprints).max()) < self.max_similarity:
                self.modes.append(smiles[i])
                self._fingerprints.append(fp)
                found += 1
        self.trajectories_seen += num_trajectories
        self.history.append((self.trajectories_seen, len(self.modes)))
        return found

    def _settings(self) -> dict:
        return {"reward_threshold": self.reward_threshold, "max_similarity": self.max_similarity,
                "reward_scale": self.reward_scale, "radius": self.radius, "n_bits": self.n_bits}

    def state_dict(self) -> dict:
        """Settings and progress as plain Python (numbers, strings, lists) for a checkpoint."""
        return {**self._settings(), "modes": list(self.modes), "trajectories_seen": self.trajectories_seen,
                "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        """Restore progress saved by :meth:`state_dict`. The settings must equal this
        tracker's: modes counted under other thresholds would not add up."""
        differ = {k: (state.get(k), v) for k, v in self._settings().items() if state.get(k) != v}
        if differ:
            raise ValueError(f"saved ModeTracker settings differ (saved, current): {differ}")
        self.modes = list(state["modes"])
        self._fingerprints = morgan_fingerprints(self.modes, self.radius, self.n_bits)
        self.trajectories_seen = int(state["trajectories_seen"])
        self.history = [(int(t), int(m)) for t, m in state["history"]]


# -- top-k ----------------------------------------------------------------------------------------
def best_rewards(smiles: Iterable[str], rewards: Iterable[float],
                 best: dict[str, float] | None = None) -> dict[str, float]:
    """The highest reward of each distinct molecule, ``{smiles: reward}``, in the order the
    molecules are first seen (a later equal reward keeps the first). With ``best``, that record is
    updated in place and returned: a running record over batches.

    The SMILES are taken as given: canonicalise them (:func:`canonical_smiles`) where one
    molecule may be written in several ways.

    >>> best_rewards(["CCO", "CC", "CCO"], [0.2, 0.5, 0.7])
    {'CCO': 0.7, 'CC': 0.5}
    """
    best = {} if best is None else best
    for s, r in zip(smiles, rewards):
        if s not in best or r > best[s]:
            best[s] = r
    return best


def top_k_unique(smiles: Sequence[MolLike], rewards, k: int) -> tuple[list[str], list[float]]:
    """The ``k`` best distinct molecules by reward: ``(canonical SMILES, rewards)``, best
    first. A molecule seen more than once keeps its highest reward; ties go to the smaller
    canonical SMILES, so the choice is deterministic."""
    r = _as_floats(rewards, "rewards")
    if len(smiles) == 0:
        raise ValueError("no molecules given")
    if r.shape[0] != len(smiles):
        raise ValueError(f"{len(smiles)} molecules but {r.shape[0]} rewards")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if np.isnan(r).any():
        raise ValueError(f"reward of molecule {int(np.isnan(r).argmax())} is NaN")
    best = best_rewards(canonical_smiles(smiles), r.tolist())
    if len(best) < k:
        raise ValueError(f"only {len(best)} distinct molecules, fewer than k={k}")
    ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [s for s, _ in ranked], [x for _, x in ranked]


def top_k_reward(smiles: Sequence[MolLike], rewards, k: int) -> float:
    """Mean reward of the ``k`` best distinct molecules (by canonical SMILES). ``rewards: [N]``."""
    return float(np.mean(top_k_unique(smiles, rewards, k)[1]))


def top_k_diversity(smiles: Sequence[MolLike], rewards, k: int, radius: int = 2, n_bits: int = 2048) -> float:
    """Mean pairwise Tanimoto distance (``1 - similarity``) among the ``k >= 2`` best distinct
    molecules. ``rewards: [N]``."""
    if k < 2:
        raise ValueError(f"top_k_diversity needs k >= 2 (a pair), got {k}")
    return 1.0 - mean_pairwise_similarity(top_k_unique(smiles, rewards, k)[0], radius, n_bits)


# -- likelihood -----------------------------------------------------------------------------------
def _per_state_beta(beta, B: int) -> Tensor:
    b = check_beta(beta)
    if b.dim() == 0:
        return b.expand(B)
    if b.shape != (B,):
        raise ValueError(f"beta must be a number or have shape [{B}], got {tuple(b.shape)}")
    return b


@torch.no_grad()
def log_likelihood(gfn, env, terminal, beta, num_samples: int = 64, generator: torch.Generator | None = None,
                   batch_size: int = 4096) -> Tensor:
    r"""Importance-sampled :math:`\log p(x \mid \beta)`, the log-probability that the forward
    policy ends in each terminal state, ``[B]``.

    With ``K = num_samples`` trajectories :math:`\tau_k` drawn backwards from :math:`x` by the
    uniform backward policy :math:`P_B` (:func:`~lgfn_graph.sampler.sample_backward_trajectories`,
    also when the model has a learned backward policy: the weights belong to the proposal):

    .. math::
        \log \hat p(x) = \log \frac1K \sum_k \frac{P_F(\tau_k; \beta)}{P_B(\tau_k \mid x)}
        - \log|\mathrm{Aut}(x)|.

    The mean is an unbiased estimate of :math:`q(x) = \sum_\tau P_F(\tau; \beta)` over the
    backward walks :math:`\tau` from :math:`x`, so the log is consistent (its bias, of order
    ``1/K``, is negative). What :math:`q` counts depends on the environment:

    * states that are exactly the objects of the DAG (:class:`~lgfn_graph.AtomEnv`: a graph
      *with its atom order*): :math:`q(x) = p(x)`; sum over orders for a molecular graph;
    * :class:`~lgfn_graph.FragmentEnv`, whose states are trees up to isomorphism: a walk removes
      a leaf *node*, and the :math:`|\mathrm{Aut}(x)|` walks that differ by a symmetry of
      :math:`x` rebuild it with the same forward actions, so :math:`q(x) = |\mathrm{Aut}(x)|\,
      p(x)`. The environment's ``log_automorphisms`` (zero where states are never relabelled)
      is subtracted, which makes the estimate that of the probability of the isomorphism class,
      as :func:`lgfn_graph.exact.exact_terminal_distribution` computes it. (The walks' states
      are renumbered trees: exact for a permutation-equivariant model, as every GNN here is.)

    Args:
        gfn: the model.
        env: the environment (``backward_masks``, ``backward_step``, ``num_parents``).
        terminal: ``B`` states at which ``stop`` is legal.
        beta: a number or ``[B]`` inverse temperatures.
        num_samples: ``K``, backward trajectories per state.
        generator: random source of the backward walks.
        batch_size: trajectories evaluated in one model pass (of the ``B * K``).
    """
    B = len(terminal)
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}")
    beta = _per_state_beta(beta, B)
    can_stop = env.can_stop(terminal)
    if not bool(can_stop.all()):
        raise ValueError(f"states {(~can_stop).nonzero().flatten()[:10].tolist()} are not terminal (stop is illegal)")
    owner = torch.arange(B).repeat_interleave(num_samples)  # [B * K]: the state of each sample
    log_w = torch.empty(B * num_samples)
    for start in range(0, B * num_samples, batch_size):
        idx = owner[start:start + batch_size]
        traj = sample_backward_trajectories(env, terminal[idx], beta[idx], generator)
        log_pf = evaluate_trajectories(gfn, env, traj).log_pf.sum(1).cpu()
        log_w[start:start + len(idx)] = log_pf - traj.log_pb.sum(1)
    est = torch.logsumexp(log_w.view(B, num_samples), 1) - math.log(num_samples)
    return est - env.log_automorphisms(terminal)


# -- correlations and temperature -----------------------------------------------------------------
def correlations(x, y) -> dict[str, float]:
    """Spearman and Pearson correlation of ``x: [N]`` and ``y: [N]`` (sequences, arrays or
    tensors): ``{"spearman": ..., "pearson": ...}``. Raises ``ValueError`` for fewer than 3
    points, a NaN or infinite value, or a constant input (the correlation is undefined)."""
    a, b = _as_floats(x, "x"), _as_floats(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length: {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] < 3:
        raise ValueError(f"correlations need at least 3 points, got {a.shape[0]}")
    for name, v in (("x", a), ("y", b)):
        bad = ~np.isfinite(v)
        if bad.any():
            raise ValueError(f"{name} has {int(bad.sum())} NaN or infinite values (first at index {int(bad.argmax())})")
        if v.min() == v.max():
            raise ValueError(f"{name} is constant ({v[0]}): its correlation is undefined")
    return {"spearman": float(stats.spearmanr(a, b).statistic), "pearson": float(stats.pearsonr(a, b).statistic)}


def temperature_response(rows: Sequence[dict], k: int = 10, radius: int = 2, n_bits: int = 2048) -> list[dict]:
    """Summary statistics of samples at each beta, one dict per beta, sorted by beta.

    ``rows`` are dicts with ``beta``, ``smiles`` and ``reward`` (as
    :func:`lgfn_graph.evaluate.sample_molecules` returns). Each result has ``beta``, ``n``,
    ``mean_reward``, ``std_reward`` (sample standard deviation; 0 for one sample),
    ``unique_fraction`` (distinct canonical SMILES / ``n``), ``top_k`` (``min(k, distinct
    molecules)``: a sharp distribution at large beta may hold fewer than ``k``),
    ``top_k_reward`` and ``top_k_diversity`` over those (NaN when ``top_k < 2``: no pair).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not rows:
        raise ValueError("no sample rows given")
    groups: dict[float, list[dict]] = {}
    for i, row in enumerate(rows):
        missing = [key for key in ("beta", "smiles", "reward") if key not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}")
        groups.setdefault(float(row["beta"]), []).append(row)
    return [_summarise(b, groups[b], k, radius, n_bits) for b in sorted(groups)]


def _summarise(beta: float, rows: list[dict], k: int, radius: int, n_bits: int) -> dict:
    """One :func:`temperature_response` entry: the samples of one beta."""
    smiles = [r["smiles"] for r in rows]
    rewards = np.array([r["reward"] for r in rows], dtype=np.float64)
    n_unique = len(set(canonical_smiles(smiles)))
    kk = min(k, n_unique)
    return {"beta": beta, "n": len(rows), "mean_reward": float(rewards.mean()),
            "std_reward": float(rewards.std(ddof=1)) if len(rows) > 1 else 0.0,
            "unique_fraction": n_unique / len(rows), "top_k": kk,
            "top_k_reward": top_k_reward(smiles, rewards, kk),
            "top_k_diversity": top_k_diversity(smiles, rewards, kk, radius, n_bits) if kk >= 2 else math.nan}


__all__ = ["canonical_smiles", "morgan_generator", "morgan_fingerprints", "bulk_tanimoto", "mean_pairwise_similarity",
           "ModeTracker", "best_rewards", "top_k_unique", "top_k_reward", "top_k_diversity", "log_likelihood", "correlations",
           "temperature_response"]
