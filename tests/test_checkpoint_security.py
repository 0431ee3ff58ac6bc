"""A crafted checkpoint cannot run code: every entry point refuses it, saying why, and the
code it carries never executes (here: unpickling would create a marker file)."""
import hashlib
import io

import pytest
import torch

import lgfn_graph as L
from lgfn_graph.checkpoint import FORMAT, FORMAT_VERSION
from lgfn_graph.cli import main


class _CreatesFile:
    """Unpickling this calls ``open(path, "w")``: a stand-in for any code a file could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _envelope(payload: bytes) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION,
            "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}


@pytest.fixture
def genuine(tiny_run):
    """A real 2-step tiny_frag run folder (config.yaml, checkpoint.pt) from the CLI (conftest)."""
    return tiny_run


def _crafted(genuine, tmp_path, where: str):
    """A copy of the genuine run whose checkpoint carries the payload in ``where``:
    ``"payload"`` (inside the checksummed payload, with a valid SHA-256) or ``"envelope"``."""
    marker = tmp_path / f"pwned_{where}"
    state = L.load_checkpoint(genuine / "checkpoint.pt")
    run = tmp_path / f"run_{where}"
    run.mkdir()
    (run / "config.yaml").write_bytes((genuine / "config.yaml").read_bytes())
    if where == "payload":
        state["extra"]["note"] = _CreatesFile(marker)
        buf = io.BytesIO()
        torch.save(state, buf)
        outer = _envelope(buf.getvalue())
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        outer = {**_envelope(buf.getvalue()), "note": _CreatesFile(marker)}
    torch.save(outer, run / "checkpoint.pt")
    return run, marker


@pytest.mark.parametrize("where", ["payload", "envelope"])
def test_no_entry_point_runs_a_crafted_checkpoint(genuine, tmp_path, capsys, where):
    run, marker = _crafted(genuine, tmp_path, where)
    ckpt = str(run / "checkpoint.pt")
    for load in (L.load_checkpoint, L.load_model):
        with pytest.raises(L.CheckpointError, match=r"refusing to load.*could run code.*GLOBAL io\.open"):
            load(ckpt)
    for argv in (["sample", "--checkpoint", ckpt, "--beta", "2", "--n", "2"],
                 ["evaluate", "--checkpoint", ckpt, "--betas", "1", "--n", "2", "--out", str(tmp_path / "ev")],
                 ["train", "--out", str(run), "--resume", "--no-progress"]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "refusing to load" in err and "Traceback" not in err, (argv, err)
    assert not marker.exists(), "unpickling ran code from the file"


def test_the_marker_would_be_created_by_an_unrestricted_load(genuine, tmp_path):
    """The attack is real: plain unpickling (weights_only=False) does create the file, so the
    test above would fail if any entry point loaded without the restricted unpickler."""
    run, marker = _crafted(genuine, tmp_path, "payload")
    outer = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.load(io.BytesIO(outer["payload"]), weights_only=False)
    assert marker.exists()


class _MakesDir:
    """Unpickling this calls ``os.mkdir``: torch blocks the whole module, in other words."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os
        return os.mkdir, (self.path,)


def test_blocked_module_and_junk_files_are_named(tmp_path):
    marker = tmp_path / "made_by_pickle"
    evil = tmp_path / "evil.pt"
    torch.save({"note": _MakesDir(marker)}, evil)
    with pytest.raises(L.CheckpointError, match=r"refusing to load.*GLOBAL (posix|nt)\.mkdir, module (posix|nt) is blocked"):
        L.load_checkpoint(evil)
    assert not marker.exists()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")  # the restricted unpickler fails inside struct.unpack on these four bytes
    with pytest.raises(L.CheckpointError, match="junk.pt: truncated or corrupted"):
        L.load_checkpoint(junk)


def test_payload_missing_entries_or_of_wrong_type(genuine, tmp_path):
    state = L.load_checkpoint(genuine / "checkpoint.pt")
    for key, value, message in (("env", None, "has no 'env' entry"), ("step", "3", "'step' is a str")):
        bad = dict(state)
        if value is None:
            del bad[key]
        else:
            bad[key] = value
        buf = io.BytesIO()
        torch.save(bad, buf)
        path = tmp_path / f"{key}.pt"
        torch.save(_envelope(buf.getvalue()), path)
        with pytest.raises(L.CheckpointError, match=message):
            L.load_checkpoint(path)


