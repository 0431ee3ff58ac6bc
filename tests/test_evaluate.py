"""Sampling and the temperature sweep (lgfn_graph/evaluate.py)."""
import csv

import pytest

import lgfn_graph as L
from tests.conftest import disturb_global_rng


def test_sample_molecules_follow_the_seed(tiny_model):
    env, reward, gfn = tiny_model
    first = L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=3)
    disturb_global_rng()
    assert L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=3) == first
    assert L.sample_molecules(gfn, env, reward, 4.0, 24, batch_size=10, seed=4) != first



def test_temperature_sweep_summarises_the_samples_it_writes(tiny_model, tmp_path):
    env, reward, gfn = tiny_model
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
