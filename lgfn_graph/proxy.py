"""A proxy reward: a scikit-learn regressor on Morgan fingerprints, fitted to a user's scores.

Measure a proxy's cross-validated accuracy on a CSV (and save it) from the command line
(``--kind gnn`` fits a :class:`~lgfn_graph.gnn_proxy.GNNProxy` instead; see :mod:`lgfn_graph.proxy_cli`)::

    lgfn proxy fit data.csv --kind fingerprint --smiles-col Smiles --value-col "pChEMBL Value" --out proxy.pkl.gz
    python -m lgfn_graph.proxy data.csv --smiles-col Smiles --value-col "pChEMBL Value" --out proxy.pkl.gz
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import sklearn
import torch
from rdkit import Chem
from sklearn.base import clone
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold, cross_val_predict
from torch import Tensor

from .datasets import MoleculeDataset
from .files import atomic_write
from .graph_reward import TRANSFORMS  # the output transforms of __call__, by name
from .metrics import morgan_generator
from .proxy_base import ProxyError, Scores, regression_scores, training_data
from .proxy_cli import add_fit_arguments, fit_proxy
from .safe_pickle import UnsafePickleError, dump_gz, load_gz
from .smiles import mol_from_smiles

_FORMAT, _VERSION = "lgfn_graph.FingerprintProxy", 2  # 2: gzip pickle read by a restricted loader


@dataclass(frozen=True)
class CVReport(Scores):
    """:class:`~lgfn_graph.proxy_base.Scores` (``rmse``, ``r2``, ``spearman``) of out-of-fold
    predictions in ``folds``-fold shuffled cross-validation
    (``KFold(folds, shuffle=True, random_state=seed)``) over ``n`` molecules."""

    n: int
    folds: int
    seed: int

    def __str__(self) -> str:
        return f"{self.folds}-fold CV on {self.n} molecules: {self.scores_text()}"


class FingerprintProxy:
    """A regressor on Morgan fingerprints, usable as a reward: ``proxy(mols) -> [B]``.

    Args:
        estimator: any scikit-learn regressor instance (cloned by :meth:`fit`; its
            ``random_state``, if it has one left at ``None``, is set to ``fit``'s seed). Default
            ``RandomForestRegressor(n_estimators=200, max_features="sqrt", n_jobs=-1)``.
        radius, n_bits: of the Morgan (ECFP-like) bit fingerprint, RDKit's ``MorganGenerator``.
        transform: ``None`` or a name in :data:`TRANSFORMS` (``"relu"``, ``"softplus"``,
            ``"exp"``), applied by ``__call__`` (not :meth:`predict`) so that a proxy of a
            score that can be negative is a valid, non-negative reward. A proxy of pChEMBL
            (about 3 to 11) is positive as it is.

    Shapes: ``predict`` and ``__call__``: ``B`` molecules (RDKit or SMILES) ``-> [B]`` float32.

    :meth:`save` writes a gzip-compressed pickle; :meth:`load` reads it with a restricted
    unpickler (:mod:`lgfn_graph.safe_pickle`) that builds only scikit-learn estimators, numpy
    arrays and plain data, so a crafted file cannot run code.
    """

    def __init__(self, estimator=None, radius: int = 2, n_bits: int = 2048, transform: str | None = None):
        if estimator is None:
            estimator = RandomForestRegressor(n_estimators=200, max_features="sqrt", n_jobs=-1)
        if isinstance(estimator, type) or not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
            raise TypeError(f"estimator must be a scikit-learn regressor instance (e.g. "
                            f"RandomForestRegressor()), got {estimator!r}")
        if transform is not None and transform not in TRANSFORMS:
            raise ValueError(f"transform must be None or one of {sorted(TRANSFORMS)}, got {transform!r}")
        self.estimator, self.radius, self.n_bits, self.transform = estimator, radius, n_bits, transform
        self.model = None
        self.cv_report: CVReport | None = None

    def featurize(self, mols: Sequence[Chem.Mol | str]) -> np.ndarray:
        """Fingerprints ``[B, n_bits]`` uint8 of molecules or SMILES strings."""
        gen = morgan_generator(self.radius, self.n_bits)
        out = np.zeros((len(mols), self.n_bits), dtype=np.uint8)
        for i, m in enumerate(mols):
            mol = mol_from_smiles(m) if isinstance(m, str) else m
            if mol is None or mol.GetNumAtoms() == 0:
                raise ProxyError(f"molecule {i} is not a molecule: {m!r}")
            try:
                out[i] = gen.GetFingerprintAsNumPy(mol)
            except RuntimeError as e:  # e.g. an unsanitized Mol (RDKit raises its own types)
                raise ProxyError(f"molecule {i} cannot be fingerprinted: {e}") from None
        return out

    def fit(self, data: MoleculeDataset | Sequence[Chem.Mol | str], values: Sequence[float] | None = None,
            cv: int | None = 5, seed: int = 0) -> "FingerprintProxy":
        """Fit on a :class:`MoleculeDataset`, or on ``N`` molecules/SMILES and ``N`` values.

        With ``cv >= 2`` first measures ``cv``-fold cross-validated RMSE, R^2 and Spearman
        into :attr:`cv_report` (``cv=None`` skips it). Returns ``self``.
        """
        data, y = training_data(data, values, "fit")
        x = self.featurize(data)
        est = clone(self.estimator)
        if est.get_params().get("random_state", 0) is None:
            est.set_params(random_state=seed)
        if cv is not None:
            if not 2 <= cv <= len(y):
                raise ValueError(f"cv must be between 2 and the number of molecules ({len(y)}), got {cv}")
            pred = cross_val_predict(est, x, y, cv=KFold(cv, shuffle=True, random_state=seed))
            self.cv_report = CVReport(*regression_scores(y, pred), len(y), cv, seed)
        self.model = est.fit(x, y)
        return self

    def predict(self, mols: Sequence[Chem.Mol | str]) -> Tensor:
        """The regressor's raw predictions, ``B`` molecules ``-> [B]`` float32."""
        if self.model is None:
            raise ProxyError("this FingerprintProxy is not fitted: call fit() or FingerprintProxy.load()")
        if len(mols) == 0:
            return torch.zeros(0)
        return torch.as_tensor(self.model.predict(self.featurize(mols)), dtype=torch.float32)

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        """The reward: :meth:`predict` passed through ``transform``, ``[B]``."""
        r = self.predict(mols)
        return r if self.transform is None else TRANSFORMS[self.transform](r)

    def save(self, path: str | Path) -> None:
        """Write the fitted proxy to ``path`` atomically (gzip-compressed pickle)."""
        if self.model is None:
            raise ProxyError(f"cannot save an unfitted FingerprintProxy to {path}: call fit() first")
        payload = {"format": _FORMAT, "version": _VERSION, "sklearn": sklearn.__version__, "model": self.model,
                   "radius": self.radius, "n_bits": self.n_bits, "transform": self.transform,
                   "cv_report": None if self.cv_report is None else asdict(self.cv_report)}
        with atomic_write(path, "wb") as f:
            dump_gz(payload, f)

    @classmethod
    def load(cls, path: str | Path) -> "FingerprintProxy":
        """Read a proxy written by :meth:`save`. Raises :class:`ProxyError` for a damaged or
        foreign file, or one that holds anything but an estimator and plain data."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"proxy file not found: {path}")
        try:
            payload = load_gz(path.read_bytes())
        except UnsafePickleError as e:
            raise ProxyError(f"{path}: {e}") from None
        except Exception as e:  # unpickling a damaged file can raise almost anything
            raise ProxyError(f"{path} is not a readable FingerprintProxy file (corrupt or truncated?): "
                             f"{type(e).__name__}: {e}") from e
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ProxyError(f"{path} is not a FingerprintProxy file: it holds a {type(payload).__name__}")
        if payload.get("version") != _VERSION:
            raise ProxyError(f"{path} is FingerprintProxy format version {payload.get('version')}; "
                             f"this lgfn_graph reads version {_VERSION}")
        proxy = cls(payload["model"], payload["radius"], payload["n_bits"], payload["transform"])
        report = payload["cv_report"]
        proxy.model, proxy.cv_report = payload["model"], None if report is None else CVReport(**report)
        return proxy


def main(argv: Sequence[str] | None = None) -> None:
    """Fit a proxy on a CSV (default: the random forest), print its score, optionally save it."""
    p = argparse.ArgumentParser(description=main.__doc__)
    add_fit_arguments(p, default_kind="fingerprint")
    fit_proxy(p.parse_args(argv))


__all__ = ["CVReport", "FingerprintProxy", "ProxyError", "TRANSFORMS"]

if __name__ == "__main__":
    main()
