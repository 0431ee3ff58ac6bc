"""Bad beta and bad rewards give errors that name the culprit."""
import math

import pytest
import torch
from rdkit import Chem

import lgfn_graph as L


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf])
def test_bad_beta_is_named(beta):
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
    with pytest.raises(ValueError, match="beta") as e:
        L.sample_trajectories(gfn, env, torch.tensor([1.0, beta]))
    assert str(beta) in str(e.value)
    with pytest.raises(ValueError, match="beta"):
        L.sample_molecules(gfn, env, L.QED(), beta, 4)
    with pytest.raises(ValueError):
        L.BetaSampler(beta, 2.0)


def test_beta_sampler_ranges():
    g = torch.Generator().manual_seed(0)
    b = L.BetaSampler(2.0, 5.0).sample(1000, g)
    assert float(b.min()) >= 2.0 and float(b.max()) <= 5.0 and abs(float(b.mean()) - 3.5) < 0.15
    lb = L.BetaSampler(1.0, 100.0, "log_uniform").sample(1000, g)
    assert abs(float(lb.log().mean()) - math.log(100) / 2) < 0.2
    assert torch.equal(L.BetaSampler(3.0, 3.0).sample(5), torch.full((5,), 3.0))
    with pytest.raises(ValueError, match="low"):
        L.BetaSampler(5.0, 2.0)


MOLS = [Chem.MolFromSmiles(s) for s in ("CCO", "c1ccccc1N", "CC(=O)O")]


@pytest.mark.parametrize("value, word", [(math.nan, "nan"), (-0.5, "-0.5"), (math.inf, "inf")])
def test_bad_reward_value_names_the_molecule(value, word):
    def reward(mols):
        r = torch.ones(len(mols))
        r[1] = value
        return r

    with pytest.raises(L.RewardError) as e:
        L.log_reward(reward, MOLS)
    assert "Nc1ccccc1" in str(e.value) and word in str(e.value)


def test_reward_of_wrong_shape():
    with pytest.raises(L.RewardError, match="shape"):
        L.log_reward(lambda mols: torch.ones(len(mols), 2), MOLS)


def test_zero_reward_is_floored_not_an_error():
    lr = L.log_reward(lambda mols: torch.tensor([0.0, 1.0, 0.5]), MOLS, floor=1e-6)
    torch.testing.assert_close(lr, torch.tensor([math.log(1e-6), 0.0, math.log(0.5)]))


def test_training_stops_on_a_bad_reward_naming_the_molecule():
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=2)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))

    def nan_for_chlorine(mols):
        return torch.tensor([math.nan if any(a.GetSymbol() == "Cl" for a in m.GetAtoms()) else 1.0 for m in mols])

    with pytest.raises(L.RewardError, match="Cl"):
        L.Trainer(env, gfn, nan_for_chlorine, L.TrainConfig(steps=50, batch_size=64, epsilon=1.0)).train(progress=False)


def test_reward_oracles_hand_values():
    benzene = [Chem.MolFromSmiles("c1ccccc1")]
    from rdkit.Chem import QED
    assert math.isclose(float(L.QED()(benzene)), QED.qed(benzene[0]), rel_tol=1e-6)
    sa = float(L.SyntheticAccessibility(normalize=False)(benzene))
    assert 1.0 <= sa <= 2.0  # benzene is trivially accessible
    assert math.isclose(float(L.SyntheticAccessibility()(benzene)), (10 - sa) / 9, rel_tol=1e-6)
    assert math.isclose(float(L.qed_sa()(benzene)), QED.qed(benzene[0]) * (10 - sa) / 9, rel_tol=1e-5)
