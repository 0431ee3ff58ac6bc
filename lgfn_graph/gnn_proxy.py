"""A small PyG GNN proxy: a GINE regressor on atom graphs, fitted to a user's scores with a
held-out score, saved as a weights-only checkpoint, and usable as a reward.

Fit, score and save from the command line (see :mod:`lgfn_graph.proxy_cli`)::

    lgfn proxy fit data.csv --kind gnn --smiles-col Smiles --value-col "pChEMBL Value" --out proxy.pt
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from rdkit import Chem
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.nn import GINEConv, global_add_pool, global_mean_pool

from .checkpoint import CheckpointError, restricted_load
from .datasets import MoleculeDataset, read_molecule_csv
from .featurize import NUM_ATOM_FEATURES, NUM_BOND_FEATURES
from .files import atomic_write
from .graph_reward import TRANSFORMS, GraphModelReward, featurize_molecules
from .proxy_base import ProxyError, Scores, regression_scores, training_data
from .smiles import mol_from_smiles

_FORMAT, _VERSION = "lgfn_graph.GNNProxy", 1


@dataclass(frozen=True)
class HoldoutReport(Scores):
    """:class:`~lgfn_graph.proxy_base.Scores` (``rmse``, ``r2``, ``spearman``) on ``n_test``
    held-out molecules of a model trained on the other ``n_train`` (a shuffled split drawn from
    ``seed``) for ``epochs`` epochs."""

    n_train: int
    n_test: int
    epochs: int
    seed: int

    def __str__(self) -> str:
        return (f"held out {self.n_test} of {self.n_train + self.n_test} molecules (seed {self.seed}, "
                f"{self.epochs} epochs): {self.scores_text()}")


def _mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


class GNNProxy(nn.Module):
    """A GINE regressor (Hu et al. 2020) on :func:`~lgfn_graph.featurize.mol_to_graph` graphs.

    ``h = Linear(x)``; ``num_layers`` times ``h = h + ReLU(GINEConv(h, edge_attr))`` (a 2-layer
    MLP each); the mean and the sum of ``h`` over each graph's atoms (the mean for size-free
    properties, the sum for ones that grow with size), concatenated; a 2-layer MLP head; then
    ``y_mean + y_std * out``, the target's scale on the training data, so outputs are in the
    units of the values fitted. About 39k parameters with the defaults.

    Args:
        hidden: node width (default 64).
        num_layers: GINE layers (default 3).
        transform: ``None`` or a name in :data:`~lgfn_graph.graph_reward.TRANSFORMS`, applied
            by :meth:`as_reward` (not ``forward`` or :meth:`predict`) so that a score that can
            be negative is a valid reward.

    Shapes:
        - ``forward``: ``Batch`` of ``B`` graphs (``x [N, 71]``, ``edge_index [2, E]``,
          ``edge_attr [E, 4]``) -> ``[B]``.
        - ``predict``: ``B`` molecules -> ``[B]`` float32 on the CPU.

    Attributes:
        report: the :class:`HoldoutReport` of :func:`fit_gnn_proxy` (``None`` if not measured).
    """

    def __init__(self, hidden: int = 64, num_layers: int = 3, transform: str | None = None):
        super().__init__()
        for name, value in (("hidden", hidden), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if transform is not None and transform not in TRANSFORMS:
            raise ValueError(f"transform must be None or one of {sorted(TRANSFORMS)}, got {transform!r}")
        self.hidden, self.num_layers, self.transform = hidden, num_layers, transform
        self.report: HoldoutReport | None = None
        self.embed = nn.Linear(NUM_ATOM_FEATURES, hidden)
        self.convs = nn.ModuleList([GINEConv(_mlp(hidden), edge_dim=NUM_BOND_FEATURES) for _ in range(num_layers)])
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def forward(self, batch: Batch) -> Tensor:
        h = self.embed(batch.x)  # [N, H]
        for conv in self.convs:
            h = h + F.relu(conv(h, batch.edge_index, batch.edge_attr))
        index = getattr(batch, "batch", None)
        if index is None:  # a single Data, not a Batch
            index = torch.zeros(h.size(0), dtype=torch.long, device=h.device)
        b = int(getattr(batch, "num_graphs", 1))
        pooled = torch.cat([global_mean_pool(h, index, size=b), global_add_pool(h, index, size=b)], dim=-1)  # [B, 2H]
        return self.head(pooled).squeeze(-1) * self.y_std + self.y_mean

    def predict(self, mols: Sequence[Chem.Mol], batch_size: int = 256) -> Tensor:
        """Predicted values of ``B`` molecules, ``[B]`` float32 on the CPU (no transform)."""
        return GraphModelReward(self, batch_size=batch_size)(mols)

    def as_reward(self, batch_size: int = 256, device: str | torch.device | None = None) -> GraphModelReward:
        """This proxy as a reward, ``B`` molecules -> ``[B]``: :meth:`predict` then ``transform``.
        ``device``: where it runs (the proxy is moved there; ``None``: where it is)."""
        return GraphModelReward(self, self.transform, batch_size, device)

    def save(self, path: str | Path) -> None:
        """Write the proxy to ``path`` atomically: ``torch.save`` of a dict of tensors and plain
        values (its config, transform and report), readable with ``weights_only=True``."""
        payload = {"format": _FORMAT, "version": _VERSION, "hidden": self.hidden, "num_layers": self.num_layers,
                   "transform": self.transform, "report": None if self.report is None else asdict(self.report),
                   "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}
        with atomic_write(path, "wb") as f:
            torch.save(payload, f)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "GNNProxy":
        """Read a proxy written by :meth:`save`, in eval mode on ``device``.

        The file is read by PyTorch's weights-only unpickler, so a crafted file cannot run code.
        Raises :class:`FileNotFoundError` for a missing file and :class:`ProxyError`, naming the
        file, for one that is damaged, not a GNN proxy, or holds anything but tensors and plain data.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"GNN proxy file not found: {path}")
        try:
            payload = restricted_load(path, path, "GNN proxy file")
        except CheckpointError as e:
            raise ProxyError(str(e)) from None
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ProxyError(f"{path} is not a GNN proxy file (lgfn proxy fit --kind gnn writes them): "
                             f"it holds a {type(payload).__name__}" + (" of another format" if isinstance(payload, dict) else ""))
        if payload.get("version") != _VERSION:
            raise ProxyError(f"{path} is GNN proxy format version {payload.get('version')}; this lgfn_graph "
                             f"reads version {_VERSION}")
        try:
            proxy = _from_payload(cls, payload)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise ProxyError(f"{path}: damaged GNN proxy file ({type(e).__name__}: {first})") from None
        if not all(torch.isfinite(v).all() for v in proxy.state_dict().values() if v.is_floating_point()):
            raise ProxyError(f"{path}: damaged GNN proxy file (non-finite weights)")
        return proxy.to(device).eval()


