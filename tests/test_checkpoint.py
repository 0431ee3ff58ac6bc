"""Checkpoints round-trip exactly and damaged ones give a clear error."""
import pytest
import torch

import lgfn_graph as L


def _trained(tmp_path):
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2, conditioning="logit+layer"))
    tr = L.Trainer(env, gfn, L.QED(), L.TrainConfig(steps=3, batch_size=8), tmp_path)
    tr.train(progress=False)
    return env, gfn, tmp_path / "checkpoint.pt"


def test_round_trip_gives_the_same_policy(tmp_path):
    env, gfn, path = _trained(tmp_path)
    gfn2, env2, state = L.load_model(path)
    assert state["step"] == 3 and env2.max_fragments == 3
    assert [f.smiles for f in env2.library.fragments] == [f.smiles for f in env.library.fragments]
    for (k, v), (k2, v2) in zip(gfn.state_dict().items(), gfn2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    beta = torch.full((5,), 3.0)
    with torch.no_grad():
        a = L.sample_trajectories(gfn, env, beta, generator=torch.Generator().manual_seed(0))
        b = L.sample_trajectories(gfn2, env2, beta, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.actions, b.actions)


def test_truncated_and_foreign_checkpoints(tmp_path):
    _, _, path = _trained(tmp_path)
    data = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(L.CheckpointError, match="truncated or corrupted"):
        L.load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(L.CheckpointError, match="not an lgfn_graph checkpoint"):
        L.load_checkpoint(other)
    state = torch.load(path, weights_only=True)
    state["format_version"] = 999
    torch.save(state, other)
    with pytest.raises(L.CheckpointError, match="version 999"):
        L.load_checkpoint(other)
    with pytest.raises(L.CheckpointError, match="not found"):
        L.load_checkpoint(tmp_path / "missing.pt")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with L.files.atomic_write(target) as f:
            f.write("partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
