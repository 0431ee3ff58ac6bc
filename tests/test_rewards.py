"""Reward oracles against hand-computed values, combinations, and scoring batches with bad molecules."""
import math

import numpy as np
import pytest
import torch
from rdkit import Chem
from rdkit.Chem import Crippen

from lgfn_graph.rewards import (LogP, MolecularWeightWindow, Product, RewardError, SmilesReward, WeightedSum,
                                Window, log_reward, score_molecules)

# Average atomic weights RDKit uses: C 12.011, H 1.008, O 15.999, N 14.007.
MW = {"CCO": 2 * 12.011 + 6 * 1.008 + 15.999, "c1ccccc1": 6 * 12.011 + 6 * 1.008,
      "Nc1ccccc1": 6 * 12.011 + 14.007 + 7 * 1.008}
MOLS = [Chem.MolFromSmiles(s) for s in MW]


def const(*values):
    return lambda mols: torch.tensor(values[: len(mols)])


def test_molecular_weight_window_hand_values():
    r = MolecularWeightWindow(low=70.0, high=90.0, width=10.0)(MOLS)
    d = torch.tensor([70.0 - MW["CCO"], 0.0, MW["Nc1ccccc1"] - 90.0])  # 23.931 Da below, inside, 3.128 above
    torch.testing.assert_close(r, torch.exp(-0.5 * (d / 10.0) ** 2))
    assert r[1] == 1.0 and r.dtype == torch.float32
    assert math.isclose(float(MolecularWeightWindow(100, 200, 21.886)(MOLS[1:2])), math.exp(-0.5), rel_tol=1e-4)


def test_window_edges_and_bad_arguments():
    w = Window(1.0, 2.0, 0.5)
    torch.testing.assert_close(w(torch.tensor([1.0, 1.5, 2.0, 2.5, 0.0])),
                               torch.tensor([1.0, 1.0, 1.0, math.exp(-0.5), math.exp(-2.0)]))
    for low, high, width in [(2.0, 1.0, 1.0), (0.0, 1.0, 0.0), (math.nan, 1.0, 1.0), (0.0, 1.0, -1.0)]:
        with pytest.raises(ValueError, match="window"):
            Window(low, high, width)
    with pytest.raises(ValueError, match="low=500"):
        MolecularWeightWindow(500, 200, 10)


def test_logp_raw_gaussian_and_window():
    logp = torch.tensor([Crippen.MolLogP(m) for m in MOLS])
    torch.testing.assert_close(LogP()(MOLS), logp)
    torch.testing.assert_close(LogP(target=1.0, width=0.5)(MOLS), torch.exp(-0.5 * ((logp - 1.0) / 0.5) ** 2))
    window = LogP(target=(0.5, 1.5))(MOLS)
    assert window[2] == 1.0  # aniline logP 1.27
    assert math.isclose(float(window[0]), math.exp(-0.5 * (0.5 - float(logp[0])) ** 2), rel_tol=1e-5)


def test_product_and_weighted_sum_arithmetic():
    a, b = const(0.5, 2.0, 0.0), const(4.0, 0.25, 3.0)
    torch.testing.assert_close(Product(a, b)(MOLS), torch.tensor([2.0, 0.5, 0.0]))
    torch.testing.assert_close(WeightedSum([a, b], [2.0, 0.5])(MOLS), torch.tensor([3.0, 4.125, 1.5]))
    with pytest.raises(ValueError, match="one weight per reward"):
        WeightedSum([a, b], [1.0])
    with pytest.raises(ValueError, match="finite"):
        WeightedSum([a], [math.inf])


def test_a_component_of_the_wrong_shape_is_named():
    def two_columns(mols):
        return torch.ones(len(mols), 2)

    with pytest.raises(RewardError, match="two_columns returned shape"):
        WeightedSum([const(1.0, 1.0, 1.0), two_columns], [1.0, 1.0])(MOLS)
    with pytest.raises(RewardError, match=r"two_columns returned shape \(3, 2\)"):
        Product(two_columns)(MOLS)


@pytest.mark.parametrize("kind", [list, np.array, torch.tensor])
def test_smiles_reward_wraps_a_function_of_smiles(kind):
    seen = []

    def length(smiles):
        seen.extend(smiles)
        return kind([float(len(s)) for s in smiles])

    r = SmilesReward(length)([Chem.MolFromSmiles("OCC"), MOLS[1]])
    assert seen == ["CCO", "c1ccccc1"]  # canonical SMILES
    torch.testing.assert_close(r, torch.tensor([3.0, 8.0]))
    assert r.dtype == torch.float32