def _from_payload(cls, payload: dict) -> GNNProxy:
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise TypeError("state_dict must map names to tensors")
    with torch.device("meta"):  # a crafted width allocates nothing before the shapes are checked
        shapes = {k: tuple(v.shape) for k, v in cls(payload["hidden"], payload["num_layers"]).state_dict().items()}
    wrong = next((k for k in shapes if k in state and tuple(state[k].shape) != shapes[k]), None)
    if wrong is not None:
        raise ValueError(f"{wrong} has shape {tuple(state[wrong].shape)}, expected {shapes[wrong]}")
    proxy = cls(payload["hidden"], payload["num_layers"], payload["transform"])
    proxy.load_state_dict(state)  # strict: a missing or extra weight raises
    report = payload.get("report")
    proxy.report = None if report is None else HoldoutReport(**report)
    return proxy


# -- fitting -------------------------------------------------------------------------------------
def _molecules(data, values, smiles_col: str, value_col: str) -> tuple[list[Chem.Mol], np.ndarray]:
    """``(N molecules, [N] float64 values)`` of a CSV path, a MoleculeDataset, or molecules/SMILES and values."""
    if isinstance(data, (str, Path)):
        data = read_molecule_csv(data, smiles_col, value_col, on_error="skip")
    data, y = training_data(data, values, "fit_gnn_proxy")
    mols = []
    for i, m in enumerate(data):
        mol = mol_from_smiles(m) if isinstance(m, str) else m
        if mol is None:
            raise ProxyError(f"molecule {i} is not a molecule: {m!r}")
        mols.append(mol)
    return mols, y


