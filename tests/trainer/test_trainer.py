"""The trainer's parts: batch sources, the objective registry, outputs, and its random streams
(the global torch RNG is never changed; a model's dropout still trains reproducibly)."""
import json

import pytest
import torch

import lgfn_graph as L
from lgfn_graph.losses import trajectory_balance
from lgfn_graph.trainer import batches, objectives
from lgfn_graph.trainer.outputs import RunOutputs
from tasks.tiny_frag import make_task


@pytest.fixture(scope="module")
def task():
    env, reward = make_task()
    return env, reward


def _model(env, **kw):
    torch.manual_seed(0)
    return L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1, **kw))


def _config(**kw):
    return L.TrainConfig(**{"steps": 4, "batch_size": 8, "seed": 3, "sample_db": False, "tensorboard": False,
                            "beta": L.BetaSampler(1.0, 8.0), **kw})


# -- batch sources -------------------------------------------------------------------------------

def test_the_sources_follow_the_settings(task):
    env, reward = task
    tr = L.Trainer(env, _model(env), reward, _config())
    assert isinstance(tr.sampled, batches.OnPolicy) and tr.stored is None
    tr = L.Trainer(env, _model(env), reward, _config(explore_beta=2.0, replay_capacity=16))
    assert isinstance(tr.sampled, batches.ExploreBeta) and isinstance(tr.stored, batches.Replay)
    with torch.no_grad():
        x = L.sample_trajectories(tr.gfn, env, torch.ones(5), 0.5, torch.Generator().manual_seed(1)).terminal
    data = L.ReplayBuffer.from_states(x, torch.zeros(5))
    tr = L.Trainer(env, _model(env), None, _config(), dataset=data)
    assert tr.sampled is None and isinstance(tr.stored, batches.Offline)


def test_replay_fills_its_fraction_once_it_holds_a_batch(task):
    env, reward = task
    tr = L.Trainer(env, _model(env), reward, _config(replay_capacity=64, replay_fraction=0.25))
    first = tr.collect()
    assert first.num_sampled == 8 and first.terms is not None  # the whole batch on-policy: gradients kept
    assert len(tr.buffer) == 8 - first.invalid
    second = tr.collect()
    assert second.num_sampled == 6 and len(second.trajectories) == 8 and second.terms is None
    assert len(second.smiles) == 0  # no callbacks, no folder: SMILES are not recorded
    # the stored part is walked backwards at the batch's own betas
    assert torch.equal(second.trajectories.beta[6:], second.beta[6:])


def test_explore_beta_samples_at_its_own_betas_and_trains_at_the_loss_betas(task):
    env, reward = task
    tr = L.Trainer(env, _model(env), reward, _config(explore_beta=50.0))
    batch = tr.collect()
    assert batch.terms is None and torch.all(batch.trajectories.beta == 50.0)
    assert batch.beta.min() >= 1.0 and batch.beta.max() <= 8.0


def test_offline_training_never_samples(task, monkeypatch):
    env, _ = task
    gfn = _model(env)
    with torch.no_grad():
        x = L.sample_trajectories(gfn, env, torch.ones(12), 0.5, torch.Generator().manual_seed(2)).terminal

    def never(*a, **k):
        raise AssertionError("the policy sampled")

    monkeypatch.setattr(batches, "sample_trajectories", never)
    monkeypatch.setattr(batches, "sample_and_evaluate", never)
    tr = L.Trainer(env, gfn, None, _config(), dataset=L.ReplayBuffer.from_states(x, torch.zeros(12)))
    batch = tr.collect()
    assert batch.num_sampled == 0 and len(batch.trajectories) == 8 and batch.smiles == [] and batch.invalid == 0


def test_join_lays_parts_end_to_end(task):
    env, reward = task
    gfn = _model(env)
    g = torch.Generator().manual_seed(0)
    on = batches.OnPolicy(gfn, env, reward, 0.1, 1e-8, "raise", True, backprop=False)
    a = on.draw(torch.full((3,), 2.0), g, 0.0, whole=False)
    store = L.ReplayBuffer.from_states(a.trajectories.terminal, a.log_reward)
    b = batches.Replay(store, env, 0.5).draw(torch.full((2,), 4.0), g)
    c = batches.Collected.join([a, b], torch.tensor([2.0, 2.0, 2.0, 4.0, 4.0]), env)
    assert c.num_sampled == 3 and len(c.trajectories) == 5 and len(c.smiles) == 3 and c.terms is None
    assert torch.equal(c.log_reward, torch.cat([a.log_reward, b.log_reward]))


# -- objectives ----------------------------------------------------------------------------------

def test_the_registry_holds_the_objectives_a_config_accepts():
    assert tuple(objectives.REGISTRY) == L.OBJECTIVES
    with pytest.raises(ValueError, match=r"unknown objective 'xb': expected one of \('tb', 'db', 'subtb'\)"):
        objectives.resolve("xb", _config())
    assert objectives.resolve("subtb", _config(subtb_lambda=0.5)).lam == 0.5


