"""Random text and mutated real SMILES into every entry point that reads SMILES.

The property, everywhere: a valid result, or the entry point's documented error type whose
message names the offending input; never another exception type, a crash or a hang. Inputs are
hypothesis ``st.text()`` and real SMILES with random insertions, deletions and replacements
(which mostly stay close to valid, so they reach the chemistry, not just the parser).
"""
import csv
import json
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rdkit import Chem, RDLogger
from sklearn.ensemble import RandomForestRegressor

import lgfn_graph as L
from lgfn_graph import seh_proxy
from lgfn_graph.proxy import FingerprintProxy, ProxyError

RDLogger.DisableLog("rdApp.*")  # thousands of parse errors are expected here

SEEDS = ["CC(=O)Oc1ccccc1C(=O)O", "c1ccc2[nH]ccc2c1", "C1CCNCC1", "O=C(O)[C@@H](N)Cc1ccccc1",
         "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "FC(F)(F)c1ccc(Br)cc1", "[NH4+].[Cl-]", "C/C=C/C#N"]
SMILES_CHARS = "CNOSPFIBrcnosp()[]=#-+@/\\%.*0123456789H: "


@st.composite
def mutated_smiles(draw) -> str:
    """A real SMILES after one to four random character insertions, deletions or replacements."""
    s = draw(st.sampled_from(SEEDS))
    # lone surrogates are left out, as st.text() leaves them out: no file or decoded text holds one
    char = st.one_of(st.sampled_from(SMILES_CHARS), st.characters(exclude_categories=["Cs"]))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(s)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        if edit == "insert" or not s:
            s = s[:i] + draw(char) + s[i:]
        elif edit == "delete":
            s = s[:i] + s[i + 1:]
        else:
            s = s[:i] + draw(char) + s[i + 1:]
    return s


SMILES = st.one_of(st.text(max_size=30), mutated_smiles())


def fuzz(max_examples: int) -> settings:
    # derandomized, so the suite is reproducible; set derandomize=False locally to explore more
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def parse(text: str, sanitize: bool):
    """The molecule RDKit reads from ``text`` (``None`` if it cannot), sanitized or not."""
    return Chem.MolFromSmiles(text, sanitize=sanitize)


GOOD = Chem.MolFromSmiles("CCO")


# -- rewards ------------------------------------------------------------------------------------
def _strict(smiles: list[str]) -> list[float]:
    """A user's SMILES function that raises on what it cannot read back."""
    out = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s)
        if mol is None or mol.GetNumAtoms() == 0:
            raise ValueError(f"cannot score {s!r}")
        out.append(mol.GetNumAtoms() / 10)
    return out


REWARDS = {"smiles_len": L.SmilesReward(lambda smiles: [len(s) / 50 for s in smiles]),
           "smiles_strict": L.SmilesReward(_strict), "qed": L.QED(), "qed_sa": L.qed_sa()}


@fuzz(150)
@given(text=SMILES, sanitize=st.booleans(), reward=st.sampled_from(sorted(REWARDS)),
       on_error=st.sampled_from(["raise", "floor"]))
def test_score_molecules_names_the_bad_molecule(text, sanitize, reward, on_error):
    mols = [GOOD, parse(text, sanitize), GOOD]
    try:
        res = L.score_molecules(REWARDS[reward], mols, 1e-8, on_error)
    except L.RewardError as e:
        assert on_error == "raise" and "molecule 1" in str(e), str(e)
        return
    assert res.log_reward.shape == (3,) and torch.isfinite(res.log_reward).all()
    assert res.invalid.tolist()[::2] == [False, False]
    if res.invalid[1]:
        assert on_error == "floor" and len(res.messages) == 1 and "molecule 1" in res.messages[0]


# -- datasets -----------------------------------------------------------------------------------
def _write_table(path, smiles: list[str], quoted: bool) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        if quoted:
            w = csv.writer(f)
            w.writerow(["smiles", "value"])
            w.writerows([s, f"{i}.5"] for i, s in enumerate(smiles))
        else:  # the text as it is: quotes, commas and newlines in it break the table's shape
            f.write("smiles,value\n" + "".join(f"{s},{i}.5\n" for i, s in enumerate(smiles)))


def _readable(text: str) -> bool:
    s = text.strip()
    # RDKit reads a SMILES with whitespace inside only up to it: the table refuses it
    return bool(s) and not any(c.isspace() for c in s) and Chem.MolFromSmiles(s) is not None


@fuzz(100)
@given(smiles=st.lists(SMILES, min_size=1, max_size=5), on_error=st.sampled_from(["raise", "skip"]))
def test_read_molecule_csv_names_the_line(tmp_path, smiles, on_error):
    path = tmp_path / "table.csv"
    _write_table(path, smiles, quoted=True)
    bad = [s for s in smiles if not _readable(s)]
    try:
        data = L.read_molecule_csv(path, sep=",", on_error=on_error)
    except L.DatasetError as e:
        assert re.search(r":\d+: ", str(e)) or "no usable rows" in str(e), str(e)
        assert bad, f"rejected a table of readable SMILES: {e}"
        first = bad[0].strip()
        if on_error == "raise":
            named = repr(first) if first else "empty SMILES field"
            assert named in str(e), str(e)
        else:
            assert len(bad) == len(smiles), str(e)
        return
    assert on_error == "skip" or not bad
    problems = [r for r in data.report if r.problem != "duplicate"]
    assert len(problems) == len(bad) and len(data) + len(data.report) == len(smiles)
    assert all(r.line >= 2 for r in data.report)


