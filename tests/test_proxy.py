"""FingerprintProxy: cross-validated fit on ChEMBL sEH data, save/load, and use as a reward."""
import gzip
import pickle
from functools import lru_cache

import numpy as np
import pytest
import torch
from rdkit import Chem
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge

from lgfn_graph.datasets import read_molecule_csv
from lgfn_graph.proxy import FingerprintProxy, ProxyError
from lgfn_graph.rewards import score_molecules
from lgfn_graph.safe_pickle import dump_gz, load_gz

SMILES = ["CCO", "CCCO", "CCCCO", "c1ccccc1", "c1ccccc1O", "c1ccccc1N", "CC(=O)O", "CCN"]


@lru_cache(maxsize=1)
def _fitted(path):
    data = read_molecule_csv(path, "Smiles", "pChEMBL Value", on_error="skip")
    rf = RandomForestRegressor(n_estimators=20, max_features="sqrt", n_jobs=2)
    return data, FingerprintProxy(rf).fit(data, cv=5, seed=0)


@pytest.fixture
def chembl(shared_data):
    """(dataset, proxy fitted on it); shared by the tests of this file, which must not change it."""
    return _fitted(shared_data / "seh_chembl" / "seh_chembl.csv")


def test_cross_validated_fit_on_chembl(chembl):
    data, proxy = chembl
    cv = proxy.cv_report
    assert (cv.n, cv.folds, cv.seed) == (1812, 5, 0)
    # Measured (sklearn 1.9.1, RDKit 2026.09.1): RMSE 0.794, R^2 0.640, Spearman 0.805.
    assert cv.r2 > 0.55 and cv.spearman > 0.7 and 0.5 < cv.rmse < 1.0
    assert "5-fold CV on 1812 molecules" in str(cv)
    pred = proxy.predict(data.mols()[:200])
    assert pred.shape == (200,) and pred.dtype == torch.float32
    assert float((pred.numpy() - data.values[:200]).__abs__().mean()) < 0.5  # in-sample fit


def test_save_load_round_trip(chembl, tmp_path):
    data, proxy = chembl
    path = tmp_path / "proxy.pkl.gz"
    proxy.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["proxy.pkl.gz"]  # no temporary file left
    loaded = FingerprintProxy.load(path)
    mols = data.mols()[:100]
    assert torch.equal(loaded.predict(mols), proxy.predict(mols))
    assert loaded.cv_report == proxy.cv_report and (loaded.radius, loaded.n_bits) == (2, 2048)


def test_usable_as_a_reward(chembl):
    _, proxy = chembl
    mols = [Chem.MolFromSmiles(s) for s in SMILES[:3]] + [None]
    res = score_molecules(proxy, mols, on_error="floor")
    assert res.invalid.tolist() == [False, False, False, True]
    torch.testing.assert_close(res.log_reward[:3], proxy(mols[:3]).log())
    assert torch.equal(proxy(SMILES[:3]), proxy(mols[:3]))  # SMILES strings work too


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pkl.gz"):
        FingerprintProxy.load(tmp_path / "missing.pkl.gz")
    corrupt = tmp_path / "corrupt.pkl.gz"
    corrupt.write_bytes(b"not a pickle \x00\x01")
    with pytest.raises(ProxyError, match="corrupt.pkl.gz is not a readable FingerprintProxy file"):
        FingerprintProxy.load(corrupt)
    proxy = FingerprintProxy(Ridge()).fit(SMILES, np.arange(8.0), cv=None)
    proxy.save(tmp_path / "good.pkl.gz")
    truncated = tmp_path / "truncated.pkl.gz"
    truncated.write_bytes((tmp_path / "good.pkl.gz").read_bytes()[:40])
    with pytest.raises(ProxyError, match="truncated.pkl.gz is not a readable"):
        FingerprintProxy.load(truncated)
    with open(tmp_path / "foreign.pkl.gz", "wb") as f:
        dump_gz({"weights": [1, 2]}, f)
    with pytest.raises(ProxyError, match="foreign.pkl.gz is not a FingerprintProxy file: it holds a dict"):
        FingerprintProxy.load(tmp_path / "foreign.pkl.gz")


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_load_refuses_a_file_that_would_run_code(tmp_path):
    """A proxy file whose unpickling would create a file is refused, naming the culprit,
    and the file is never created; a plain unpickler would have created it."""
    marker = tmp_path / "pwned"
    proxy = FingerprintProxy(Ridge()).fit(SMILES, np.arange(8.0), cv=None)
    proxy.save(tmp_path / "good.pkl.gz")
    payload = load_gz((tmp_path / "good.pkl.gz").read_bytes())
    payload["transform"] = _CreatesFile(marker)
    with open(tmp_path / "evil.pkl.gz", "wb") as f:
        dump_gz(payload, f)
    with pytest.raises(ProxyError, match=r"evil.pkl.gz: refusing to build io.open"):
        FingerprintProxy.load(tmp_path / "evil.pkl.gz")
    assert not marker.exists()
    pickle.loads(gzip.decompress((tmp_path / "evil.pkl.gz").read_bytes()))
    assert marker.exists()


def test_any_estimator_transform_and_misuse():
    values = -np.arange(8.0)  # negative scores: a reward needs a transform
    proxy = FingerprintProxy(Ridge(alpha=1.0), radius=1, n_bits=256, transform="relu")
    with pytest.raises(ProxyError, match="not fitted"):
        proxy.predict(SMILES)
    proxy.fit(SMILES, values, cv=4)
    assert proxy.cv_report.n == 8 and proxy.cv_report.folds == 4
    assert float(proxy.predict(SMILES).max()) < 0 and bool((proxy(SMILES) == 0).all())
    assert proxy.predict([]).shape == (0,)
    with pytest.raises(ValueError, match=r"transform must be None or one of \['exp', 'relu', 'softplus'\]"):
        FingerprintProxy(transform="abs")
    with pytest.raises(TypeError, match="instance"):
        FingerprintProxy(RandomForestRegressor)
    with pytest.raises(ProxyError, match="molecule 1 is not a molecule: 'C1CC'"):
        proxy.predict(["CCO", "C1CC"])
    with pytest.raises(ProxyError, match="8 finite values"):
        proxy.fit(SMILES, [1.0] * 7 + [np.nan])
    with pytest.raises(ValueError, match="cv must be between 2 and"):
        proxy.fit(SMILES, values, cv=9)
