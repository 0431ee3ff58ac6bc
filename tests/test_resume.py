"""Exact resume: a run killed mid-training and resumed from its checkpoint matches one that was
never stopped, parameter for parameter and molecule for molecule."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lgfn_graph as L
from lgfn_graph.sampledb import SampleDB

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 24, 4

# The same run, as a script, so that it can be killed from outside.
RUN = f"""
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(ROOT / 'tests')!r})
from test_resume import make_trainer
tr = make_trainer(sys.argv[1])
if len(sys.argv) > 2:
    tr.load(sys.argv[2])
tr.train(progress=False)
"""


def make_trainer(out, steps: int = STEPS, replay: int = 64) -> L.Trainer:
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    torch.manual_seed(3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
    cfg = L.TrainConfig(steps=steps, batch_size=8, seed=5, epsilon=0.1, beta=L.BetaSampler(1.0, 16.0),
                        replay_capacity=replay, checkpoint_every=EVERY, tensorboard=False)
    return L.Trainer(env, gfn, L.QED(), cfg, out)


def _params(gfn) -> dict:
    return {k: v.clone() for k, v in gfn.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _samples(out: Path, after: int) -> list[tuple]:
    with SampleDB(out / "samples.db") as db:
        return [(r["step"], r["smiles"], r["reward"], r["beta"]) for r in db.rows(after + 1)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    tr = make_trainer(out)
    tr.train(progress=False)
    return out, _params(tr.gfn)


def test_resume_in_process_is_exact(tmp_path, uninterrupted):
    ref_out, ref = uninterrupted
    first = make_trainer(tmp_path, steps=10)  # stops at 10, saved at 8 and 10
    first.train(progress=False)
    tr = make_trainer(tmp_path).load(tmp_path / "checkpoint.pt")
    assert tr.step == 10 and len(tr.buffer) == 8 + 9 * 4  # a full batch, then half of each
    tr.train(progress=False)
    assert _same(_params(tr.gfn), ref)
    assert _samples(tmp_path, 10) == _samples(ref_out, 10)
    assert [m["step"] for m in map(eval_json, (tmp_path / "metrics.jsonl").read_text().splitlines())] == \
        list(range(1, STEPS + 1))


def eval_json(line):
    import json
    return json.loads(line)


def _start(out: Path, *args) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", RUN, str(out), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_step(proc: subprocess.Popen, metrics: Path, step: int, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read().decode()[-2000:]}")
        if metrics.exists() and len(metrics.read_text().splitlines()) >= step:
            return
        time.sleep(0.02)
    raise AssertionError("run did not reach the step in time")


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    ref_out, ref = uninterrupted
    proc = _start(tmp_path)
    _wait_for_step(proc, tmp_path / "metrics.jsonl", 2 * EVERY + 2)  # past a checkpoint, mid-interval
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = L.load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    assert EVERY <= saved < STEPS
    tr = make_trainer(tmp_path).load(tmp_path / "checkpoint.pt")
    tr.train(progress=False)
    assert _same(_params(tr.gfn), ref)
    assert _samples(tmp_path, saved) == _samples(ref_out, saved)
    assert [r["step"] for r in SampleDB(tmp_path / "samples.db").rows()] == \
        [r["step"] for r in SampleDB(ref_out / "samples.db").rows()]


def test_sigint_saves_a_checkpoint_then_exits(tmp_path):
    proc = _start(tmp_path)
    _wait_for_step(proc, tmp_path / "metrics.jsonl", 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"checkpoint saved" in err
    step = L.load_checkpoint(tmp_path / "checkpoint.pt")["step"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert step == len(lines) and step < STEPS  # saved at the step it stopped after


def test_resume_refuses_another_task_or_model(tmp_path):
    make_trainer(tmp_path, steps=EVERY).train(progress=False)
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=5)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
    other = L.Trainer(env, gfn, L.QED(), L.TrainConfig(steps=8, batch_size=8, replay_capacity=64))
    with pytest.raises(L.CheckpointError, match="another task"):
        other.load(tmp_path / "checkpoint.pt")
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=32, num_layers=1, heads=2))
    with pytest.raises(L.CheckpointError, match=r"another model configuration \(differs in \['hidden'\]\)"):
        L.Trainer(env, gfn, L.QED(), L.TrainConfig(steps=8)).load(tmp_path / "checkpoint.pt")


def test_flipped_byte_is_caught_by_the_checksum(tmp_path):
    make_trainer(tmp_path, steps=EVERY).train(progress=False)
    data = bytearray((tmp_path / "checkpoint.pt").read_bytes())
    for where in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        bad = bytearray(data)
        bad[where] ^= 0x40
        (tmp_path / "bad.pt").write_bytes(bytes(bad))
        with pytest.raises(L.CheckpointError, match="corrupted"):
            L.load_checkpoint(tmp_path / "bad.pt")
