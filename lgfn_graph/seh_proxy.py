"""The sEH binding proxy of Bengio et al. (2021) on current PyG, and the reward built on it.

The proxy is an MPNN (lin0, 12 weight-shared NNConv + GRU steps, Set2Set, lin3) trained to
predict docking scores against soluble epoxide hydrolase. Its published weights
(``best_params.pkl.gz``, 22 numpy arrays) are found, in order, at: the ``path`` argument; the
file named by ``$LGFN_SEH_PROXY``; the user cache (``$LGFN_CACHE`` or ``~/.cache/lgfn_graph``),
where they are downloaded on first use from :data:`WEIGHTS_URL`.

The field's reward is ``raw / 8`` clipped to ``[1e-4, 100]`` (:class:`SEHReward`).
"""
from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import urllib.request
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem
from rdkit.Chem.rdchem import BondType, HybridizationType
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import NNConv, Set2Set
from torch_geometric.utils import coalesce, scatter

from .featurize import NUM_ATOM_FEATURES, NUM_BOND_FEATURES, FeaturizeError, mol_to_graph
from .files import atomic_write
from .smiles import describe_molecule

WEIGHTS_URL = "https://raw.githubusercontent.com/GFNOrg/gflownet/master/mols/data/pretrained_proxy/best_params.pkl.gz"
"""Public address of the published weights (GFNOrg/gflownet, MIT), used to fill the cache."""
WEIGHTS_FILE = "best_params.pkl.gz"
ENV_WEIGHTS = "LGFN_SEH_PROXY"
ENV_CACHE = "LGFN_CACHE"

NUM_WEIGHTS = 22
RAW_SCALE, REWARD_MIN, REWARD_MAX = 8.0, 1e-4, 100.0

# index of each parameter in the published list; 12-15 (per-stem and per-bond heads) are unused
_WEIGHT_INDEX = {
    "lin0.weight": 0, "lin0.bias": 1, "conv.lin.weight": 2, "conv.bias": 3,
    "conv.nn.0.weight": 4, "conv.nn.0.bias": 5, "conv.nn.2.weight": 6, "conv.nn.2.bias": 7,
    "gru.weight_ih_l0": 8, "gru.weight_hh_l0": 9, "gru.bias_ih_l0": 10, "gru.bias_hh_l0": 11,
    "set2set.lstm.weight_ih_l0": 16, "set2set.lstm.weight_hh_l0": 17,
    "set2set.lstm.bias_ih_l0": 18, "set2set.lstm.bias_hh_l0": 19, "lin3.weight": 20, "lin3.bias": 21,
}


class SEHProxyError(FeaturizeError):
    """A weight file or a molecule the proxy cannot use."""


class WeightsUnavailableError(OSError):
    """The proxy weights are neither at a given path nor in the cache, and cannot be downloaded."""


