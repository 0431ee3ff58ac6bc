"""Evaluation metrics against hand-computed values, brute force and the exact tiny-task DP."""
import math
from collections import defaultdict
from itertools import combinations

import numpy as np
import pytest
import torch
from rdkit import Chem
from scipy import stats

import lgfn_graph as L
from lgfn_graph import exact
from lgfn_graph import metrics as M
from tasks.tiny_frag import make_task


def _bits(smiles: str, radius: int = 2, n_bits: int = 2048) -> set[int]:
    return set(M.morgan_fingerprints([smiles], radius, n_bits)[0].GetOnBits())


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


# -- fingerprints and similarity ------------------------------------------------------------------
def test_morgan_radius_and_size_are_respected():
    fp = M.morgan_fingerprints(["CCO"], radius=0, n_bits=64)[0]
    assert fp.GetNumBits() == 64
    # radius 0: one bit per distinct atom environment: CH3, CH2 (bonded to C and O), OH
    assert len(_bits("CCO", radius=0)) == 3 and len(_bits("CC", radius=0)) == 1
    assert len(_bits("CCO", radius=2)) > 3
    assert M.morgan_fingerprints([Chem.MolFromSmiles("CCO")])[0] == M.morgan_fingerprints(["OCC"])[0]


def test_tanimoto_hand_computed():
    fps = M.morgan_fingerprints(["CC", "CCO", "OCC", "C", "O"], radius=0)
    # radius 0: ethane {CH3}, ethanol {CH3, CH2, OH}: they share the CH3 bit
    torch.testing.assert_close(M.bulk_tanimoto(fps[0], fps[1:]),
                               torch.tensor([1 / 3, 1 / 3, 0.0, 0.0], dtype=torch.float64))
    assert float(M.bulk_tanimoto(fps[1], [fps[2]])) == 1.0  # the same molecule written twice
    a, b = _bits("c1ccccc1O"), _bits("c1ccccc1N")
    got = M.bulk_tanimoto(*M.morgan_fingerprints(["c1ccccc1O"]), M.morgan_fingerprints(["c1ccccc1N"]))
    assert 0 < float(got) < 1 and float(got) == pytest.approx(_jaccard(a, b), abs=1e-12)


def test_invalid_smiles_is_named_with_its_index():
    with pytest.raises(ValueError, match=r"index 1: 'C1CC'"):
        M.morgan_fingerprints(["CCO", "C1CC", "CC"])
    with pytest.raises(ValueError, match=r"index 2: 'Cx'"):
        M.top_k_reward(["CCO", "CC", "Cx"], [1.0, 2.0, 3.0], k=1)


def test_mean_pairwise_similarity_against_bit_sets():
    smiles = ["CCO", "CCN", "c1ccccc1", "CCO"]
    want = np.mean([_jaccard(_bits(a), _bits(b)) for a, b in combinations(smiles, 2)])
    assert M.mean_pairwise_similarity(smiles) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        M.mean_pairwise_similarity(["CCO"])


# -- modes ----------------------------------------------------------------------------------------
NEAR = ("CCCCCCCCCO", "CCCCCCCCCCO")  # decanol and undecanol: Tanimoto >= 0.7
FAR = ("c1ccccc1", "CC(=O)O", "C1CCNCC1")


def test_the_near_pair_is_near_and_the_far_ones_are_far():
    fps = M.morgan_fingerprints(list(NEAR + FAR))
    assert float(M.bulk_tanimoto(fps[0], [fps[1]])) >= 0.7
    assert float(M.bulk_tanimoto(fps[0], fps[2:]).max()) < 0.7
    assert all(float(M.bulk_tanimoto(fps[i], fps[i + 1:]).max()) < 0.7 for i in range(2, 4))


def test_mode_tracker_hand_made_batches():
    t = M.ModeTracker()
    # below the threshold: ignored, and never parsed (an invalid SMILES there does not raise)
    assert t.update(["CCO", "not a smiles"], [0.89, 0.1], num_trajectories=2) == 0
    # near-duplicates in one batch count once; a far molecule is a second mode
    assert t.update([NEAR[0], NEAR[1], FAR[0]], torch.tensor([0.95, 0.99, 0.9]), num_trajectories=4) == 2
    assert t.modes == [NEAR[0], FAR[0]]
    # near a known mode, or the same mode again: nothing new
    assert t.update([NEAR[1], FAR[0], FAR[1]], [1.0, 1.0, 0.5], num_trajectories=3) == 0
    assert t.update([FAR[2]], np.array([0.9]), num_trajectories=1) == 1
    assert t.history == [(2, 0), (6, 2), (9, 2), (10, 3)]
    assert t.trajectories_seen == 10 and t.num_modes == 3


