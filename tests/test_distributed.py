"""Data-parallel training: two CPU processes under torchrun (gloo) keep identical parameters,
sample different trajectories, and lower the loss; only rank 0 writes files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import json, sys, torch
torch.set_num_threads(1)
import lgfn_graph as L
from lgfn_graph import distributed as D
rank, world = D.init_from_env("cpu")
env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=4)
torch.manual_seed(100 + rank)  # different initialisations: DDP must broadcast rank 0's
gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=2))
cfg = L.TrainConfig(steps=40, batch_size=16, lr=2e-3, lr_log_z=0.1, seed=7, beta=L.BetaSampler(1.0, 2.0),
                    tensorboard=False)
tr = L.Trainer(env, gfn, L.QED(), cfg, sys.argv[1] + "/run")
first = []
tr.callbacks.append(lambda t, batch, m: first.append(batch.smiles) if t.step == 1 else None)
hist = tr.train(progress=False)
torch.save({"params": gfn.state_dict(), "losses": [m["loss"] for m in hist], "first": first[0],
            "world": world}, f"{sys.argv[1]}/rank{rank}.pt")
D.shutdown()
"""


def test_two_processes_stay_identical_and_learn(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), k
    assert r0["first"] != r1["first"]  # each rank samples its own trajectories
    assert r0["losses"] == r1["losses"]  # the reported loss is the mean over ranks
    losses = r0["losses"]
    assert sum(losses[-8:]) / 8 < 0.5 * sum(losses[:8]) / 8
    run = tmp_path / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 41))  # written once, by rank 0
    from lgfn_graph.sampledb import SampleDB
    with SampleDB(run / "samples.db") as db:
        rows = db.rows()
    assert len(rows) == 40 * 2 * 16 and {r["rank"] for r in rows} == {0, 1}
    # rank 0's lock (.lock) and files only
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "metrics.jsonl", "samples.db",
                                                      "samples.db-shm", "samples.db-wal"] or \
        sorted(p.name for p in run.iterdir()) == [".lock", "checkpoint.pt", "metrics.jsonl", "samples.db"]