# -- the network ---------------------------------------------------------------------------------
def edge_types(edge_attr: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``edge_attr [E, F]`` in lexicographic order, ``[U, F]``, and the
    row of each edge, ``[E]``: what ``torch.unique(edge_attr, dim=0, return_inverse=True)``
    gives, without its row-by-row comparisons on the CPU (76 % of a proxy call).

    Each column's values are ranked and the ranks read as digits of one integer key per edge
    (first column most significant), so keys sort as the rows do. Raises ``OverflowError`` if
    the columns have too many distinct values for a 63-bit key.
    """
    key = torch.zeros(edge_attr.size(0), dtype=torch.long, device=edge_attr.device)
    room = 1
    for column in edge_attr.unbind(1):
        values, rank = torch.unique(column, return_inverse=True)
        room *= values.numel()
        if room >= 2 ** 62:
            raise OverflowError("edge features with too many distinct values for an integer key")
        key = key * values.numel() + rank
    keys, kind = torch.unique(key, return_inverse=True)
    types = edge_attr.new_empty(keys.numel(), edge_attr.size(1))
    types[kind] = edge_attr  # every edge of a type has the same row
    return types, kind


class _FewEdgeTypesNNConv(NNConv):
    """PyG's NNConv (same parameters, same output) for edge features with few distinct rows.

    NNConv runs its edge network on every edge and multiplies by an ``[E, C_in, C_out]`` weight.
    The proxy's edge features take at most 5 values, so this runs the network once per distinct
    row and multiplies each node by each of those weights: ``[N, U, C_out]``, then gathers.
    With more than ``max_types`` distinct rows it falls back to NNConv's own forward.
    :meth:`edge_weights` does the per-graph part once for the proxy's 12 message-passing steps.
    """

    max_types = 16

    def edge_weights(self, edge_attr: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(weight [U, C_in, C_out], kind [E])`` for :meth:`forward`'s ``weights``, or ``None``
        when ``edge_attr [E, F]`` has more than ``max_types`` distinct rows."""
        try:
            types, kind = edge_types(edge_attr)
        except OverflowError:
            return None
        if types.size(0) > self.max_types:
            return None
        return self.nn(types).view(-1, self.in_channels_l, self.out_channels), kind

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor,
                weights: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``x [N, C_in]``, ``edge_index [2, E]``, ``edge_attr [E, F]`` -> ``[N, C_out]``;
        ``weights``: :meth:`edge_weights` of ``edge_attr``, if already computed."""
        if weights is None:
            weights = self.edge_weights(edge_attr)
            if weights is None:
                return super().forward(x, edge_index, edge_attr)
        weight, kind = weights
        per_type = torch.einsum("nc,uco->nuo", x, weight)  # [N, U, C_out]
        message = per_type[edge_index[0], kind]  # [E, C_out], from source to target
        out = scatter(message, edge_index[1], 0, dim_size=x.size(0), reduce=self.aggr)
        return out + self.lin(x) + self.bias


class SEHProxy(nn.Module):
    """The sEH proxy MPNN; build it with :func:`load_seh_proxy` to get the published weights.

    ``lin0`` + LeakyReLU, then ``num_steps`` times (shared weights) ``m = LeakyReLU(NNConv)``
    and one GRU step; ``Set2Set(64, 3)``; ``lin3``.

    Shapes: ``forward(batch)``: graphs from :func:`mol_to_graph` -> raw output ``[B]``.
    """

    def __init__(self, hidden: int = 64, num_steps: int = 12):
        super().__init__()
        self.num_steps = num_steps
        self.lin0 = nn.Linear(NUM_ATOM_FEATURES, hidden)
        edge_net = nn.Sequential(nn.Linear(NUM_BOND_FEATURES, 128), nn.LeakyReLU(), nn.Linear(128, hidden * hidden))
        self.conv = _FewEdgeTypesNNConv(hidden, hidden, edge_net, aggr="mean")
        self.gru = nn.GRU(hidden, hidden)
        self.set2set = Set2Set(hidden, processing_steps=3)
        self.lin3 = nn.Linear(2 * hidden, 1)

    def forward(self, data: Batch) -> Tensor:
        out = F.leaky_relu(self.lin0(data.x))  # [N, H]
        h = out.unsqueeze(0)  # [1, N, H]
        weights = self.conv.edge_weights(data.edge_attr)  # the same at every step
        for _ in range(self.num_steps):
            m = F.leaky_relu(self.conv(out, data.edge_index, data.edge_attr, weights))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        graph = self.set2set(out, data.batch, dim_size=data.num_graphs)  # [B, 2H]
        return self.lin3(graph).squeeze(-1)

    @torch.no_grad()
    def score_graphs(self, graphs: Sequence[Data], batch_size: int = 256) -> Tensor:
        """Raw outputs of graphs from :func:`mol_to_graph`, ``[B]`` float32 on the CPU."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = self.lin0.weight.device
        out = [self(Batch.from_data_list(graphs[i:i + batch_size]).to(device)).float().cpu()
               for i in range(0, len(graphs), batch_size)]
        return torch.cat(out) if out else torch.zeros(0)

    def score(self, mols: Sequence[Chem.Mol], batch_size: int = 256) -> Tensor:
        """Raw outputs of RDKit molecules, ``[B]`` float32 on the CPU.

        Raises :class:`SEHProxyError` naming the index and SMILES of the first molecule that
        cannot be featurised (see :func:`mol_to_graph`).
        """
        graphs = []
        for i, mol in enumerate(mols):
            try:
                graphs.append(mol_to_graph(mol))
            except FeaturizeError as e:
                raise SEHProxyError(f"sEH proxy: molecule {i} ({describe_molecule(mol)}): {e}") from None
        return self.score_graphs(graphs, batch_size)


# -- weights -------------------------------------------------------------------------------------
_RECONSTRUCT = np.array(0).__reduce__()[0]  # numpy's array rebuilders, whatever module holds them
_FROMBUFFER = np.array([0.0]).__reduce_ex__(5)[0]
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _FROMBUFFER


class _ArrayUnpickler(pickle.Unpickler):
    # a downloaded pickle could run arbitrary code, so only numpy's array rebuilders may load
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return _ALLOWED[(module, name)]


def read_weights(data: bytes, source: str = "<bytes>") -> list[np.ndarray]:
    """Parse and check the published weight list from the bytes of a (gzipped) pickle.

    Raises :class:`SEHProxyError` naming ``source`` and, for a wrong array, its index.
    """
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        weights = _ArrayUnpickler(io.BytesIO(raw)).load()
    except Exception as e:  # gzip, pickle and numpy raise several types; all mean a bad file
        raise SEHProxyError(f"{source}: not a pickle of numpy arrays ({type(e).__name__}: {e})") from None
    if not isinstance(weights, (list, tuple)) or len(weights) != NUM_WEIGHTS:
        got = f"{len(weights)} entries" if isinstance(weights, (list, tuple)) else type(weights).__name__
        raise SEHProxyError(f"{source}: expected a list of {NUM_WEIGHTS} numpy arrays, got {got}")
    with torch.device("meta"):  # shapes only, no memory
        shapes = {_WEIGHT_INDEX[name]: tuple(p.shape) for name, p in SEHProxy().named_parameters()}
    for i, w in enumerate(weights):
        if not isinstance(w, np.ndarray) or not np.issubdtype(w.dtype, np.floating):
            raise SEHProxyError(f"{source}: weight {i} is {type(w).__name__} {getattr(w, 'dtype', '')}, expected a float array")
        if i in shapes and w.shape != shapes[i]:
            raise SEHProxyError(f"{source}: weight {i} has shape {w.shape}, expected {shapes[i]}")
        if i in shapes and not np.isfinite(w).all():
            raise SEHProxyError(f"{source}: weight {i} has non-finite values")
    return list(weights)


def cache_dir() -> Path:
    """``$LGFN_CACHE``, else ``~/.cache/lgfn_graph``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "lgfn_graph")


def _how_to_supply() -> str:
    return (f"pass the path of {WEIGHTS_FILE} (load_seh_proxy(path=...), SEHReward(weights=...), "
            f"--weights), or set {ENV_WEIGHTS}=/path/to/{WEIGHTS_FILE}")


def download_weights(dest: str | Path, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download the weights to ``dest`` (default address :data:`WEIGHTS_URL`), checked, atomically."""
    url = url or WEIGHTS_URL
    dest = Path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as e:  # URLError, HTTPError and timeouts are OSErrors
        raise WeightsUnavailableError(f"cannot download the sEH proxy weights from {url} ({e}): this machine "
                                      f"may be offline or the address unreachable; {_how_to_supply()}, "
                                      f"or copy the file to {dest}") from None
    read_weights(data, url)  # a bad download never reaches the cache
    with atomic_write(dest, "wb") as f:
        f.write(data)
    return dest


def weights_path(path: str | Path | None = None, download: bool = True) -> Path:
    """Where the weights are: ``path``; else ``$LGFN_SEH_PROXY``; else the cache, filled on first use."""
    if path is None and os.environ.get(ENV_WEIGHTS):
        path, where = os.environ[ENV_WEIGHTS], f" (from ${ENV_WEIGHTS})"
    else:
        where = ""
    if path is not None:
        if not Path(path).is_file():
            raise WeightsUnavailableError(f"sEH proxy weights not found: {path}{where}")
        return Path(path)
    cached = cache_dir() / "seh_proxy" / WEIGHTS_FILE
    if not cached.is_file():
        if not download:
            raise WeightsUnavailableError(f"sEH proxy weights not in the cache ({cached}); {_how_to_supply()}")
        download_weights(cached)
    return cached


def load_seh_proxy(path: str | Path | None = None, device: str | torch.device = "cpu",
                   download: bool = True) -> SEHProxy:
    """The proxy with the published weights (located as :func:`weights_path` says), in eval mode."""
    p = weights_path(path, download)
    weights = read_weights(p.read_bytes(), str(p))
    model = SEHProxy()
    model.load_state_dict({name: torch.tensor(weights[i], dtype=torch.float32)
                           for name, i in _WEIGHT_INDEX.items()})
    return model.to(device).eval()


# -- the reward ----------------------------------------------------------------------------------
class SEHReward:
    """The sEH reward of the field: ``clip(raw / 8, 1e-4, 100)`` per molecule, ``[B]``.

    Args:
        weights: path of the weight file (default: ``$LGFN_SEH_PROXY`` or the cache).
        device: where the proxy runs; the reward is returned on the CPU.
        batch_size: molecules per forward pass.
        invalid_reward: the reward of a molecule the proxy cannot featurise (``None``, the
            default: raise :class:`SEHProxyError` naming it).
        proxy: an already loaded :class:`SEHProxy` (then ``weights`` and ``device`` are unused).
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 256, invalid_reward: float | None = None, proxy: SEHProxy | None = None):
        if invalid_reward is not None and not (math.isfinite(invalid_reward) and invalid_reward >= 0):
            raise ValueError(f"invalid_reward must be finite and >= 0 (or None), got {invalid_reward}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.proxy = proxy if proxy is not None else load_seh_proxy(weights, device)
        self.batch_size = batch_size
        self.invalid_reward = invalid_reward

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        if self.invalid_reward is None:
            return self.from_raw(self.proxy.score(mols, self.batch_size))
        graphs, valid = [], []
        for i, mol in enumerate(mols):
            try:
                graphs.append(mol_to_graph(mol))
                valid.append(i)
            except FeaturizeError:
                pass
        out = torch.full((len(mols),), float(self.invalid_reward))
        out[torch.tensor(valid, dtype=torch.long)] = self.from_raw(self.proxy.score_graphs(graphs, self.batch_size))
        return out

    @staticmethod
    def from_raw(raw: Tensor) -> Tensor:
        """The reward of raw proxy outputs: ``clip(raw / 8, 1e-4, 100)``, same shape."""
        return (raw / RAW_SCALE).clamp(REWARD_MIN, REWARD_MAX)


__all__ = ["SEHProxy", "SEHProxyError", "SEHReward", "WeightsUnavailableError", "WEIGHTS_URL", "cache_dir",
           "download_weights", "load_seh_proxy", "mol_to_graph", "read_weights", "weights_path"]