def test_smiles_reward_of_wrong_length_or_type():
    with pytest.raises(RewardError, match=r"SmilesReward\(<lambda>\) returned shape \(1,\)"):
        SmilesReward(lambda smiles: [1.0])(MOLS)
    with pytest.raises(RewardError, match="not numbers"):
        SmilesReward(lambda smiles: ["high"] * len(smiles))(MOLS)


# -- score_molecules ----------------------------------------------------------------------------
UNSANITIZABLE = Chem.MolFromSmiles("CC(C)(C)(C)(C)C", sanitize=False)  # a five-valent carbon


def recording(values: dict[str, float]):
    """A reward of canonical SMILES that records the molecules it is given."""
    seen = []

    def reward(mols):
        smiles = [Chem.MolToSmiles(m) for m in mols]
        seen.extend(smiles)
        return torch.tensor([values[s] for s in smiles])

    return reward, seen


SCORES = {"CCO": 0.5, "c1ccccc1": 2.0, "Nc1ccccc1": 1.0}


@pytest.mark.parametrize("bad, words", [(None, ["molecule 1 is None"]),
                                        (UNSANITIZABLE, ["molecule 1", "sanitization", "valence", "CC(C)(C)(C)(C)C"])])
def test_invalid_molecules_floor_or_raise(bad, words):
    mols = [MOLS[0], bad, MOLS[1]]
    reward, seen = recording(SCORES)
    res = score_molecules(reward, mols, floor=1e-6, on_error="floor")
    torch.testing.assert_close(res.log_reward, torch.tensor([math.log(0.5), math.log(1e-6), math.log(2.0)]))
    assert res.invalid.tolist() == [False, True, False] and res.num_invalid == 1
    assert seen == ["CCO", "c1ccccc1"]  # the invalid molecule never reaches the reward
    assert all(w in res.messages[0] for w in words)
    with pytest.raises(RewardError) as e:
        score_molecules(reward, mols, on_error="raise")
    assert all(w in str(e.value) for w in words)


def no_nitrogen(mols):
    if any(a.GetSymbol() == "N" for m in mols for a in m.GetAtoms()):
        raise KeyError("no parameters for nitrogen")
    return torch.ones(len(mols))


def test_a_reward_that_raises_on_one_molecule_is_isolated():
    res = score_molecules(no_nitrogen, MOLS + MOLS[:1], on_error="floor")
    assert res.invalid.tolist() == [False, False, True, False]
    assert res.log_reward[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]
    assert res.log_reward[2] == pytest.approx(math.log(1e-8))
    assert len(res.messages) == 1 and "molecule 2: Nc1ccccc1" in res.messages[0]
    assert "KeyError" in res.messages[0] and "nitrogen" in res.messages[0]
    with pytest.raises(RewardError, match="no_nitrogen raised KeyError.*molecule 2: Nc1ccccc1") as e:
        score_molecules(no_nitrogen, MOLS, on_error="raise")
    assert isinstance(e.value.__cause__, KeyError)


def test_a_reward_that_fails_only_on_batches():
    def one_at_a_time(mols):
        if len(mols) > 1:
            raise MemoryError("batch too large")
        return torch.ones(1)

    assert score_molecules(one_at_a_time, MOLS, on_error="floor").num_invalid == 0
    with pytest.raises(RewardError, match="batch of 3 molecules, but on none of them alone"):
        score_molecules(one_at_a_time, MOLS, on_error="raise")


def test_nan_inf_and_negative_rewards_both_modes():
    reward = const(math.nan, 1.0, -2.0)
    res = score_molecules(reward, MOLS, on_error="floor")
    assert res.invalid.tolist() == [True, False, True] and res.num_invalid == 2
    assert "nan" in res.messages[0] and "molecule 0: CCO" in res.messages[0]
    assert "-2.0" in res.messages[1] and "molecule 2: Nc1ccccc1" in res.messages[1]
    with pytest.raises(RewardError, match=r"nan .*molecule 0: CCO \(and 1 more\)"):
        score_molecules(reward, MOLS, on_error="raise")
    with pytest.raises(RewardError, match="inf"):
        log_reward(const(1.0, math.inf, 1.0), MOLS)


def test_wrong_shape_is_an_error_in_both_modes():
    for mode in ("raise", "floor"):
        with pytest.raises(RewardError, match="shape"):
            score_molecules(lambda mols: torch.ones(len(mols) + 1), MOLS, on_error=mode)
    with pytest.raises(ValueError, match="on_error"):
        score_molecules(const(1.0), MOLS[:1], on_error="skip")


def test_empty_and_all_invalid_batches():
    res = score_molecules(const(), [], on_error="raise")
    assert res.log_reward.shape == (0,) and res.num_invalid == 0
    res = score_molecules(const(), [None, None], floor=0.0, on_error="floor")
    assert res.invalid.all() and torch.isneginf(res.log_reward).all()