@fuzz(100)
@given(smiles=st.lists(SMILES, min_size=1, max_size=5), on_error=st.sampled_from(["raise", "skip"]),
       sniff=st.booleans())
def test_read_molecule_csv_of_raw_text(tmp_path, smiles, on_error, sniff):
    path = tmp_path / "raw.csv"
    _write_table(path, smiles, quoted=False)
    try:
        data = L.read_molecule_csv(path, sep=None if sniff else ",", on_error=on_error)
    except L.DatasetError as e:
        assert str(path) in str(e), str(e)
        return
    assert len(data) == len(data.values) == len(data.lines) > 0
    assert all(Chem.MolFromSmiles(s) is not None for s in data.smiles)


# -- the fingerprint proxy ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def proxy() -> FingerprintProxy:
    est = RandomForestRegressor(n_estimators=4, n_jobs=1, random_state=0)
    return FingerprintProxy(est).fit(["CCO", "c1ccccc1", "CC(=O)O", "C1CCNCC1"], [1.0, 2.0, 3.0, 4.0], cv=None)


@fuzz(80)
@given(text=SMILES)
def test_fingerprint_proxy_predicts_or_names_the_smiles(proxy, text):
    try:
        pred = proxy.predict(["CCO", text])
    except ProxyError as e:
        assert "molecule 1" in str(e) and repr(text) in str(e), str(e)
        mol = Chem.MolFromSmiles(text)
        assert mol is None or mol.GetNumAtoms() == 0
        return
    assert pred.shape == (2,) and torch.isfinite(pred).all()


@st.composite
def training_smiles(draw) -> list[str]:
    """Two to four real SMILES, none to all of them replaced by fuzzed text (so that some fits succeed)."""
    texts = draw(st.lists(st.sampled_from(SEEDS), min_size=2, max_size=4))
    for i in draw(st.lists(st.integers(0, len(texts) - 1), max_size=len(texts))):
        texts[i] = draw(SMILES)
    return texts


@fuzz(30)
@given(texts=training_smiles())
@example(texts=SEEDS[:3])  # a fit that succeeds, whatever the draws
def test_fingerprint_proxy_fit_or_names_the_smiles(texts):
    bad = [i for i, t in enumerate(texts) if Chem.MolFromSmiles(t) is None or not Chem.MolFromSmiles(t).GetNumAtoms()]
    values = [float(i) for i in range(len(texts))]
    est = RandomForestRegressor(n_estimators=2, n_jobs=1, random_state=0)
    try:
        proxy = FingerprintProxy(est).fit(texts, values, cv=2)
    except ProxyError as e:
        assert bad, f"fit rejected readable SMILES {texts}: {e}"
        assert f"molecule {bad[0]}" in str(e) and repr(texts[bad[0]]) in str(e), str(e)
        return
    assert not bad, f"fit accepted the unreadable SMILES {texts[bad[0]]!r}"
    pred = proxy.predict(texts)
    # a forest predicts averages of training values: finite and within their range
    assert pred.shape == (len(texts),) and bool(torch.isfinite(pred).all())
    assert bool((pred >= 0).all() and (pred <= len(texts) - 1).all()), pred
    rep = proxy.cv_report
    assert (rep.n, rep.folds, rep.seed) == (len(texts), 2, 0)
    # out-of-fold predictions are training values too: every error is at most their range
    assert 0 <= rep.rmse <= len(texts) - 1, rep
    assert rep.r2 <= 1, rep  # the values 0, 1, ... are never constant: R^2 is a number
    assert math.isnan(rep.spearman) or -1 <= rep.spearman <= 1, rep


# -- the sEH proxy: featurising needs no weights ------------------------------------------------
@pytest.fixture(scope="module")
def seh_model() -> seh_proxy.SEHProxy:
    torch.manual_seed(0)
    return seh_proxy.SEHProxy(hidden=8, num_steps=2).eval()


@fuzz(80)
@given(text=SMILES, sanitize=st.booleans())
def test_seh_proxy_scores_or_names_the_molecule(seh_model, text, sanitize):
    mol = parse(text, sanitize)
    try:
        raw = seh_model.score([GOOD, mol])
    except seh_proxy.FeaturizeError as e:
        assert "molecule 1" in str(e), str(e)
        with pytest.raises(seh_proxy.FeaturizeError):
            seh_proxy.mol_to_graph(mol)
    else:
        assert raw.shape == (2,) and torch.isfinite(raw).all()
    floored = L.SEHReward(proxy=seh_model, invalid_reward=0.0)([GOOD, mol])
    assert floored.shape == (2,) and torch.isfinite(floored).all()