def test_mode_tracker_reward_scale_and_thresholds():
    t = M.ModeTracker(reward_scale=10.0)
    assert t.update([FAR[0], FAR[1]], [8.9, 9.0], num_trajectories=2) == 1
    assert t.modes == [FAR[1]]
    strict = M.ModeTracker(reward_threshold=0.5, max_similarity=0.1)
    assert strict.update(["CCCO", "CCCN"], [0.6, 0.6], num_trajectories=2) == 1  # share bits: similar at 0.1
    # radius 0: ethanol is exactly 1/3 similar to ethane (see above), so it is not below 1/3
    edge = M.ModeTracker(max_similarity=1 / 3, radius=0)
    assert edge.update(["CC", "CCO", "c1ccccc1"], [1.0, 1.0, 1.0], num_trajectories=3) == 2
    assert edge.modes == ["CC", "c1ccccc1"]
    with pytest.raises(ValueError, match="reward_scale"):
        M.ModeTracker(reward_scale=0.0)
    with pytest.raises(ValueError, match="max_similarity"):
        M.ModeTracker(max_similarity=1.5)


def test_mode_tracker_errors():
    t = M.ModeTracker()
    with pytest.raises(ValueError, match="2 SMILES but 1 rewards"):
        t.update(["C", "CC"], [1.0], num_trajectories=2)
    with pytest.raises(ValueError, match="fewer than"):
        t.update(["C", "CC"], [1.0, 1.0], num_trajectories=1)
    with pytest.raises(ValueError, match="NaN"):
        t.update(["C", "CC"], [1.0, math.nan], num_trajectories=2)
    with pytest.raises(ValueError, match="index 1: 'C1'"):
        t.update(["C", "C1"], [1.0, 1.0], num_trajectories=2)


def test_mode_tracker_state_dict_round_trip(tmp_path):
    t = M.ModeTracker(max_similarity=0.6)
    t.update([NEAR[0], FAR[0], "CCO"], [0.95, 0.2, 0.99], num_trajectories=5)
    path = tmp_path / "tracker.pt"
    torch.save(t.state_dict(), path)
    back = M.ModeTracker(max_similarity=0.6)
    back.load_state_dict(torch.load(path, weights_only=True))  # plain Python only
    assert back == t and back.state_dict() == t.state_dict()
    # the fingerprints of the restored modes are rebuilt: a near-duplicate is still not new
    for tracker in (t, back):
        assert tracker.update([NEAR[1], FAR[1]], [1.0, 1.0], num_trajectories=2) == 1
    assert back.state_dict() == t.state_dict()
    with pytest.raises(ValueError, match="max_similarity"):
        M.ModeTracker().load_state_dict(t.state_dict())


# -- top-k ----------------------------------------------------------------------------------------
SMILES = ["CCO", "OCC", "c1ccccc1", "CCN", "CC(=O)O", "C1CCNCC1", "CCCl", "c1ccccc1O", "CC"]
REWARDS = [0.3, 0.8, 0.5, 0.7, 0.1, 0.95, 0.4, 0.65, 0.2]  # "OCC" repeats "CCO" with a higher reward


def _brute_best(k: int) -> tuple[float, tuple[str, ...]]:
    """The k distinct molecules of greatest total reward, over every subset of size k."""
    best: dict[str, float] = {}
    for s, r in zip(SMILES, REWARDS):
        c = Chem.MolToSmiles(Chem.MolFromSmiles(s))
        best[c] = max(r, best.get(c, -1.0))
    top = max(combinations(best, k), key=lambda subset: sum(best[s] for s in subset))
    return float(np.mean([best[s] for s in top])), top


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_top_k_against_brute_force(k):
    want_reward, top = _brute_best(k)
    assert M.top_k_reward(SMILES, REWARDS, k) == pytest.approx(want_reward, abs=1e-12)
    if k >= 2:
        want_div = np.mean([1 - _jaccard(_bits(a), _bits(b)) for a, b in combinations(top, 2)])
        assert M.top_k_diversity(SMILES, torch.tensor(REWARDS), k) == pytest.approx(want_div, abs=1e-12)


