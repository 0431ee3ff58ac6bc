"""Trainer.update: a step with a non-finite loss or gradient changes nothing and is reported;
too many in a row stop training; a finite step is exactly the plain clipped Adam step."""
import copy
import math
import warnings

import pytest
import torch

import lgfn_graph as L
from tasks.tiny_frag import make_task


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    env, reward = make_task()
    return env, reward, L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))


def _trainer(task, **config) -> L.Trainer:
    env, reward, gfn = task
    cfg = L.TrainConfig(**{"steps": 10, "batch_size": 4, **config})
    return L.Trainer(env, copy.deepcopy(gfn), reward, cfg)


def _snapshot(t: L.Trainer) -> tuple[dict, dict]:
    return copy.deepcopy(t.gfn.state_dict()), copy.deepcopy(t.optimizer.state_dict())


def _assert_unchanged(t: L.Trainer, snapshot: tuple[dict, dict]) -> None:
    params, opt = snapshot
    assert all(torch.equal(params[k], v) for k, v in t.gfn.state_dict().items())
    now = t.optimizer.state_dict()["state"]
    assert now.keys() == opt["state"].keys()
    assert all(torch.equal(opt["state"][i][k], v) for i in now for k, v in now[i].items())
    assert all(p.grad is None for p in t.gfn.parameters())


def test_a_nan_reward_skips_the_step_and_changes_nothing(task):
    t = _trainer(task)
    t.train_step()  # Adam has state to keep
    before = _snapshot(t)
    batch = t.collect()
    batch.log_reward[1] = math.nan
    with pytest.warns(RuntimeWarning, match=r"step 2: optimizer step skipped, the loss is nan \(batch beta in \["):
        m = t.update(batch)
    assert m["skipped"] == 1 and m["step"] == 2 and math.isnan(m["loss"])
    _assert_unchanged(t, before)
    m = t.train_step()  # training goes on from the same parameters
    assert m["skipped"] == 0 and math.isfinite(m["loss"])
    assert not torch.equal(before[0]["log_z.mlp.5.bias"], t.gfn.state_dict()["log_z.mlp.5.bias"])


@pytest.mark.parametrize("grad_clip", [10.0, 0.0])
def test_an_infinite_gradient_skips_the_step(task, grad_clip):
    t = _trainer(task, grad_clip=grad_clip)
    t.train_step()
    before = _snapshot(t)
    hook = next(t.gfn.parameters()).register_hook(lambda g: torch.full_like(g, math.inf))
    try:
        with pytest.warns(RuntimeWarning, match="step 2: optimizer step skipped, the gradient norm is inf"):
            m = t.update(t.collect())
    finally:
        hook.remove()
    assert m["skipped"] == 1 and math.isfinite(m["loss"]) and m["grad_norm"] == math.inf
    _assert_unchanged(t, before)


def test_beta_1e30_stops_after_max_skipped_steps_with_the_parameters_intact(task):
    t = _trainer(task, beta=1e30, max_skipped_steps=3)
    before = _snapshot(t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(FloatingPointError, match=r"step 3: 3 steps in a row skipped as non-finite, the last as "
                                                     r"the loss is inf \(batch beta in \[1e\+30, 1e\+30\]\)"):
            t.train(progress=False)
    assert [str(w.message)[:7] for w in caught if w.category is RuntimeWarning] == ["step 1:"]  # warned once
    _assert_unchanged(t, before)


def test_a_finite_step_in_between_restarts_the_count(task):
    t = _trainer(task, max_skipped_steps=2)
    with pytest.warns(RuntimeWarning):
        for bad in (True, False, True):  # skipped, taken, skipped: never two in a row
            batch = t.collect()
            batch.log_reward[0] = math.nan if bad else batch.log_reward[0]
            assert t.update(batch)["skipped"] == bad
        batch = t.collect()
        batch.log_reward[0] = math.inf
        with pytest.raises(FloatingPointError, match="step 4: 2 steps in a row"):
            t.update(batch)


def test_a_finite_step_is_the_plain_clipped_adam_step(task):
    env, _, _ = task
    t = _trainer(task, grad_clip=0.5, backprop_through_sampling=False)
    t.train_step()
    batch = t.collect()
    model = copy.deepcopy(t.gfn)
    opt = torch.optim.Adam(model.parameter_groups(t.config.lr, t.config.lr_log_z), fused=True)
    opt.load_state_dict(copy.deepcopy(t.optimizer.state_dict()))  # load_state_dict would share its tensors
    L.Objective(model, env, t.config)(batch.trajectories, batch.log_reward, batch.beta).mean().backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
    m = t.update(batch)
    assert m["skipped"] == 0 and m["grad_norm"] == norm.item() > 0.5  # the clip was active
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), t.gfn.state_dict().values()))
