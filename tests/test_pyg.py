"""Samples as PyG data (lgfn_graph.pyg): graphs, rewards, fragment trees, collation, files, CLI."""
import csv
import os
import re
import warnings

import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import lgfn_graph as L
from lgfn_graph.cli import main
from lgfn_graph.evaluate import sample_batches
from lgfn_graph.featurize import mol_to_graph

BETA, N, SEED = 4.0, 6, 3
KEYS = ("x", "edge_index", "edge_attr", "y", "beta", "smiles")
FRAG_KEYS = ("frag_x", "frag_edge_index", "frag_edge_attr")


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    """A tiny_frag run's checkpoint (conftest; it records its task, so `lgfn sample` needs no --task)."""
    return tiny_run / "checkpoint.pt"


@pytest.fixture(scope="module")
def model(checkpoint):
    gfn, env, state = L.load_model(checkpoint)
    return gfn, env, L.build_task(L.TaskConfig("tiny_frag"))[1]


@pytest.fixture(scope="module")
def samples(model):
    gfn, env, reward = model
    return L.sample_pyg(gfn, env, reward, BETA, N, batch_size=4, seed=SEED, fragment_graph=True)


def _same(a, b) -> bool:
    return a == b if isinstance(a, (str, list)) else a.dtype == b.dtype and torch.equal(a, b)


def test_each_sample_is_the_featurizer_graph_of_its_smiles_with_its_reward(model, samples):
    gfn, env, reward = model
    rows = L.sample_molecules(gfn, env, reward, BETA, N, batch_size=4, seed=SEED)
    assert [d.smiles for d in samples] == [r["smiles"] for r in rows]  # the same draws, in order
    mols = [Chem.MolFromSmiles(d.smiles) for d in samples]
    recomputed = reward(mols)
    for d, mol, r, row in zip(samples, mols, recomputed, rows):
        g = mol_to_graph(mol)
        assert all(_same(getattr(d, k), getattr(g, k)) for k in ("x", "edge_index", "edge_attr"))
        assert d.y.shape == d.beta.shape == (1,) and d.y.dtype == d.beta.dtype == torch.float32
        assert d.beta.item() == BETA and d.y.item() == pytest.approx(float(r), rel=1e-5)
        assert d.y.item() == pytest.approx(row["reward"], rel=1e-6)


def test_fragment_graph_is_the_terminal_state_tree(model, samples):
    gfn, env, reward = model
    states = L.FragmentStates.cat([s for s, _, _ in sample_batches(gfn, env, reward, BETA, N, 4, SEED)])
    F = env.library.num_fragments
    for i, d in enumerate(samples):
        K = int(states.n[i])
        state_graph = env.to_data(states, i)
        assert torch.equal(d.frag_x, state_graph.x) and torch.equal(d.frag_edge_index, state_graph.edge_index)
        assert torch.equal(d.frag_edge_attr, state_graph.edge_attr)
        assert d.frag_x.shape == (K, env.node_dim) and d.frag_edge_index.shape == (2, 2 * (K - 1))
        assert d.frag_edge_attr.shape == (2 * (K - 1), env.edge_dim)
        frags = d.frag_x[:, :F].argmax(1).tolist()
        assert frags == states.fragments(i)
        # the fragments' atoms are the molecule's atoms, and each bond uses two stems
        assert sum(env.library.mols[f].GetNumAtoms() for f in frags) == d.num_nodes
        assert d.frag_x[:, F:].sum().item() == 2 * (K - 1)
    plain = L.sample_pyg(gfn, env, reward, BETA, 2, seed=SEED)
    assert not any(hasattr(d, k) for d in plain for k in FRAG_KEYS)


def test_fragment_graph_needs_a_fragment_env(model):
    gfn, env, reward = model
    with pytest.raises(ValueError, match="fragment_graph=True needs a FragmentEnv, got AtomEnv"):
        L.sample_pyg(gfn, L.AtomEnv(max_atoms=3), reward, BETA, 1, fragment_graph=True)


def test_collation_round_trips_every_attribute_and_offsets_fragment_edges_by_fragments(samples):
    batch = Batch.from_data_list(samples)
    for i, d in enumerate(samples):
        back = batch.get_example(i)
        assert set(back.keys()) == set(KEYS + FRAG_KEYS)
        assert all(_same(getattr(back, k), getattr(d, k)) for k in KEYS + FRAG_KEYS), i
    frag_ptr = torch.tensor([0] + [d.frag_x.size(0) for d in samples]).cumsum(0)
    expected = torch.cat([d.frag_edge_index + frag_ptr[i] for i, d in enumerate(samples)], 1)
    assert torch.equal(batch.frag_edge_index, expected)


def test_a_dataloader_batches_samples_as_is(samples):
    loader = DataLoader(L.SampleDataset(samples), batch_size=4, follow_batch=["frag_x"])
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [4, N - 4]
    b, first = batches[0], samples[:4]
    assert torch.equal(b.y, torch.cat([d.y for d in first])) and b.y.shape == (4,)
    assert torch.equal(b.beta, torch.full((4,), BETA))
    assert b.smiles == [d.smiles for d in first]
    assert torch.equal(b.batch, torch.repeat_interleave(torch.arange(4), torch.tensor([d.num_nodes for d in first])))
    assert torch.equal(b.frag_x_batch, torch.repeat_interleave(torch.arange(4),
                                                               torch.tensor([d.frag_x.size(0) for d in first])))
    # every fragment bond joins two fragments of the same molecule
    src, dst = b.frag_edge_index
    assert torch.equal(b.frag_x_batch[src], b.frag_x_batch[dst])