def test_an_objective_needing_state_flows_refuses_a_model_without(task):
    env, reward = task
    with pytest.raises(ValueError, match="objective 'db' needs state flows"):
        L.Trainer(env, _model(env), reward, _config(objective="db"))


def test_the_target_gets_the_environments_correction(task):
    """TB with the env hook equals the brute-force loss with ``log_reward_correction`` added,
    and without the setting the hook is not read."""
    env, reward = task
    gfn = _model(env)
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, env, torch.full((6,), 3.0), 0.3, torch.Generator().manual_seed(4))
    log_r, beta = torch.linspace(-2.0, 0.0, 6), torch.full((6,), 3.0)

    class Shifted(type(env)):
        def log_reward_correction(self, states):
            return torch.full((len(states),), 0.75)

    shifted = Shifted._from_spec(env.spec())
    with torch.no_grad():
        got = L.Objective(gfn, shifted, _config())(traj, log_r, beta)
        off = L.Objective(gfn, shifted, _config(symmetry_correction=False))(traj, log_r, beta)
        terms = L.evaluate_trajectories(gfn, env, traj, beta)
        log_z = gfn.log_z(beta)
    assert torch.equal(got, trajectory_balance(log_z, terms.log_pf, terms.log_pb, log_r, beta, torch.full((6,), 0.75)))
    assert torch.equal(off, trajectory_balance(log_z, terms.log_pf, terms.log_pb, log_r, beta))


def test_a_registered_objective_trains(task):
    env, reward = task

    @objectives.register
    class Half(objectives.TrajectoryBalance):
        name = "half_tb"

        def __call__(self, *args):
            return 0.5 * super().__call__(*args)

    try:
        tr = L.Trainer(env, _model(env), reward, _config(objective="half_tb"))
        assert isinstance(tr.objective.balance, Half) and tr.train(progress=False)[-1]["step"] == 4
    finally:
        del objectives.REGISTRY["half_tb"]


def test_the_trainer_has_no_separate_loss_method():
    assert not hasattr(L.Trainer, "loss")


# -- outputs -------------------------------------------------------------------------------------

def test_outputs_write_what_they_are_given(tmp_path, task):
    env, reward = task
    tr = L.Trainer(env, _model(env), reward, _config())
    tr.sampled.record_smiles = True
    batch = tr.collect()
    m = {"step": 1, "loss": 0.5}
    with RunOutputs(tmp_path, 0, sample_db=True, tensorboard=False, gather_samples=True) as out:
        out.record(batch, m)
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [m]
    with L.SampleDB(tmp_path / "samples.db") as db:
        assert [r["smiles"] for r in db.rows()] == batch.smiles
    with RunOutputs(None, 0, sample_db=True, tensorboard=True, gather_samples=True) as out:
        out.record(batch, m)  # no folder: nothing written, nothing fails


# -- random streams ------------------------------------------------------------------------------

def _dropout_trainer(env, reward, out=None, steps=6):
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=1, backbone="gat",
                                                         backbone_kwargs={"dropout": 0.5}))
    cfg = _config(steps=steps, checkpoint_every=3, tensorboard=False)
    return L.Trainer(env, gfn, reward, cfg, out)


def _params(gfn):
    return {k: v.clone() for k, v in gfn.state_dict().items()}


def test_training_leaves_the_global_rng_as_it_was_even_with_dropout(task):
    env, reward = task
    tr = _dropout_trainer(env, reward)
    before = torch.get_rng_state()
    tr.train_step()  # outside train(), the layers draw from the global RNG: dropout is live
    assert not torch.equal(torch.get_rng_state(), before)
    tr = _dropout_trainer(env, reward)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    tr.train(progress=False)
    assert torch.equal(torch.get_rng_state(), before)


def test_dropout_training_follows_the_seed_not_the_global_rng(task):
    env, reward = task
    a = _dropout_trainer(env, reward)
    torch.manual_seed(1)
    a.train(progress=False)
    b = _dropout_trainer(env, reward)
    torch.manual_seed(2)
    b.train(progress=False)
    pa, pb = _params(a.gfn), _params(b.gfn)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_dropout_training_resumes_exactly_and_load_leaves_the_global_rng(tmp_path, task):
    env, reward = task
    whole = _dropout_trainer(env, reward)
    whole.train(progress=False)
    first = _dropout_trainer(env, reward, tmp_path, steps=3)
    first.train(progress=False)
    resumed = _dropout_trainer(env, reward, tmp_path)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    resumed.load(tmp_path / "checkpoint.pt")
    assert torch.equal(torch.get_rng_state(), before)
    resumed.train(progress=False)
    pa, pb = _params(whole.gfn), _params(resumed.gfn)
    assert resumed.step == 6 and all(torch.equal(pa[k], pb[k]) for k in pa)