def test_top_k_keeps_one_copy_of_each_molecule():
    smiles, rewards = M.top_k_unique(["OCC", "CCO", "CC", "C(C)O"], [0.5, 0.9, 0.1, 0.2], k=2)
    assert smiles == ["CCO", "CC"] and rewards == [0.9, 0.1]  # the best of the three copies
    assert M.top_k_unique(["CCO", "CC", "C"], [1.0, 1.0, 1.0], k=2)[0] == ["C", "CC"]  # ties: smaller SMILES
    assert M.top_k_diversity(["c1ccccc1", "C1=CC=CC=C1", "CC"], [1.0, 1.0, 0.0], 2) > 0.5  # not a self-pair


def test_top_k_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.top_k_reward(SMILES, REWARDS, 0)
    with pytest.raises(ValueError, match="no molecules"):
        M.top_k_reward([], [], 1)
    with pytest.raises(ValueError, match="9 molecules but 8 rewards"):
        M.top_k_reward(SMILES, REWARDS[:-1], 1)
    with pytest.raises(ValueError, match="only 8 distinct molecules, fewer than k=9"):
        M.top_k_reward(SMILES, REWARDS, 9)
    with pytest.raises(ValueError, match="k >= 2"):
        M.top_k_diversity(SMILES, REWARDS, 1)


# -- likelihood -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """The tiny fragment task, its states, a random model and its exact terminal distributions."""
    torch.manual_seed(0)
    env, _ = make_task()
    space = exact.enumerate_states(env)
    # layer conditioning: with logit conditioning alone the scale is 1 at initialisation, and a
    # random policy would not depend on beta
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, conditioning="logit+layer"))
    term = space.terminal.nonzero().flatten()
    p = {b: exact.exact_terminal_distribution(gfn, env, space, b)[term] for b in (1.0, 32.0)}
    return env, gfn, space.states[term], p


def _estimate(gfn, env, states, beta, k, seed=0, **kw):
    return M.log_likelihood(gfn, env, states, beta, num_samples=k, generator=torch.Generator().manual_seed(seed), **kw)


def test_log_likelihood_matches_the_exact_distribution(tiny):
    env, gfn, states, p = tiny
    B = len(states)
    assert float((p[1.0].log() - p[32.0].log()).abs().max()) > 0.5  # so a beta mix-up shows
    beta = torch.where(torch.arange(B) % 2 == 0, 32.0, 1.0)  # a beta per state
    want = torch.where(beta == 32.0, p[32.0], p[1.0])
    est = _estimate(gfn, env, states, beta, 256).double()
    rel = est.exp() / want - 1
    assert float(est.exp().sum()) == pytest.approx(float(want.sum()), abs=0.02)
    assert float(rel.abs().mean()) < 0.03 and float(rel.abs().max()) < 0.15
    # many samples for the states with the most backward walks (three fragments: up to 4)
    far = (states.n == 3).nonzero().flatten()[::9]
    est = _estimate(gfn, env, states[far], 32.0, 4096, seed=1).double()
    assert float((est - p[32.0][far].log()).abs().max()) < 0.05


def test_log_likelihood_is_exact_with_one_backward_walk(tiny):
    env, gfn, states, p = tiny
    single = (states.n == 1).nonzero().flatten()
    assert len(single) == 4
    for k in (1, 5):  # batch_size=3 cuts the 4 * k samples across states
        est = _estimate(gfn, env, states[single], 32.0, k, batch_size=3)
        torch.testing.assert_close(est.double(), p[32.0][single].log(), atol=1e-5, rtol=0)


def test_log_likelihood_counts_symmetric_trees_once(tiny):
    """A tree with two identical halves has two backward walks that rebuild it with the same
    forward actions: its weight is 2 P_F(tau), and the estimate divides by |Aut| = 2."""
    env, gfn, states, p = tiny
    sym = (env.log_automorphisms(states) > 0).nonzero().flatten()
    assert len(sym) > 0
    est = _estimate(gfn, env, states[sym], 32.0, 1)
    torch.testing.assert_close(est.double(), p[32.0][sym].log(), atol=1e-5, rtol=0)


def test_log_likelihood_weights_with_the_uniform_proposal_under_a_learned_backward_policy(tiny):
    env, _, states, _ = tiny
    torch.manual_seed(1)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, backward_policy="learned"))
    space = exact.enumerate_states(env)
    p = exact.exact_terminal_distribution(gfn, env, space, 2.0)[space.terminal]
    pick = (states.n >= 2).nonzero().flatten()[::5]
    est = _estimate(gfn, env, states[pick], 2.0, 2048).double()
    assert float((est - p[pick].log()).abs().max()) < 0.05


