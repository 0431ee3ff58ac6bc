"""Named tasks (lgfn_graph/task.py): each builds its env and reward."""
import pytest
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