@pytest.mark.parametrize("n", [N, 1])  # one sample: PyG stores no slices
def test_save_then_load_gives_the_same_samples(samples, tmp_path, n):
    path = tmp_path / "samples.pt"
    L.SampleDataset.save(samples[:n], path)
    assert isinstance(torch.load(path, weights_only=True), dict)  # readable without the full unpickler
    ds = L.SampleDataset.from_file(path)
    assert len(ds) == n
    for d, back in zip(samples, ds):
        assert isinstance(back, L.SampleData) and set(back.keys()) == set(KEYS + FRAG_KEYS)
        assert all(_same(getattr(back, k), getattr(d, k)) for k in KEYS + FRAG_KEYS)
    assert next(iter(DataLoader(ds, batch_size=n))).smiles == [d.smiles for d in samples[:n]]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_load_refuses_files_it_did_not_write(tmp_path):
    evil, marker = tmp_path / "evil.pt", tmp_path / "ran"
    torch.save({"format": "lgfn_graph.samples", "format_version": 1, "data": _RunsCode(str(marker))}, evil)
    with pytest.raises(ValueError, match="refusing to load a sample file .* could run code .*posix.mkdir"):
        L.SampleDataset.from_file(evil)
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt: not a sample file, or a corrupted one"):
        L.SampleDataset.from_file(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a sample file written by SampleDataset.save"):
        L.SampleDataset.from_file(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no samples to save"):
        L.SampleDataset.save([], tmp_path / "empty.pt")


def test_rows_from_a_csv_give_the_same_data(samples, tmp_path):
    path = tmp_path / "s.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["beta", "smiles", "reward"])
        w.writeheader()
        w.writerows({"beta": d.beta.item(), "smiles": d.smiles, "reward": repr(d.y.item())} for d in samples)
    for d, back in zip(samples, L.rows_to_data(csv.DictReader(open(path)))):
        assert all(_same(getattr(back, k), getattr(d, k)) for k in KEYS)
    with pytest.raises(ValueError, match="row 0 has no 'reward'"):
        L.rows_to_data([{"smiles": "CCO", "beta": 1}])
    with pytest.raises(ValueError, match=r"row 0 \('CCO'\): reward and beta must be numbers, got 'high'"):
        L.rows_to_data([{"smiles": "CCO", "beta": 1, "reward": "high"}])


def test_a_molecule_that_cannot_be_featurised_is_named_or_skipped(model, samples, monkeypatch):
    rows = [{"smiles": "CCO", "reward": 0.5, "beta": 1}, {"smiles": "C1CC", "reward": 0.1, "beta": 1}]
    with pytest.raises(L.FeaturizeError, match=r"sample 1 \('C1CC'\) cannot be featurised: the molecule is None"):
        L.rows_to_data(rows)
    with pytest.warns(UserWarning, match=r"skipped 1 molecule\(s\) .*: sample 1 \('C1CC'\)"):
        assert [d.smiles for d in L.rows_to_data(rows, on_error="skip")] == ["CCO"]

    # the sampling path: make the featurizer fail on the third sample drawn
    gfn, env, reward = model
    real, calls = L.pyg.mol_to_graph, []

    def failing(mol):
        calls.append(mol)
        if len(calls) == 3:
            raise L.FeaturizeError("made to fail")
        return real(mol)

    monkeypatch.setattr(L.pyg, "mol_to_graph", failing)
    message = f"sample 2 ({samples[2].smiles!r}) cannot be featurised: made to fail"
    with pytest.raises(L.FeaturizeError, match=re.escape(message)):
        L.sample_pyg(gfn, env, reward, BETA, N, batch_size=4, seed=SEED)
    calls.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = L.sample_pyg(gfn, env, reward, BETA, N, batch_size=4, seed=SEED, fragment_graph=True, on_error="skip")
    assert len(caught) == 1 and "sample 2" in str(caught[0].message)
    # the kept samples keep their own fragment trees
    expected = samples[:2] + samples[3:]
    assert all(_same(getattr(a, k), getattr(b, k)) for a, b in zip(kept, expected) for k in KEYS + FRAG_KEYS)
    assert len(kept) == N - 1


def test_lgfn_sample_format_pyg_writes_a_dataset(checkpoint, tmp_path, capsys):
    out, csv_out = tmp_path / "samples.pt", tmp_path / "samples.csv"
    base = ["sample", "--checkpoint", str(checkpoint), "--beta", "4", "--n", "5", "--seed", "2"]
    capsys.readouterr()
    assert main(base + ["--format", "pyg", "--fragment-graph", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("5 molecules at beta 4 (mean reward ")
    assert f"as PyG data with fragment graphs in {out}" in line
    ds = L.SampleDataset.from_file(out)
    assert main(base + ["--out", str(csv_out)]) == 0  # csv stays the default, with the same molecules
    rows = list(csv.DictReader(open(csv_out)))
    assert list(rows[0]) == ["beta", "smiles", "reward", "num_fragments"]
    assert [d.smiles for d in ds] == [r["smiles"] for r in rows]
    assert [d.y.item() for d in ds] == pytest.approx([float(r["reward"]) for r in rows], rel=1e-6)
    assert [d.frag_x.size(0) for d in ds] == [int(r["num_fragments"]) for r in rows]
    assert all(torch.equal(d.x, mol_to_graph(Chem.MolFromSmiles(d.smiles)).x) for d in ds)


@pytest.mark.parametrize("extra, message", [
    (["--format", "pyg"], "--format pyg needs --out FILE.pt"),
    (["--fragment-graph", "--out", "x.csv"], "--fragment-graph needs --format pyg"),
])
def test_lgfn_sample_format_pyg_user_errors(checkpoint, capsys, extra, message):
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(checkpoint), "--beta", "1"] + extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