def test_replay_buffer_checkpoint_is_plain_tensors(tmp_path):
    """A run with a replay buffer checkpoints its states as plain tensors, and resumes them."""
    env = L.FragmentEnv(L.FragmentLibrary.default(), max_fragments=3)
    gfn = L.TemperatureGFlowNet.build(env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    cfg = L.TrainConfig(steps=3, batch_size=4, replay_capacity=16, sample_db=False, tensorboard=False)
    tr = L.Trainer(env, gfn, L.QED(), cfg, tmp_path)
    tr.train(progress=False)
    back = L.Trainer(env, gfn, L.QED(), cfg).load(tmp_path / "checkpoint.pt")
    assert len(back.buffer) == len(tr.buffer) and bool(back.buffer.states.equal(tr.buffer.states).all())
    assert torch.equal(back.buffer.log_reward, tr.buffer.log_reward)


# a module a crafted checkpoint could name; importing it (which runs its code) leaves a mark
_MARKING_MODULE = '''\
from pathlib import Path
import torch
from lgfn_graph.rewards import QED

Path(__file__).with_name("imported").write_text("yes")
reward = QED()
'''


def _naming_an_import_path(genuine, tmp_path, monkeypatch, where: str):
    """A copy of the genuine checkpoint, valid checksum and all, that names a module (on sys.path)
    as its backbone (``where="backbone"``) or its reward (``"reward"``); and the mark of its import."""
    name = f"marking_{where}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(_MARKING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    state = L.load_checkpoint(genuine / "checkpoint.pt")
    if where == "backbone":
        state["model_config"]["backbone"] = f"{name}:reward"
    else:
        state["extra"]["run_config"]["task"]["reward"] = f"{name}:reward"
    buf = io.BytesIO()
    torch.save(state, buf)
    path = tmp_path / f"{where}.pt"
    torch.save(_envelope(buf.getvalue()), path)
    return path, tmp_path / "imported"


def test_a_checkpoint_naming_an_import_path_imports_nothing_unless_trusted(genuine, tmp_path, monkeypatch, capsys):
    """Rebuilding a backbone or reward named by import path runs the named module's code, so a
    checkpoint from elsewhere may do it only with the user's explicit --trust-code."""
    path, marker = _naming_an_import_path(genuine, tmp_path, monkeypatch, "backbone")
    with pytest.raises(L.CheckpointError, match=r"names the backbone 'marking_backbone_.*:reward', an import path.*"
                                                r"trust_code=True \(lgfn sample / evaluate: --trust-code\)"):
        L.load_model(path)
    for argv in (["sample", "--checkpoint", str(path), "--beta", "2", "--n", "2"],
                 ["evaluate", "--checkpoint", str(path), "--betas", "1", "--n", "2", "--out", str(tmp_path / "ev")]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        assert "an import path" in capsys.readouterr().err
    assert not marker.exists()
    with pytest.raises(L.CheckpointError, match="is not a torch.nn.Module class"):
        L.load_model(path, trust_code=True)  # trusted: imported, then found not to be a backbone
    assert marker.exists()


def test_a_checkpoint_recording_an_import_path_reward_scores_with_it_only_when_trusted(genuine, tmp_path, monkeypatch,
                                                                                       capsys):
    path, marker = _naming_an_import_path(genuine, tmp_path, monkeypatch, "reward")
    sample = ["sample", "--checkpoint", str(path), "--beta", "2", "--n", "3", "--out", str(tmp_path / "s.csv")]
    capsys.readouterr()
    assert main(sample) == 2
    err = capsys.readouterr().err
    assert "records the reward 'marking_reward_" in err and "--trust-code" in err and "Traceback" not in err, err
    assert not marker.exists()
    assert main([*sample, "--task", "tiny_frag"]) == 0  # scoring with a named task's reward needs no trust
    assert not marker.exists()
    assert main([*sample, "--trust-code"]) == 0
    assert marker.exists() and (tmp_path / "s.csv").is_file()
