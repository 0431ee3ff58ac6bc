"""ParallelReward scores exactly what the reward scores in one process, in order, and never
loses a batch to its workers' troubles."""
import operator
import warnings

import pytest
import torch

import lgfn_graph as L
from lgfn_graph.config import to_dict
from lgfn_graph.parallel_reward import ParallelReward, parallel
from lgfn_graph.resume import check_resumable
from lgfn_graph.rewards import LogP, RewardError, qed_sa, score_molecules
from lgfn_graph.studies.mode_seeking import ModeSeekingConfig
from lgfn_graph.studies.offline_generalization import OfflineGeneralizationConfig
from lgfn_graph.task import TaskConfig, build_reward


@pytest.fixture(scope="module")
def mols():
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=6)
    terminal = L.sampler.uniform_sampler(env)(48, torch.Generator().manual_seed(0))
    return [env.to_mol(terminal, i) for i in range(48)]


class CarbonCount:
    """Carbon atoms per molecule; raises on a batch with a fluorine atom (a reward that fails)."""

    def __call__(self, mols):
        if any(a.GetSymbol() == "F" for m in mols for a in m.GetAtoms()):
            raise ValueError("no fluorine, please")
        return [sum(a.GetSymbol() == "C" for a in m.GetAtoms()) for m in mols]


class PropReader:
    """Reads a property the caller set on each molecule."""

    def __call__(self, mols):
        return [m.GetDoubleProp("score") for m in mols]


class FailsToLoad(LogP):
    """Pickles, but unpickling it raises (as a class living in a script's ``__main__`` does in a
    spawned worker)."""

    def __reduce__(self):
        return operator.truediv, (1, 0)


def test_chunks_are_contiguous_cover_the_batch_and_respect_min_chunk():
    p = ParallelReward(LogP(), workers=3, min_chunk=8)
    assert p._chunks(64) == [(0, 21), (21, 43), (43, 64)]
    assert p._chunks(20) == [(0, 10), (10, 20)]  # only two chunks of >= 8
    assert p._chunks(15) == [(0, 15)] and p._chunks(0) == [(0, 0)]
    for n in range(0, 100):
        chunks = p._chunks(n)
        assert chunks[0][0] == 0 and chunks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        sizes = [b - a for a, b in chunks]
        assert len(chunks) == 1 or (min(sizes) >= 8 and max(sizes) - min(sizes) <= 1)
        assert len(chunks) <= 3


def test_scores_equal_the_reward_in_one_process_in_order(mols):
    # LogP is different for nearly every molecule, so any reordering of chunks shows
    logp, default = LogP(), qed_sa()
    with ParallelReward(logp, workers=3, min_chunk=4) as p, ParallelReward(default, workers=2) as q:
        assert torch.equal(p(mols), logp(mols))
        assert torch.equal(q(mols), default(mols))
        assert torch.equal(q(mols[:17]), default(mols[:17]))  # two chunks of 8 and 9
        assert p._pool is not None and q._pool is not None  # it did use workers
    assert p._pool is None  # the with block stopped them


def test_small_batches_are_scored_in_this_process(mols):
    p = ParallelReward(LogP(), workers=2, min_chunk=8)
    assert torch.equal(p(mols[:15]), LogP()(mols[:15]))
    assert p._pool is None


def test_molecule_properties_reach_the_workers(mols):
    copies = [L.rewards.Chem.Mol(m) for m in mols[:16]]
    for i, m in enumerate(copies):
        m.SetDoubleProp("score", i / 4)
    with ParallelReward(PropReader(), workers=2) as p:
        assert p(copies).tolist() == [i / 4 for i in range(16)]


