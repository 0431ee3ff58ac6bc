"""The sEH proxy port reproduces the published scores; weights are found, downloaded and checked."""
import csv
import gzip
import pickle

import numpy as np
import pytest
import torch
from rdkit import Chem

import lgfn_graph as L
from lgfn_graph import seh_proxy as S


@pytest.fixture
def weights(shared_data):
    return shared_data / "seh_proxy" / "best_params.pkl.gz"


@pytest.fixture
def reference(shared_data) -> list[tuple[str, float]]:
    lines = (shared_data / "seh_proxy" / "reference_scores.tsv").read_text().splitlines()
    return [(s, float(v)) for s, v in (line.split("\t") for line in lines if line.strip())]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $LGFN_SEH_PROXY, an empty cache in tmp_path, and no download reaching the network."""
    monkeypatch.delenv(S.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(S.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(S, "WEIGHTS_URL", (tmp_path / "nowhere.pkl.gz").as_uri())
    return tmp_path / "cache" / "seh_proxy" / S.WEIGHTS_FILE


def _mols(reference):
    return [Chem.MolFromSmiles(s) for s, _ in reference]


def test_reproduces_every_reference_score(weights, reference):
    raw = S.load_seh_proxy(weights).score(_mols(reference))
    assert raw.shape == (len(reference),) and raw.dtype == torch.float32
    off = [(s, ref, got) for (s, ref), got in zip(reference, raw.tolist()) if abs(got - ref) > 1e-3]
    assert not off, off


def test_scores_do_not_depend_on_batch_size(weights, reference):
    proxy = S.load_seh_proxy(weights)
    mols = _mols(reference)
    one, seven = proxy.score(mols, batch_size=1), proxy.score(mols, batch_size=7)
    torch.testing.assert_close(one, seven, atol=1e-5, rtol=0)
    torch.testing.assert_close(one, proxy.score(mols), atol=1e-5, rtol=0)
    assert proxy.score([]).shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_scores_on_cuda_match(weights, reference):
    raw = S.SEHReward(weights, device="cuda", batch_size=4).proxy.score(_mols(reference))
    assert raw.device.type == "cpu"
    torch.testing.assert_close(raw, torch.tensor([v for _, v in reference]), atol=1e-3, rtol=0)


def test_reward_is_raw_over_8_clipped(weights, reference):
    reward = S.SEHReward(weights)
    r = reward(_mols(reference))
    expected = (torch.tensor([v for _, v in reference]) / 8).clamp(1e-4, 100)
    torch.testing.assert_close(r, expected, atol=2e-4, rtol=0)
    assert r[[s for s, _ in reference].index("Br")] == pytest.approx(1e-4)  # raw < 0: the floor
    assert L.log_reward(reward, _mols(reference)).shape == (len(reference),)


def test_conv_by_edge_type_equals_pyg_nnconv(weights, reference):
    from torch_geometric.data import Batch
    from torch_geometric.nn import NNConv

    conv = S.load_seh_proxy(weights).conv
    g = Batch.from_data_list([S.mol_to_graph(m) for m in _mols(reference)])
    x = torch.randn(g.num_nodes, 64)
    with torch.no_grad():
        torch.testing.assert_close(conv(x, g.edge_index, g.edge_attr), NNConv.forward(conv, x, g.edge_index, g.edge_attr),
                                   atol=1e-4, rtol=1e-4)
        many = torch.rand(g.num_edges, 4)  # more distinct edge features than max_types: NNConv's own path
        assert torch.equal(conv(x, g.edge_index, many), NNConv.forward(conv, x, g.edge_index, many))


def test_edge_types_equal_torch_unique_by_rows():
    g = torch.Generator().manual_seed(0)
    for e, f, values in [(50, 4, 2), (200, 3, 5), (1, 6, 3), (30, 2, 30)]:
        attr = torch.randint(0, values, (e, f), generator=g).float() * 0.5 - 1.0
        types, kind = S.edge_types(attr)
        want_types, want_kind = torch.unique(attr, dim=0, return_inverse=True)
        assert torch.equal(types, want_types) and torch.equal(kind, want_kind)
    with pytest.raises(OverflowError):
        S.edge_types(torch.rand(70, 11, generator=g))  # 70 values in each of 11 columns: 70^11 > 2^62


def test_edge_features_too_varied_for_a_key_take_nnconvs_path(weights, reference, monkeypatch):
    from torch_geometric.data import Batch
    from torch_geometric.nn import NNConv

    def overflow(edge_attr):
        raise OverflowError("too many values")

    conv = S.load_seh_proxy(weights).conv
    g = Batch.from_data_list([S.mol_to_graph(m) for m in _mols(reference)])
    x = torch.randn(g.num_nodes, 64)
    monkeypatch.setattr(S, "edge_types", overflow)
    with torch.no_grad():
        assert conv.edge_weights(g.edge_attr) is None
        assert torch.equal(conv(x, g.edge_index, g.edge_attr), NNConv.forward(conv, x, g.edge_index, g.edge_attr))


def test_featurisation_matches_the_readme():
    g = S.mol_to_graph(Chem.MolFromSmiles("c1ccccc1O"))
    assert g.x.shape == (7, 71) and g.edge_index.shape == (2, 14) and g.edge_attr.shape == (14, 4)
    c, o = g.x[0], g.x[6]
    assert c[[1, 9, 11, 13, 13 + 6]].tolist() == [1, 1, 1, 1, 1] and c.sum() == 5  # C, aromatic, SP2, 1 H, Z=6
    assert o[[3, 11, 13, 13 + 8]].tolist() == [1, 1, 1, 1] and o.sum() == 4  # O, SP2 (conjugated), 1 H, Z=8
    assert torch.equal(g.edge_attr.sum(0), torch.tensor([2.0, 0, 0, 12]))  # C-O single, 6 aromatic, both ways
    assert bool((g.edge_index[0, 1:] >= g.edge_index[0, :-1]).all())  # coalesced: sorted by source
    br = S.mol_to_graph(Chem.MolFromSmiles("Br"))  # no bonds: one self-loop with a zero feature
    assert br.x[0, 5] == 1 and br.x[0, 13 + 35] == 1 and br.x[0, 13] == 1
    assert br.edge_index.tolist() == [[0], [0]] and br.edge_attr.abs().sum() == 0
    assert S.mol_to_graph(Chem.MolFromSmiles("[Ba]")).x[0, 13 + 56] == 1
    assert S.mol_to_graph(Chem.MolFromSmiles("[La]")).x[0, 14:].sum() == 0  # Z = 57: no atomic-number column


def test_unusable_molecules_are_named_or_floored(weights):
    proxy = S.load_seh_proxy(weights)
    unsanitized = Chem.MolFromSmiles("c1ccccc1", sanitize=False)
    for bad, why in [(None, "None"), (Chem.Mol(), "no atoms"), (unsanitized, "sanitized")]:
        with pytest.raises(S.SEHProxyError, match=f"molecule 1 .*{why}"):
            proxy.score([Chem.MolFromSmiles("CCO"), bad])
    mols = [Chem.MolFromSmiles("CCO"), None, Chem.MolFromSmiles("c1ccccc1")]
    r = S.SEHReward(proxy=proxy, invalid_reward=0.0)(mols)
    assert r[1] == 0 and torch.allclose(r[[0, 2]], S.SEHReward(proxy=proxy)([mols[0], mols[2]]))
    with pytest.raises(ValueError, match="invalid_reward"):
        S.SEHReward(proxy=proxy, invalid_reward=float("nan"))


def test_weights_from_the_environment_variable(weights, isolated, monkeypatch):
    monkeypatch.setenv(S.ENV_WEIGHTS, str(weights))
    assert S.weights_path() == weights
    S.load_seh_proxy()
    assert not isolated.exists()  # neither cached nor downloaded
    monkeypatch.setenv(S.ENV_WEIGHTS, str(isolated.parent / "missing.pkl.gz"))
    with pytest.raises(S.WeightsUnavailableError, match=f"missing.pkl.gz.*{S.ENV_WEIGHTS}"):
        S.load_seh_proxy()
    assert S.weights_path(weights) == weights  # an explicit path wins over the variable


def test_download_fills_the_cache_once(weights, reference, isolated, monkeypatch):
    monkeypatch.setattr(S, "WEIGHTS_URL", weights.as_uri())
    raw = S.load_seh_proxy().score(_mols(reference))
    assert isolated.read_bytes() == weights.read_bytes()
    assert [p.name for p in isolated.parent.iterdir()] == [S.WEIGHTS_FILE]  # no temporary file left
    torch.testing.assert_close(raw, S.load_seh_proxy(weights).score(_mols(reference)))
    monkeypatch.setattr(S, "WEIGHTS_URL", "http://127.0.0.1:9/unreachable.pkl.gz")
    S.load_seh_proxy()  # the cached file: no second download


@pytest.mark.parametrize("url", ["file:///nonexistent/best_params.pkl.gz", "http://127.0.0.1:9/best_params.pkl.gz"])
def test_unreachable_download_says_what_to_do(isolated, monkeypatch, url):
    monkeypatch.setattr(S, "WEIGHTS_URL", url)
    with pytest.raises(S.WeightsUnavailableError) as e:
        S.load_seh_proxy()
    msg = str(e.value)
    for word in (url, "offline", S.ENV_WEIGHTS, "path=", str(isolated)):
        assert word in msg, (word, msg)
    assert not isolated.parent.exists() or not any(isolated.parent.iterdir())
    with pytest.raises(S.WeightsUnavailableError, match="not in the cache"):
        S.load_seh_proxy(download=False)


def _write(path, obj, compress=True):
    data = pickle.dumps(obj)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_weight_files_are_named(weights, tmp_path, monkeypatch):
    good = S.read_weights(weights.read_bytes())
    three = _write(tmp_path / "three.pkl.gz", [np.zeros((2, 2), np.float32)] * 3)
    with pytest.raises(S.SEHProxyError, match=f"{three}.*22 numpy arrays, got 3"):
        S.load_seh_proxy(three)
    shape = _write(tmp_path / "shape.pkl.gz", good[:6] + [np.zeros((64, 128), np.float32)] + good[7:], compress=False)
    with pytest.raises(S.SEHProxyError, match=f"{shape}: weight 6 has shape \\(64, 128\\), expected \\(4096, 128\\)"):
        S.load_seh_proxy(shape)
    nan = _write(tmp_path / "nan.pkl.gz", good[:20] + [np.full((1, 128), np.nan, np.float32)] + good[21:])
    with pytest.raises(S.SEHProxyError, match="weight 20 has non-finite"):
        S.load_seh_proxy(nan)
    evil = _write(tmp_path / "evil.pkl.gz", [_Evil()] * 22)
    with pytest.raises(S.SEHProxyError, match=f"{evil}.*refusing to load builtins.print"):
        S.load_seh_proxy(evil)
    junk = tmp_path / "junk.pkl.gz"
    junk.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(S.SEHProxyError, match=str(junk)):
        S.load_seh_proxy(junk)
    monkeypatch.setattr(S, "WEIGHTS_URL", three.as_uri())  # a bad download never reaches the cache
    with pytest.raises(S.SEHProxyError, match="got 3"):
        S.download_weights(tmp_path / "cache" / S.WEIGHTS_FILE)
    assert not (tmp_path / "cache" / S.WEIGHTS_FILE).exists()


def _task_args(out, weights, conditioning="logit"):
    return ["--out", str(out), "--weights", str(weights), "--steps", "3", "--batch-size", "4", "--hidden", "16",
            "--num-layers", "1", "--eval-betas", "1,16", "--eval-n", "4", "--no-progress", "--conditioning", conditioning]


def test_seh_task_says_where_to_get_the_fragments(weights, tmp_path, monkeypatch):
    from tasks.seh_frag import main

    monkeypatch.delenv("LGFN_FRAGMENTS_72", raising=False)
    with pytest.raises(L.FragmentLibraryError, match="--fragments.*LGFN_FRAGMENTS_72.*bengio2021flow"):
        main(_task_args(tmp_path, weights))
    assert not tmp_path.joinpath("checkpoint.pt").exists()


@pytest.mark.parametrize("conditioning", L.policy.MODES)
def test_seh_task_runs_and_writes_its_outputs(shared_data, weights, tmp_path, monkeypatch, conditioning):
    from tasks.seh_frag import main

    monkeypatch.setenv("LGFN_FRAGMENTS_72", str(shared_data / "fragments" / "fragments_72.json"))
    summary = main(_task_args(tmp_path, weights, conditioning))
    assert [s["beta"] for s in summary] == [1.0, 16.0]
    for name in ("checkpoint.pt", "samples.csv", "summary.csv", "mean_reward_vs_beta.png", "metrics.jsonl", "run.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "samples.csv")))
    assert len(rows) == 8 and all(1e-4 - 1e-9 <= float(r["reward"]) <= 100 for r in rows)  # log-exp round trip
    assert all(1 <= int(r["num_fragments"]) <= 9 for r in rows)
    gfn, env, state = L.load_model(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and env.library.num_fragments == 72 and env.max_fragments == 9
    assert gfn.config.conditioning == conditioning