def _walk_atom_env(gfn, env, beta):
    """Brute force: every forward action sequence; probability of ending at each exact state."""
    prob, reps = defaultdict(float), {}

    def walk(s, logp):
        cat = gfn.policy(env.to_graph(s), torch.tensor([beta]), env.forward_masks(s))
        _, actions, lp = cat.legal_actions()
        for j in range(actions.shape[0]):
            a = actions[j:j + 1]
            if bool(env.is_stop(a)):
                key = (tuple(s.elem[0].tolist()), tuple(s.bond[0].flatten().tolist()))
                prob[key] += math.exp(logp + float(lp[j]))
                reps[key] = s
            else:
                walk(env.step(s, a), logp + float(lp[j]))

    with torch.no_grad():
        walk(env.initial(1), 0.0)
    return [reps[k] for k in prob], torch.tensor(list(prob.values()), dtype=torch.float64)


def test_log_likelihood_of_atom_states_is_of_the_ordered_graph():
    torch.manual_seed(0)
    env = L.AtomEnv(elements=("C", "O"), max_atoms=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1))
    reps, p = _walk_atom_env(gfn, env, 1.5)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    states = L.AtomStates.cat(reps)
    est = _estimate(gfn, env, states, 1.5, 256).double()
    assert float(est.exp().sum()) == pytest.approx(1.0, abs=0.02)
    assert float((est.exp() / p - 1).abs().mean()) < 0.03


def test_log_likelihood_errors(tiny):
    env, gfn, states, _ = tiny
    with pytest.raises(ValueError, match="not terminal"):
        M.log_likelihood(gfn, env, env.initial(2), 1.0)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        M.log_likelihood(gfn, env, states[:3], torch.ones(2))
    with pytest.raises(ValueError, match="num_samples"):
        M.log_likelihood(gfn, env, states[:3], 1.0, num_samples=0)
    with pytest.raises(ValueError, match="beta"):
        M.log_likelihood(gfn, env, states[:3], -1.0)


# -- correlations and temperature -----------------------------------------------------------------
def test_correlations_against_scipy_and_by_hand():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    got = M.correlations(torch.tensor(x), y.tolist())
    assert got["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert got["pearson"] == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    mono = M.correlations([1, 2, 3, 4, 5], [1, 10, 100, 1000, 10000])  # monotone, not linear
    assert mono["spearman"] == pytest.approx(1.0) and mono["pearson"] < 0.9
    assert M.correlations([1, 2, 3], [6, 4, 2]) == pytest.approx({"spearman": -1.0, "pearson": -1.0})


def test_correlations_errors():
    with pytest.raises(ValueError, match="at least 3"):
        M.correlations([1, 2], [1, 2])
    with pytest.raises(ValueError, match="differ in length"):
        M.correlations([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="y has 1 NaN .* index 2"):
        M.correlations([1, 2, 3, 4], [1, 2, math.nan, 4])
    with pytest.raises(ValueError, match="x is constant"):
        M.correlations([2, 2, 2], [1, 2, 3])


def test_temperature_response_hand_made_rows():
    rows = [
        {"beta": 8.0, "smiles": "CCO", "reward": 0.9},
        {"beta": 1.0, "smiles": "CCO", "reward": 0.2},
        {"beta": 8.0, "smiles": "OCC", "reward": 0.9},
        {"beta": 1.0, "smiles": "c1ccccc1", "reward": 0.4},
        {"beta": 1.0, "smiles": "CCN", "reward": 0.6, "num_fragments": 2},
    ]
    low, high = M.temperature_response(rows, k=2)
    assert low["beta"] == 1.0 and low["n"] == 3 and low["unique_fraction"] == 1.0 and low["top_k"] == 2
    assert low["mean_reward"] == pytest.approx(0.4) and low["std_reward"] == pytest.approx(0.2)
    assert low["top_k_reward"] == pytest.approx(0.5)  # CCN and benzene
    assert low["top_k_diversity"] == pytest.approx(1 - _jaccard(_bits("CCN"), _bits("c1ccccc1")))
    # one molecule written two ways: a single distinct molecule, no pair for a diversity
    assert high["n"] == 2 and high["unique_fraction"] == 0.5 and high["std_reward"] == 0.0
    assert high["top_k"] == 1 and high["top_k_reward"] == pytest.approx(0.9) and math.isnan(high["top_k_diversity"])
    with pytest.raises(ValueError, match=r"row 1 lacks \['reward'\]"):
        M.temperature_response([rows[0], {"beta": 1.0, "smiles": "C"}])
    with pytest.raises(ValueError, match="no sample rows"):
        M.temperature_response([])