def _split(n: int, holdout: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(train indices, test indices)``: a shuffled split with ``round(holdout * n)`` held out."""
    n_test = round(holdout * n)
    if holdout > 0 and (n_test < 3 or n - n_test < 2):
        raise ProxyError(f"holdout={holdout:g} of {n} molecules leaves {n_test} to score and {n - n_test} to train; "
                         "a held-out score needs at least 3 and training at least 2 (more data, or holdout=0)")
    perm = torch.randperm(n, generator=g)
    return perm[n_test:], perm[:n_test]


def fit_gnn_proxy(data: str | Path | MoleculeDataset | Sequence[Chem.Mol | str], values: Sequence[float] | None = None,
                  *, smiles_col: str = "smiles", value_col: str = "value", holdout: float = 0.2, hidden: int = 64,
                  num_layers: int = 3, epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                  transform: str | None = None, device: str | torch.device = "cpu",
                  on_epoch: Callable[[int, float], None] | None = None) -> GNNProxy:
    """Train a :class:`GNNProxy` to predict ``values`` from molecules, and score it on held-out ones.

    A shuffled ``holdout`` fraction (drawn from ``seed``) is set aside; the proxy is trained on
    the rest (Adam, mean squared error of standardized values, ``epochs`` passes in shuffled
    batches) and its RMSE, R^2 and Spearman on the held-out molecules are kept in
    ``proxy.report`` (:class:`HoldoutReport`). The returned proxy is that model, so the report is
    its own held-out score; ``holdout=0`` trains on every molecule and measures nothing.

    Args:
        data: a CSV path (read by :func:`~lgfn_graph.datasets.read_molecule_csv` with
            ``smiles_col`` and ``value_col``, bad rows skipped), a
            :class:`~lgfn_graph.datasets.MoleculeDataset`, or ``N`` RDKit molecules or SMILES.
        values: ``N`` finite scores, only with a list of molecules.
        holdout: fraction held out, in ``[0, 1)`` (default 0.2).
        hidden, num_layers, transform: of the :class:`GNNProxy`.
        epochs, batch_size, lr: of training (defaults 100, 64, 1e-3).
        seed: the split, the initial weights and the batch order; the same seed gives the same
            proxy on the CPU (the global torch RNG is left as it was).
        device: where it trains; the proxy is returned on the CPU, in eval mode.
        on_epoch: called after each epoch with ``(epoch, mean training loss)`` (1-based epoch).

    Returns:
        the fitted :class:`GNNProxy`. Raises :class:`ProxyError` for unusable values, a split too
        small to score, or an unparsable SMILES, and
        :class:`~lgfn_graph.featurize.FeaturizeError` naming a molecule that cannot be a graph.

    Shapes: ``N`` molecules and ``[N]`` values -> a proxy mapping ``B`` molecules to ``[B]``.
    """
    if not (isinstance(holdout, (int, float)) and 0 <= holdout < 1):
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
            raise ValueError(f"{name} must be an integer >= {0 if name == 'epochs' else 1}, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be finite and > 0, got {lr!r}")
    mols, y_all = _molecules(data, values, smiles_col, value_col)
    graphs = featurize_molecules(mols, who="fit_gnn_proxy")
    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx = _split(len(graphs), holdout, g)
    y = torch.as_tensor(y_all, dtype=torch.float32)
    with torch.random.fork_rng(devices=[]):  # seeded weights, without moving the user's RNG
        torch.manual_seed(seed)
        proxy = GNNProxy(hidden, num_layers, transform)
    y_train = y[train_idx]
    proxy.y_mean.fill_(float(y_train.mean()))
    std = float(y_train.std(unbiased=False))
    proxy.y_std.fill_(std if std > 1e-8 else 1.0)  # constant values: any scale fits
    proxy.to(device).train()
    opt = torch.optim.Adam(proxy.parameters(), lr=lr)
    for epoch in range(1, epochs + 1):
        order = train_idx[torch.randperm(len(train_idx), generator=g)]
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = Batch.from_data_list([graphs[j] for j in idx]).to(device)
            loss = (((proxy(batch) - y[idx].to(device)) / proxy.y_std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / len(order))
    proxy = proxy.cpu().eval()
    if len(test_idx):
        scorer = GraphModelReward(proxy)  # the graphs are made already: score them as the reward will
        pred = torch.cat([scorer.score_batch(Batch.from_data_list([graphs[j] for j in test_idx[i:i + 256]]))
                          for i in range(0, len(test_idx), 256)])
        proxy.report = HoldoutReport(*regression_scores(y_all[test_idx.numpy()], pred.numpy()), len(train_idx),
                                     len(test_idx), epochs, seed)
    return proxy


def load_proxy_reward(path: str | Path, device: str | torch.device = "cpu", batch_size: int = 256):
    """The reward of a fitted proxy file, either kind: a :class:`GNNProxy` (``torch.save`` zip,
    via :meth:`GNNProxy.as_reward`) or a :class:`~lgfn_graph.proxy.FingerprintProxy` (gzip
    pickle, read by the restricted unpickler; it runs on the CPU). Raises :class:`ProxyError`
    naming a missing or unusable file.

    Shapes: the reward maps ``B`` molecules to ``[B]``.
    """
    path = Path(path)
    if not path.is_file():
        raise ProxyError(f"proxy file not found: {path} (write one with lgfn proxy fit)")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":  # gzip: a FingerprintProxy
        from .proxy import FingerprintProxy  # scikit-learn loads only when used
        return FingerprintProxy.load(path)
    return GNNProxy.load(path, device).as_reward(batch_size)


__all__ = ["GNNProxy", "HoldoutReport", "ProxyError", "fit_gnn_proxy", "load_proxy_reward"]
