"""Same seed, same samples and same training on the CPU; a different seed, different ones.

The global torch RNG is disturbed between the runs compared, so each result must follow from
the seed it is given (a generator seed, or ``TrainConfig.seed``), not from global state.
"""
import copy
import math

import pytest
import torch

import lgfn_graph as L
from tests.conftest import disturb_global_rng


def _sample(env, gfn, seed: int) -> tuple[L.Trajectories, list[str]]:
    beta = torch.linspace(1.0, 16.0, 32)
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, env, beta, 0.1, torch.Generator().manual_seed(seed))
    return traj, env.to_smiles(traj.terminal)


def test_sample_trajectories_follow_the_generator_seed(tiny_model):
    env, _, gfn = tiny_model
    a, smiles_a = _sample(env, gfn, 1)
    disturb_global_rng()
    b, smiles_b = _sample(env, gfn, 1)
    assert torch.equal(a.actions, b.actions) and torch.equal(a.length, b.length)
    assert torch.equal(a.log_pf, b.log_pf) and smiles_a == smiles_b
    c, smiles_c = _sample(env, gfn, 2)
    assert not (a.actions.shape == c.actions.shape and torch.equal(a.actions, c.actions))
    assert smiles_a != smiles_c


def _train(env, reward, gfn, seed: int, **config) -> tuple[dict, list[dict]]:
    """Five training steps of a copy of ``gfn``: its final parameters and the metrics without
    the timings."""
    model = copy.deepcopy(gfn)
    disturb_global_rng()
    cfg = L.TrainConfig(steps=5, batch_size=8, seed=seed, beta=L.BetaSampler(1.0, 16.0), **config)
    history = L.Trainer(env, model, reward, cfg).train(progress=False)
    return model.state_dict(), [{k: v for k, v in m.items() if not k.startswith("time_")} for m in history]


def _same_metrics(a: list[dict], b: list[dict]) -> bool:
    # NaN == NaN here: a metric that is NaN in both runs is the same
    return len(a) == len(b) and all(x.keys() == y.keys() and all(
        x[k] == y[k] or (isinstance(x[k], float) and math.isnan(x[k]) and math.isnan(y[k])) for k in x)
        for x, y in zip(a, b))


@pytest.mark.parametrize("config", [{}, {"replay_capacity": 16, "replay_fraction": 0.5}],
                         ids=["online", "replay"])
def test_training_is_bit_identical_for_the_same_seed(tiny_model, config):
    env, reward, gfn = tiny_model
    params_a, metrics_a = _train(env, reward, gfn, 7, **config)
    params_b, metrics_b = _train(env, reward, gfn, 7, **config)
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        assert torch.equal(params_a[name], params_b[name]), name
    assert _same_metrics(metrics_a, metrics_b), (metrics_a, metrics_b)
    params_c, metrics_c = _train(env, reward, gfn, 8, **config)
    assert any(not torch.equal(params_a[n], params_c[n]) for n in params_a)
    assert not _same_metrics(metrics_a, metrics_c)