def test_a_failing_molecule_is_named_as_without_workers(mols):
    fluorine = L.rewards.Chem.MolFromSmiles("CCF")
    batch = mols[:20] + [fluorine] + mols[20:30]
    with ParallelReward(CarbonCount(), workers=2) as p:
        with pytest.raises(ValueError, match="no fluorine"):
            p(batch)
        with pytest.raises(RewardError, match="molecule 20: CCF"):
            score_molecules(p, batch)
        scored = score_molecules(p, batch, on_error="floor")
    plain = score_molecules(CarbonCount(), batch, on_error="floor")
    assert torch.equal(scored.log_reward, plain.log_reward) and torch.equal(scored.invalid, plain.invalid)
    assert scored.invalid[20] and len(scored.messages) == len(plain.messages) > 1


def test_an_unpicklable_reward_is_refused_by_name():
    with pytest.raises(ValueError, match="cannot be sent to worker processes.*reward_workers=0"):
        ParallelReward(lambda mols: [1.0] * len(mols), workers=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            ParallelReward(LogP(), workers=bad)


def test_workers_that_cannot_load_the_reward_fall_back_to_this_process_once(mols):
    p = ParallelReward(FailsToLoad(), workers=2)
    with pytest.warns(RuntimeWarning, match="cannot unpickle the reward.*ZeroDivisionError.*from now on"):
        first = p(mols)
    assert torch.equal(first, LogP()(mols)) and p.in_process_reason is not None and p._pool is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, no new workers
        assert torch.equal(p(mols), LogP()(mols)) and p._pool is None


def test_no_processes_here_means_scoring_in_this_process(mols, monkeypatch):
    def no_semaphores(*args, **kwargs):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(L.parallel_reward, "ProcessPoolExecutor", no_semaphores)
    p = ParallelReward(LogP(), workers=2)
    with pytest.warns(RuntimeWarning, match="cannot start worker processes.*OSError.*from now on"):
        assert p.start() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(p(mols), LogP()(mols)) and p.start() is None


def test_a_dead_worker_costs_a_warning_not_the_batch(mols):
    with ParallelReward(LogP(), workers=2) as p:
        p.start()
        p(mols)  # the workers are up
        for proc in list(p._pool._processes.values()):
            proc.kill()
            proc.join()
        with pytest.warns(RuntimeWarning, match="a worker process died"):
            assert torch.equal(p(mols), LogP()(mols))
        assert torch.equal(p(mols), LogP()(mols)) and p._pool is not None  # new workers


def test_task_config_reward_workers(monkeypatch):
    started = []
    monkeypatch.setattr(ParallelReward, "start", lambda self: started.append(self))
    assert build_reward(TaskConfig(name="tiny_frag")).__class__ is L.QED and not started
    p = build_reward(TaskConfig(name="tiny_frag", reward_workers=2))
    assert isinstance(p, ParallelReward) and p.workers == 2 and isinstance(p.reward, L.QED)
    assert started == [p]  # the workers import while the caller builds its model
    assert parallel(LogP(), 1).__class__ is LogP
    with pytest.raises(ValueError, match="TaskConfig.reward_workers must be an integer >= 0"):
        TaskConfig(reward_workers=-1)
    # a resume may change it: the scores do not depend on it
    old, new = {"task": to_dict(TaskConfig())}, {"task": to_dict(TaskConfig(reward_workers=4))}
    assert check_resumable("ckpt", old, new) == ["task.reward_workers 0 -> 4"]
    # nor is it a study setting: a study's runs made with and without workers report together
    for study in (ModeSeekingConfig, OfflineGeneralizationConfig):
        settings = study(task=TaskConfig(reward_workers=3)).settings()
        assert settings == study().settings() and "reward_workers" not in settings["task"]


def test_training_with_reward_workers_is_bit_identical(tmp_path):
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    params, losses = [], []
    for workers in (0, 2):
        torch.manual_seed(3)
        gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
        cfg = L.TrainConfig(steps=3, batch_size=16, seed=5, beta=L.BetaSampler(1.0, 16.0), tensorboard=False)
        reward = parallel(qed_sa(), workers)
        history = L.Trainer(env, gfn, reward, cfg, tmp_path / str(workers)).train(progress=False)
        if workers:
            assert reward._pool is not None
            reward.close()
        params.append(gfn.state_dict())
        losses.append([h["loss"] for h in history])
    assert losses[0] == losses[1]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])
