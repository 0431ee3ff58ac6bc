"""Named tasks (lgfn_graph/task.py): each builds its env and reward."""
import csv
import json

import pytest
import torch
import yaml

import lgfn_graph as L
from lgfn_graph.config import to_dict
from lgfn_graph.task import TaskConfig, build_task


def test_tasks_build_their_env_and_reward(monkeypatch):
    env, reward = build_task(TaskConfig("tiny_frag"))
    assert env.library.num_fragments == 4 and env.max_fragments == 3 and isinstance(reward, L.QED)
    env, reward = build_task(TaskConfig("qed_frag", max_fragments=5, reward="qed"))
    assert env.library.num_fragments == L.FragmentLibrary.default().num_fragments and env.max_fragments == 5
    assert isinstance(reward, L.QED)
    monkeypatch.delenv("LGFN_FRAGMENTS_72", raising=False)
    with pytest.raises(L.FragmentLibraryError, match="task.fragments.*LGFN_FRAGMENTS_72"):
        build_task(TaskConfig("seh_frag"))
    assert yaml.safe_load(yaml.safe_dump(to_dict(TaskConfig()))) == to_dict(TaskConfig())



# a user's reward module, written into a temporary folder on sys.path; importing it leaves a mark
USER_REWARDS = '''\
from pathlib import Path
import torch
import lgfn_graph as L

Path(__file__).with_name("imported").write_text("yes")

def heavy_atoms(mols):
    """A reward function: 1 / (1 + heavy atoms)."""
    return torch.tensor([1.0 / (1 + m.GetNumHeavyAtoms()) for m in mols], dtype=torch.float64)

qed_times_half = L.WeightedSum([L.QED()], [0.5])

class QEDSquared:
    def __call__(self, mols):
        return L.QED()(mols) ** 2

class NeedsArgs:
    def __init__(self, scale):
        self.scale = scale

not_a_reward = 3
'''


@pytest.fixture
def user_rewards(tmp_path, monkeypatch):
    """The name of a fresh user module on sys.path, and the file its import creates."""
    name = f"user_rewards_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, tmp_path / "imported"


def _mols():
    from rdkit import Chem
    return [Chem.MolFromSmiles(s) for s in ("CCO", "c1ccccc1C(=O)O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O")]


def test_an_import_path_reward_is_a_function_an_object_or_a_class_built_with_no_arguments(user_rewards):
    name, _ = user_rewards
    mols = _mols()
    heavy = torch.tensor([1 / 4, 1 / 10, 1 / 16], dtype=torch.float64)
    qed = L.QED()(mols)
    for attr, expected in (("heavy_atoms", heavy), ("qed_times_half", 0.5 * qed), ("QEDSquared", qed ** 2)):
        env, reward = build_task(TaskConfig("qed_frag", reward=f"{name}:{attr}"))
        torch.testing.assert_close(torch.as_tensor(reward(mols), dtype=torch.float64),
                                   expected.to(torch.float64), rtol=0, atol=1e-12)


def test_an_import_path_reward_is_checked_for_its_form_when_configured_and_imported_only_when_built(user_rewards):
    name, marker = user_rewards
    cfg = TaskConfig("qed_frag", reward=f"{name}:heavy_atoms")
    assert not marker.exists()  # configuring (and from_dict of a recorded config) runs no user code
    assert L.config.from_dict(TaskConfig, to_dict(cfg)) == cfg
    assert not marker.exists()
    build_task(cfg)
    assert marker.read_text() == "yes"
    for bad in ("my rewards:fn", "module.fn", "mod:", ":fn", "mod:fn.attr", "mod:1x"):
        with pytest.raises(ValueError, match=r"TaskConfig.reward must be one of .*an import path 'package.module:name'"):
            TaskConfig("qed_frag", reward=bad)


@pytest.mark.parametrize("attr, message", [
    ("missing", r"cannot import '{name}:missing' \(AttributeError"),
    ("NeedsArgs", r"'{name}:NeedsArgs' is a class and could not be built with no arguments \(TypeError"),
    ("not_a_reward", r"'{name}:not_a_reward' is a int, not a reward"),
])
def test_an_import_path_reward_that_cannot_be_used_is_named_with_the_cause(user_rewards, attr, message):
    name, _ = user_rewards
    with pytest.raises(ValueError, match=r"TaskConfig\.reward " + message.format(name=name)):
        build_task(TaskConfig("qed_frag", reward=f"{name}:{attr}"))
    with pytest.raises(ValueError, match=r"TaskConfig\.reward cannot import 'no_such_module_xyz:f' \(ModuleNotFoundError.*"
                                         r"is its folder on PYTHONPATH\?"):
        build_task(TaskConfig("qed_frag", reward="no_such_module_xyz:f"))


def test_lgfn_trains_and_studies_with_an_import_path_reward(user_rewards, tmp_path, capsys):
    from lgfn_graph.cli import main

    name, _ = user_rewards
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "typo"), f"task.reward={name}:heavy_atom"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lgfn: error: TaskConfig.reward cannot import '{name}:heavy_atom' (AttributeError") \
        and err.count("\n") == 1, err
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", "task.name=tiny_frag", f"task.reward={name}:heavy_atoms",
                 "model.hidden=16", "model.num_layers=1", "train.steps=2", "train.batch_size=4",
                 "train.tensorboard=false", "eval.betas=1", "eval.n=6"]) == 0
    from rdkit import Chem
    rows = list(csv.DictReader(open(out / "samples.csv")))
    assert len(rows) == 6
    for r in rows:
        assert float(r["reward"]) == pytest.approx(1 / (1 + Chem.MolFromSmiles(r["smiles"]).GetNumHeavyAtoms()))
    study = tmp_path / "study"
    assert main(["study", "mode_seeking", "--quick", "--no-progress", "--modes", "logit", "--out", str(study),
                 f"task.reward={name}:heavy_atoms", "mode_criteria.reward_scale=0.25"]) == 0
    result = json.loads((study / "runs" / "logit" / "seed0" / "result.json").read_text())
    assert result["settings"]["task"]["reward"] == f"{name}:heavy_atoms"
    assert 0 < result["max_reward"] <= 0.5  # 1 / (1 + heavy atoms) of molecules of at least one atom
