import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))  # so tests can import tasks/
# Test models are tiny: one thread is as fast and does not thrash a shared 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"public data folder {SHARED} not present")
    return SHARED


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A real 2-step tiny_frag run folder (config.yaml, checkpoint.pt, samples) from the CLI;
    shared by every test that needs a trained checkpoint: read it, never write into it."""
    from lgfn_graph.cli import main

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    assert main(["train", "--out", str(out), "--no-progress", "task.name=tiny_frag", "model.hidden=16",
                 "model.num_layers=1", "train.steps=2", "train.batch_size=4", "train.tensorboard=false",
                 "eval.betas=1,4", "eval.n=4"]) == 0
    return out


def disturb_global_rng() -> None:
    """Draw from torch's global RNG, so that a result compared across it must follow from the
    seed it was given, not from global state."""
    torch.rand(97)


@pytest.fixture(scope="module")
def tiny_model():
    """``(env, reward, gfn)``: the tiny_frag task and an untrained 2x16 model, seeded."""
    import lgfn_graph as L
    from tasks.tiny_frag import make_task

    torch.manual_seed(0)
    env, reward = make_task()
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=2, heads=2))
    return env, reward, gfn
