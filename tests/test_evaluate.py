"""Sampling and the temperature sweep (lgfn_graph/evaluate.py)."""
import csv

import pytest
import torch

import lgfn_graph as L
from tasks.tiny_frag import make_task


def _disturb_global_rng():
    torch.rand(97)


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    env, reward = make_task()
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=2))
    return env, reward, gfn


def test_sample_molecules_follow_the_seed(task):
    env, reward, gfn = task
    first = L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=3)
    _disturb_global_rng()
    assert L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=3) == first
    assert L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=4) != first



def test_temperature_sweep_summarises_the_samples_it_writes(task, tmp_path):
    env, reward, gfn = task
    summary = L.temperature_sweep(gfn, env, reward, [1.0, 8.0], 6, tmp_path, seed=2)
    with open(tmp_path / "samples.csv") as f:
        rows = list(csv.DictReader(f))
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "mean_reward_vs_beta.png").stat().st_size > 0
    assert [s["beta"] for s in summary] == [1.0, 8.0] and [s["n"] for s in summary] == [6, 6]
    for s in summary:
        got = [float(r["reward"]) for r in rows if float(r["beta"]) == s["beta"]]
        assert len(got) == 6
        assert s["mean_reward"] == pytest.approx(sum(got) / 6) and s["max_reward"] == pytest.approx(max(got))
        smiles = {r["smiles"] for r in rows if float(r["beta"]) == s["beta"]}
        assert s["unique_fraction"] == pytest.approx(len(smiles) / 6)
