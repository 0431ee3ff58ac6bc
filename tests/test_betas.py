"""The trained beta range and the warning when a model is sampled far outside it."""
import warnings

import pytest

import lgfn_graph as L
from lgfn_graph.betas import BetaRangeWarning, trained_range
from lgfn_graph.task import TINY_FRAGMENTS


@pytest.mark.parametrize("beta, expected", [
    (L.BetaSampler(1.0, 32.0), (1.0, 32.0)),
    (L.BetaSampler.constant(4.0), (4.0, 4.0)),
    (4, (4.0, 4.0)),
    ({"low": 1.0, "high": 8.0, "kind": "log_uniform"}, (1.0, 8.0)),
    ({"low": 3.0, "high": 9.0, "kind": "constant"}, (3.0, 3.0)),
    ({"kind": "uniform"}, None),
    (None, None),
])
def test_trained_range_reads_a_sampler_its_record_or_a_number(beta, expected):
    assert trained_range(beta) == expected


def _far_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, BetaRangeWarning)]


@pytest.fixture
def trained(tmp_path):
    """A model given to a Trainer at beta ~ U[2, 8] (so its range is [1, 16] before it warns),
    and a checkpoint of it."""
    env = L.FragmentEnv(L.FragmentLibrary.from_pairs(TINY_FRAGMENTS), max_fragments=2)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    trainer = L.Trainer(env, gfn, L.QED(), L.TrainConfig(beta=L.BetaSampler(2.0, 8.0), sample_db=False,
                                                         tensorboard=False))
    return gfn, env, trainer.save(tmp_path / "checkpoint.pt")


def test_sampling_far_outside_the_trained_range_warns_once_per_model(trained):
    gfn, env, _ = trained
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for beta in (1.0, 4.0, 16.0):  # the edges low / 2 and 2 * high are inside
            L.sample_molecules(gfn, env, L.QED(), beta, 2, batch_size=1)
        assert _far_warnings(record) == []
        L.sample_molecules(gfn, env, L.QED(), 17.0, 3, batch_size=1)  # three batches, one warning
        L.sample_molecules(gfn, env, L.QED(), 0.25, 1)
    [message] = _far_warnings(record)
    assert "beta 17" in message and "trained at beta in [2, 8]" in message and "[1, 16]" in message


def test_a_loaded_model_knows_its_range_and_a_sweep_warns_once(trained, tmp_path):
    gfn, env, _ = L.load_model(trained[2])
    assert gfn.trained_beta_range == (2.0, 8.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        L.temperature_sweep(gfn, env, L.QED(), [0.5, 4.0, 20.0], 1, tmp_path / "sweep")
    [message] = _far_warnings(record)
    assert message.startswith("sampling at beta 0.5, 20,")


def test_a_model_of_unknown_range_never_warns():
    env = L.FragmentEnv(L.FragmentLibrary.from_pairs(TINY_FRAGMENTS), max_fragments=2)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BetaRangeWarning)
        L.sample_molecules(gfn, env, L.QED(), 1e4, 1)