# -- fragment libraries -------------------------------------------------------------------------
@fuzz(100)
@given(text=st.one_of(st.sampled_from(SEEDS), SMILES), atoms=st.lists(st.integers(-1, 8), max_size=3))
@example(text="C1CCNCC1", atoms=[0, 3])  # a library that both readers accept, whatever the draws
def test_fragment_library_accepts_or_names_the_fragment(tmp_path, text, atoms):
    pairs = [("c1ccccc1", [0]), (text, atoms)]
    try:
        lib = L.FragmentLibrary.from_pairs(pairs)
    except L.FragmentLibraryError as e:
        assert f"fragment 1 ({text!r})" in str(e), str(e)
        lib = None
    else:
        assert lib.num_fragments == 2 and lib.num_library_stems == 1 + len(atoms)
    path = tmp_path / "library.json"
    path.write_text(json.dumps([{"smiles": s, "attachment_atoms": a} for s, a in pairs]))
    try:
        read = L.FragmentLibrary.from_json(path)
    except L.FragmentLibraryError as e:
        assert str(path) in str(e) and "fragment 1" in str(e), str(e)
        assert lib is None, f"from_json refused what from_pairs accepted: {e}"
    else:  # the file holds the same library
        assert lib is not None, "from_json accepted what from_pairs refused"
        assert read.fragments == lib.fragments


# -- metrics (skipped where the module is absent) -----------------------------------------------
@pytest.fixture(scope="module")
def metrics():
    return pytest.importorskip("lgfn_graph.metrics")


@fuzz(100)
@given(texts=st.lists(SMILES, min_size=1, max_size=3))
def test_metrics_read_smiles_or_name_them(metrics, texts):
    smiles = ["CCO", "c1ccccc1", *texts]
    rewards = [1.0] * len(smiles)
    bad = [i for i, s in enumerate(smiles) if Chem.MolFromSmiles(s) is None]
    calls = {
        "canonical_smiles": lambda: metrics.canonical_smiles(smiles),
        "morgan_fingerprints": lambda: metrics.morgan_fingerprints(smiles),
        "mean_pairwise_similarity": lambda: metrics.mean_pairwise_similarity(smiles),
        "top_k_reward": lambda: metrics.top_k_reward(smiles, rewards, k=2),
        "top_k_diversity": lambda: metrics.top_k_diversity(smiles, rewards, k=2),
        "ModeTracker.update": lambda: metrics.ModeTracker(0.5).update(smiles, rewards, len(smiles)),
        "temperature_response": lambda: metrics.temperature_response(
            [{"beta": 1.0, "smiles": s, "reward": r} for s, r in zip(smiles, rewards)], k=2),
    }
    for name, call in calls.items():
        try:
            out = call()
        except ValueError as e:
            assert bad, f"{name} rejected readable SMILES {smiles}: {e}"
            assert f"index {bad[0]}" in str(e) and repr(smiles[bad[0]]) in str(e), f"{name}: {e}"
        else:
            assert not bad, f"{name} accepted the unreadable SMILES {smiles[bad[0]]!r}"
            if isinstance(out, float):
                assert out == out, f"{name} returned NaN for {smiles}"


# -- cases the fuzzing found -------------------------------------------------------------------
# RDKit's DetectChemistryProblems raises RuntimeError (a failed pre-condition) instead of
# reporting a problem for an unsanitized atom with 128 or more explicit hydrogens.
@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_read_molecule_csv_of_an_atom_with_128_hydrogens(tmp_path, on_error):
    path = tmp_path / "table.csv"
    path.write_text("smiles,value\nCCO,1\n[CH128],2\n")
    if on_error == "raise":
        with pytest.raises(L.DatasetError, match=r":3: unparsable SMILES: '\[CH128\]'"):
            L.read_molecule_csv(path, on_error=on_error)
    else:
        data = L.read_molecule_csv(path, on_error=on_error)
        assert data.smiles == ["CCO"] and [r.line for r in data.report] == [3]


@pytest.mark.parametrize("on_error", ["raise", "floor"])
def test_score_molecules_of_an_atom_with_128_hydrogens(on_error):
    mols = [GOOD, Chem.MolFromSmiles("C[CH128]", sanitize=False)]
    if on_error == "raise":
        with pytest.raises(L.RewardError, match="molecule 1"):
            L.score_molecules(L.QED(), mols, on_error=on_error)
    else:
        assert L.score_molecules(L.QED(), mols, on_error=on_error).invalid.tolist() == [False, True]


def test_fingerprint_proxy_rejects_the_empty_smiles(proxy):
    with pytest.raises(ProxyError, match="molecule 1"):
        proxy.predict(["CCO", ""])


def test_fingerprint_proxy_of_an_unsanitized_molecule(proxy):
    with pytest.raises(ProxyError, match="molecule 1"):
        proxy.predict([GOOD, Chem.MolFromSmiles("c1ccccc1", sanitize=False)])
