"""Sampled molecules as PyG data: one atom-level graph per molecule, with its reward and beta.

Each sample is a :class:`SampleData` (a :class:`~torch_geometric.data.Data`) holding the graph
:func:`~lgfn_graph.featurize.mol_to_graph` makes of its canonical SMILES (the sEH proxy's
featurizer), so a sample converted from a CSV row is the same graph as one sampled directly.
:class:`SampleDataset` keeps them in memory, feeds a PyG ``DataLoader`` as is, and saves to and
loads from a file without running code from it.

Example (an untrained model on two fragments; any model, env and reward will do)::

    >>> import tempfile
    >>> from pathlib import Path
    >>> import lgfn_graph as L
    >>> from torch_geometric.loader import DataLoader
    >>> env = L.FragmentEnv(L.FragmentLibrary.from_pairs([("C", [0]), ("O", [0])]), max_fragments=2)
    >>> gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=8, num_layers=1, heads=1))
    >>> reward = L.SmilesReward(lambda smiles: [len(s) for s in smiles])
    >>> data = sample_pyg(gfn, env, reward, beta=32.0, n=6)
    >>> data[0]  # doctest: +ELLIPSIS
    SampleData(x=[..., 71], edge_index=[2, ...], edge_attr=[..., 4], y=[1], beta=[1], smiles='...')
    >>> all(float(d.y) == len(d.smiles) and float(d.beta) == 32.0 for d in data)
    True
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     SampleDataset.save(data, Path(tmp) / "samples.pt")
    ...     loader = DataLoader(SampleDataset.from_file(Path(tmp) / "samples.pt"), batch_size=4)
    >>> [batch.num_graphs for batch in loader]
    [4, 2]
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch_geometric.data import Data, InMemoryDataset

from .checkpoint import READ_ERRORS, unpickler_refusal
from .evaluate import sample_batches
from .featurize import FeaturizeError, mol_to_graph
from .files import atomic_write
from .rewards import RewardFn
from .smiles import mol_from_smiles

FORMAT, FORMAT_VERSION = "lgfn_graph.samples", 1


class SampleData(Data):
    """One sampled molecule.

    Shapes (``N`` atoms, ``E`` directed bonds; ``K`` fragments, ``F`` library fragments, ``S``
    stems per fragment at most):

    * ``x [N, 71]``, ``edge_index [2, E]``, ``edge_attr [E, 4]``: the atom-level graph of
      :func:`~lgfn_graph.featurize.mol_to_graph`, atoms in the order of the canonical SMILES.
    * ``y [1]``: the reward (float32); ``beta [1]``: the inverse temperature it was sampled at.
    * ``smiles``: the canonical SMILES (``str``).
    * with ``fragment_graph=True`` only, the terminal state's fragment tree
      (:meth:`FragmentEnv.to_data`): ``frag_x [K, F + S]`` (fragment one-hot, used-stem flags),
      ``frag_edge_index [2, 2 * (K - 1)]`` (both directions), ``frag_edge_attr [2 * (K - 1), 2 * S]``
      (one-hot stems at both ends).

    Batched, ``y`` and ``beta`` become ``[B]`` and ``smiles`` a list; ``frag_edge_index`` is
    offset by fragment counts (not atom counts), and ``DataLoader(..., follow_batch=["frag_x"])``
    adds the fragment-to-graph vector ``frag_x_batch [sum K]``.
    """

    def __inc__(self, key: str, value, *args, **kwargs):
        # PyG offsets any "*index" attribute by the atom count; fragment edges index fragments
        if key == "frag_edge_index":
            return self.frag_x.size(0)
        return super().__inc__(key, value, *args, **kwargs)


def smiles_to_data(smiles: str, reward: float, beta: float) -> SampleData:
    """The :class:`SampleData` of one molecule given by SMILES (shapes there, no fragment graph).

    Raises :class:`~lgfn_graph.featurize.FeaturizeError` for a SMILES RDKit cannot parse or a
    molecule the featurizer cannot describe.
    """
    g = mol_to_graph(mol_from_smiles(smiles))
    return SampleData(x=g.x, edge_index=g.edge_index, edge_attr=g.edge_attr, y=torch.tensor([float(reward)]),
                      beta=torch.tensor([float(beta)]), smiles=smiles)


def rows_to_data(rows: Iterable[Mapping], on_error: str = "raise") -> list[SampleData]:
    """Samples given as rows (the dicts of :func:`~lgfn_graph.sample_molecules`, or the rows of
    a ``lgfn sample`` CSV read by ``csv.DictReader``; strings are converted) as PyG data.

    Each row needs ``smiles``, ``reward`` and ``beta``. ``on_error="raise"`` (default) raises
    :class:`~lgfn_graph.featurize.FeaturizeError` naming the first molecule that cannot be
    featurised (its row index and SMILES); ``"skip"`` leaves such molecules out with one warning
    that counts them. Returns one :class:`SampleData` per kept row (shapes there).
    """
    _check_on_error(on_error)
    out, skipped = [], []
    for i, row in enumerate(rows):
        missing = [k for k in ("smiles", "reward", "beta") if k not in row]
        if missing:
            raise ValueError(f"row {i} has no {', '.join(map(repr, missing))} (it has {', '.join(map(repr, row))})")
        try:
            reward, beta = float(row["reward"]), float(row["beta"])
        except (TypeError, ValueError):
            raise ValueError(f"row {i} ({row['smiles']!r}): reward and beta must be numbers, got "
                             f"{row['reward']!r} and {row['beta']!r}") from None
        _append(out, skipped, on_error, i, row["smiles"], reward, beta)
    _warn_skipped(skipped)
    return out


def sample_pyg(gfn, env, reward: RewardFn, beta: float, n: int, batch_size: int = 128, seed: int = 0,
               fragment_graph: bool = False, on_error: str = "raise") -> list[SampleData]:
    """Draw ``n`` molecules from the policy at ``beta`` (no exploration) as PyG data.

    The same molecules, rewards and order as :func:`~lgfn_graph.sample_molecules` with the same
    arguments. Returns one :class:`SampleData` per molecule: ``x [N, 71]``, ``edge_index [2, E]``,
    ``edge_attr [E, 4]``, ``y [1]`` (reward), ``beta [1]``, ``smiles``; with
    ``fragment_graph=True`` (a :class:`~lgfn_graph.FragmentEnv` only) also the terminal state's
    fragment tree ``frag_x [K, F + S]``, ``frag_edge_index [2, 2 * (K - 1)]``,
    ``frag_edge_attr [2 * (K - 1), 2 * S]``. ``on_error`` as in :func:`rows_to_data`; the index
    named is the sample's, from 0.
    """
    _check_on_error(on_error)
    if fragment_graph and not env.has_fragment_graph:
        raise ValueError(f"fragment_graph=True needs a FragmentEnv, got {type(env).__name__} (whose states are "
                         "atom graphs already)")
    out, skipped, start = [], [], 0
    for states, r, smiles in sample_batches(gfn, env, reward, beta, n, batch_size, seed):
        for j, (s, x) in enumerate(zip(smiles, r.tolist())):
            d = _append(out, skipped, on_error, start + j, s, x, beta)
            if d is not None and fragment_graph:
                f = env.to_data(states, j)
                d.frag_x, d.frag_edge_index, d.frag_edge_attr = f.x, f.edge_index, f.edge_attr
        start += len(smiles)
    _warn_skipped(skipped)
    return out


class SampleDataset(InMemoryDataset):
    """Sampled molecules (:class:`SampleData`, shapes there) as a PyG ``InMemoryDataset``.

    ``SampleDataset(data_list)`` holds a list (an empty one is an error: PyG would count it as
    one graph); ``SampleDataset.save(data_list, path)`` writes one atomically and
    ``SampleDataset.from_file(path)`` reads it back with PyTorch's restricted unpickler
    (``weights_only=True``): tensors, strings and numbers only, so a crafted file cannot run
    code. (PyG's own ``load`` retries a refused file with the full unpickler; this one refuses.)

    Args:
        data_list: the samples, or ``None`` for a dataset :meth:`load` fills.
        transform: applied to each sample on access, as in PyG.
    """

    def __init__(self, data_list: Sequence[Data] | None = None, transform: Callable | None = None):
        super().__init__(None, transform)
        if data_list is not None:
            if len(data_list) == 0:
                raise ValueError("SampleDataset needs at least one sample")
            self.data, self.slices = self.collate(list(data_list))

    @classmethod
    def save(cls, data_list: Sequence[Data], path: str | Path) -> None:
        """Write ``data_list`` (at least one sample) to ``path`` atomically."""
        if len(data_list) == 0:
            raise ValueError(f"no samples to save to {path}")
        data, slices = cls.collate(list(data_list))
        with atomic_write(path, "wb") as f:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "data": data.to_dict(),
                        "slices": slices}, f)

    def load(self, path: str | Path, data_cls: type[Data] = SampleData) -> None:
        """Replace this dataset's samples with those :meth:`save` wrote to ``path``.

        Raises ``ValueError`` naming ``path`` for a file that is not one, is corrupted, or holds
        objects other than tensors and plain data (refused before any is built).
        """
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except READ_ERRORS as e:
            reason = unpickler_refusal(str(e)) if isinstance(e, pickle.UnpicklingError) else None
            if reason is not None:
                raise ValueError(f"{path}: refusing to load a sample file holding Python objects other than "
                                 f"tensors and plain data, as unpickling them could run code ({reason})") from None
            raise ValueError(f"{path}: not a sample file, or a corrupted one ({type(e).__name__}: {e})") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError(f"{path}: not a sample file written by SampleDataset.save")
        if saved.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: sample file format version {saved.get('format_version')} is not supported "
                             f"(expects {FORMAT_VERSION})")
        self.data, self.slices = data_cls.from_dict(saved["data"]), saved["slices"]
        self._data_list = None  # PyG's cache of separated samples, from the data replaced

    @classmethod
    def from_file(cls, path: str | Path, transform: Callable | None = None) -> "SampleDataset":
        """The dataset :meth:`save` wrote to ``path`` (see :meth:`load`)."""
        ds = cls(transform=transform)
        ds.load(path)
        return ds


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _append(out: list, skipped: list, on_error: str, index: int, smiles: str, reward: float,
            beta: float) -> SampleData | None:
    """Append the sample's :class:`SampleData` to ``out`` and return it; a molecule that cannot
    be featurised raises, naming ``index`` and ``smiles``, or (``on_error="skip"``) is recorded
    in ``skipped``."""
    try:
        d = smiles_to_data(smiles, reward, beta)
    except FeaturizeError as e:
        if on_error == "raise":
            raise FeaturizeError(f"sample {index} ({smiles!r}) cannot be featurised: {e}") from None
        skipped.append(f"{index} ({smiles!r})")
        return None
    out.append(d)
    return d


def _warn_skipped(skipped: list[str]) -> None:
    if skipped:
        warnings.warn(f"skipped {len(skipped)} molecule(s) that cannot be featurised: sample "
                      f"{', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''}", stacklevel=3)


__all__ = ["SampleData", "SampleDataset", "rows_to_data", "sample_pyg", "smiles_to_data"]
