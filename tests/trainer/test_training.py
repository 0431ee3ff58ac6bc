"""A short online run learns: reward rises, and the temperature dial orders the samples."""
import csv

import torch

import lgfn_graph as L


def _mean_reward(gfn, env, reward, beta):
    return sum(x["reward"] for x in L.sample_molecules(gfn, env, reward, beta, 256, seed=1)) / 256


def test_short_training_improves_reward_and_beta_orders_it():
    torch.manual_seed(0)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=5)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=64, num_layers=2))
    reward = L.qed_sa()
    before = _mean_reward(gfn, env, reward, 32.0)
    history = L.Trainer(env, gfn, reward, L.TrainConfig(steps=150, batch_size=32, lr=1e-3)).train(progress=False)
    low, high = _mean_reward(gfn, env, reward, 1.0), _mean_reward(gfn, env, reward, 32.0)
    assert high > before + 0.05, (before, high)
    assert high > low + 0.03, (low, high)
    assert sum(h["loss"] for h in history[-20:]) < sum(h["loss"] for h in history[:20])


def test_default_task_writes_its_outputs(tmp_path):
    from tasks.qed_frag import main

    summary = main(["--out", str(tmp_path), "--steps", "3", "--batch-size", "8", "--hidden", "16",
                    "--num-layers", "1", "--eval-betas", "1,10", "--eval-n", "6", "--no-progress"])
    assert [s["beta"] for s in summary] == [1.0, 10.0]
    for name in ("checkpoint.pt", "samples.csv", "summary.csv", "mean_reward_vs_beta.png", "metrics.jsonl", "run.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(tmp_path / "samples.csv")))
    assert len(rows) == 12 and {r["beta"] for r in rows} == {"1.0", "10.0"}
    assert all(float(r["reward"]) > 0 for r in rows)
    gfn, env, state = L.load_model(tmp_path / "checkpoint.pt")
    assert state["step"] == 3 and (tmp_path / "mean_reward_vs_beta.png").read_bytes()[:4] == b"\x89PNG"
