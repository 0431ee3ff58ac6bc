"""A run folder is one run's and one process's: the lock, exact records after a crash at any
moment, signals, resume rules, and the file system's errors on one line.

Runs that get killed or signalled are forked from this process (already importing torch),
which costs a fraction of a second where a fresh interpreter costs seconds."""
import dataclasses
import errno
import fcntl
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

import lgfn_graph as L
from lgfn_graph.cli import main
from lgfn_graph.files import atomic_write
from lgfn_graph.runfolder import RunFolderBusy, RunFolderError, RunFolderLock
from lgfn_graph.sampledb import SampleDB
from lgfn_graph.trainer import TrainingInterrupted
from lgfn_graph.trainer.outputs import truncate_metrics
from tests.test_cli import _user_error
from tests.test_resume import EVERY, STEPS, _params, _same, _wait_for_step, make_trainer
from tests.test_resume import uninterrupted  # noqa: F401  (a fixture: the same run, never stopped)

# a tiny run through the command line
CLI = ["--no-progress", "task.name=tiny_frag", "model.hidden=16", "model.num_layers=1", "train.batch_size=4",
       "train.tensorboard=false", "eval.betas=1", "eval.n=2"]


class _Forked:
    """``fn()`` in a forked child that exits with its return value, its output in ``log``.
    Offers what test_resume's helpers use of a ``Popen``."""

    def __init__(self, fn, log: Path):
        log.write_text("")
        self.returncode = None
        self.pid = os.fork()
        if self.pid == 0:
            _child(fn, log)
        self.stderr = open(log, "rb")

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 120):
        t0 = time.time()
        while self.poll() is None:
            if time.time() - t0 > timeout:
                os.kill(self.pid, signal.SIGKILL)
                raise AssertionError("the child did not end in time")
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, signum):
        os.kill(self.pid, signum)

    def output(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode()


def _child(fn, log: Path):
    """Never returns into pytest."""
    code = 70
    try:
        out = open(log, "w", buffering=1)
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout = sys.stderr = out
        torch.set_num_threads(1)
        code = fn()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _train(out: Path, steps: int = STEPS, die_after: int | None = None, partial_line: bool = False,
           die_replacing_checkpoint_at: int | None = None):
    """A run of test_resume's trainer into ``out`` (resuming its checkpoint if there is one), as
    a function for :class:`_Forked`: exits 128 + signal when stopped by one. It can SIGKILL
    itself after step ``die_after`` (first writing half a metrics line when ``partial_line``),
    or while it renames a new checkpoint over the old one at ``die_replacing_checkpoint_at``."""
    def run() -> int:
        tr = make_trainer(out, steps)
        if (out / "checkpoint.pt").is_file():
            tr.load(out / "checkpoint.pt")
        if die_after is not None:
            tr.callbacks.append(lambda t, b, m: m["step"] == die_after and _kill_after(out, partial_line))
        if die_replacing_checkpoint_at is not None:
            replace = os.replace

            def dying_replace(src, dst):
                if str(dst).endswith("checkpoint.pt") and tr.step == die_replacing_checkpoint_at:
                    _die()
                replace(src, dst)
            os.replace = dying_replace
        try:
            tr.train(progress=False)
        except TrainingInterrupted as e:
            print(e, file=sys.stderr)
            return 128 + e.signum
        return 0
    return run


def _kill_after(out: Path, partial_line: bool):
    if partial_line:
        with open(out / "metrics.jsonl", "a") as f:
            f.write('{"step": 99, "loss": 0.12')
    _die()


def _start(fn, tmp_path: Path) -> _Forked:
    return _Forked(fn, tmp_path / f"child{time.monotonic_ns()}.log")


def _metrics(out: Path) -> list[dict]:
    """The metrics lines without their timings (which differ between runs)."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time_")} for line in lines]


def _all_samples(out: Path) -> list[dict]:
    with SampleDB(out / "samples.db") as db:
        return db.rows()


def _locked(folder: Path) -> bool:
    """Whether some open file holds the folder's lock (this process's trainers included)."""
    with open(folder / ".lock") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- the lock -------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_first_and_sigterm_saves(tmp_path, capsys):
    out = tmp_path / "run"
    child = _start(_train(out, steps=400), tmp_path)
    _wait_for_step(child, out / "metrics.jsonl", EVERY + 1)  # a checkpoint exists
    assert _locked(out)
    with pytest.raises(RunFolderBusy, match=f"in use by another process \\(pid {child.pid} on "):
        make_trainer(out).train(progress=False)
    with pytest.raises(RunFolderBusy, match=f"pid {child.pid}"):
        make_trainer(out).load(out / "checkpoint.pt")
    err = _user_error(capsys, ["train", "--out", str(out), "--resume", "--no-progress"])
    assert f"pid {child.pid}" in err

    child.send_signal(signal.SIGTERM)
    assert child.wait() == 128 + signal.SIGTERM, child.output()
    assert "stopped by SIGTERM at step" in child.output()
    steps = [m["step"] for m in _metrics(out)]
    assert steps == list(range(1, len(steps) + 1))  # the refused writers cut nothing
    assert L.load_checkpoint(out / "checkpoint.pt")["step"] == len(steps) < 400
    assert not _locked(out)  # freed with its process


def test_the_lock_is_held_while_training_and_freed_when_it_ends_or_raises(tmp_path):
    seen = []
    tr = make_trainer(tmp_path, steps=2)
    tr.callbacks.append(lambda t, b, m: seen.append(_locked(tmp_path)))
    tr.train(progress=False)
    assert seen == [True, True] and not _locked(tmp_path)

    def fail(t, b, m):
        raise RuntimeError("a callback failed")
    tr = make_trainer(tmp_path, steps=4).load(tmp_path / "checkpoint.pt")
    assert _locked(tmp_path)  # load takes it: it drops records, which train then redoes
    tr.callbacks.append(fail)
    with pytest.raises(RuntimeError, match="a callback failed"):
        tr.train(progress=False)
    assert not _locked(tmp_path)
    make_trainer(tmp_path, steps=4).load(tmp_path / "checkpoint.pt").close()
    assert not _locked(tmp_path)


def test_a_fresh_trainer_does_not_overwrite_another_runs_checkpoint(tmp_path):
    make_trainer(tmp_path, steps=2).train(progress=False)
    with pytest.raises(RunFolderError, match="holds the checkpoint of another run"):
        make_trainer(tmp_path, steps=2).train(progress=False)
    assert [m["step"] for m in _metrics(tmp_path)] == [1, 2]


def test_stale_temporaries_go_when_the_folder_is_taken(tmp_path):
    for name in (".checkpoint.pt.k2j_x9a1.tmp", ".metrics.jsonl.0123abcd.tmp", "mine.tmp", ".notes.tmp"):
        (tmp_path / name).write_text("x")
    with RunFolderLock(tmp_path):
        assert _temporaries(tmp_path) == [".notes.tmp", "mine.tmp"]  # only atomic_write's names


# -- records after a crash ------------------------------------------------------------------------
def test_a_rerun_after_a_crash_before_the_first_checkpoint_writes_each_step_once(tmp_path, uninterrupted):
    ref_out, ref = uninterrupted
    child = _start(_train(tmp_path, die_after=EVERY - 1, partial_line=True), tmp_path)
    assert child.wait() == -signal.SIGKILL
    assert not (tmp_path / "checkpoint.pt").exists()
    assert {r["step"] for r in _all_samples(tmp_path)} == set(range(1, EVERY))
    tr = make_trainer(tmp_path)  # a rerun: nothing to load
    tr.train(progress=False)
    assert _same(_params(tr.gfn), ref)
    assert _metrics(tmp_path) == _metrics(ref_out)
    assert _all_samples(tmp_path) == _all_samples(ref_out)


def test_truncating_metrics_drops_a_partial_line_and_never_glues_the_next(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    truncate_metrics(path, 5)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
    path.write_text('{"step": 1}\n{"step": 2}')  # a whole last line, killed before its newline
    truncate_metrics(path, 1)
    assert path.read_text() == '{"step": 1}\n'


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_records(tmp_path, uninterrupted):
    """Kills before the first checkpoint, while a checkpoint replaces the last, halfway through a
    metrics line, and at random moments (seeded) past a random step; a resume after each."""
    ref_out, ref = uninterrupted
    out = tmp_path / "run"
    out.mkdir()
    plans = [dict(die_after=2), dict(die_replacing_checkpoint_at=2 * EVERY), dict(die_after=10, partial_line=True)]
    for plan in plans:
        assert _start(_train(out, **plan), tmp_path).wait() == -signal.SIGKILL
    assert L.load_checkpoint(out / "checkpoint.pt")["step"] == 2 * EVERY  # written when resumed from 4
    rng = random.Random(14)
    for line in sorted(rng.sample(range(6, STEPS - 3), 3)):
        child = _start(_train(out), tmp_path)
        # counts the lines a resume has yet to cut too: an early target kills it as it starts
        _wait_for_step(child, out / "metrics.jsonl", line)
        time.sleep(rng.uniform(0, 0.15))
        child.send_signal(signal.SIGKILL)
        assert child.wait() in (-signal.SIGKILL, 0)

    (out / ".checkpoint.pt.deadbeef.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves
    tr = make_trainer(out).load(out / "checkpoint.pt")
    assert _temporaries(out) == []
    tr.train(progress=False)
    assert _same(_params(tr.gfn), ref)
    assert _metrics(out) == _metrics(ref_out)
    assert _all_samples(out) == _all_samples(ref_out)
    assert _temporaries(out) == []


# -- signals and the command line -----------------------------------------------------------------
def test_lgfn_train_on_sigterm_saves_exits_143_and_resumes_exactly(tmp_path, capsys):
    out, ref = tmp_path / "run", tmp_path / "ref"
    child = _start(lambda: main(["train", "--out", str(out), *CLI, "train.steps=400"]), tmp_path)
    _wait_for_step(child, out / "metrics.jsonl", 2)
    child.send_signal(signal.SIGTERM)
    assert child.wait() == 143, child.output()
    step = L.load_checkpoint(out / "checkpoint.pt")["step"]
    assert f"lgfn: interrupted: stopped by SIGTERM at step {step}; checkpoint saved" in child.output()
    assert len(_metrics(out)) == step

    # the run's own config.yaml is the base: only the changed key is given
    err = _user_error(capsys, ["train", "--out", str(out), "--resume", "train.batch_size=8"])
    assert "refusing to resume with another train.batch_size 4 -> 8" in err
    err = _user_error(capsys, ["train", "--out", str(out), "--resume", "task.reward=qed_sa"])
    assert "task.reward None -> 'qed_sa'" in err
    assert main(["train", "--out", str(out), "--resume", "--no-progress", f"train.steps={step + 2}"]) == 0
    assert f"at step {step}; changed: train.steps 400 -> {step + 2}" in capsys.readouterr().out

    assert main(["train", "--out", str(ref), *CLI, f"train.steps={step + 2}"]) == 0
    assert _metrics(out) == _metrics(ref)
    assert _all_samples(out) == _all_samples(ref)


def test_a_second_signal_stops_at_once_and_an_ignored_one_stays_ignored(tmp_path):
    def run(hangup) -> int:
        signal.signal(signal.SIGHUP, hangup)  # SIG_IGN: as under nohup
        tr = make_trainer(tmp_path / str(hangup), steps=EVERY)

        def signals(t, b, m):
            if m["step"] == 2:
                os.kill(os.getpid(), signal.SIGHUP)
                if hangup == signal.SIG_DFL:
                    os.kill(os.getpid(), signal.SIGTERM)
        tr.callbacks.append(signals)
        try:
            tr.train(progress=False)
        except TrainingInterrupted as e:
            print(e)
            return 128 + e.signum
        return 0
    child = _start(lambda: run(signal.SIG_DFL), tmp_path)
    assert child.wait() == 128 + signal.SIGTERM
    assert "stopped at once by a second SIGTERM; the last checkpoint is kept" in child.output()
    assert not (tmp_path / str(signal.SIG_DFL) / "checkpoint.pt").exists()
    assert _start(lambda: run(signal.SIG_IGN), tmp_path).wait() == 0


def test_resume_needs_a_checkpoint_unless_asked_to_start(tmp_path, capsys):
    out = tmp_path / "mistyped"
    err = _user_error(capsys, ["train", "--out", str(out), "--resume", *CLI, "train.steps=2"])
    assert "--resume: no checkpoint to resume in" in err and "--resume-or-start" in err
    assert not out.exists()
    for steps in (1, 3):  # starts, then continues
        assert main(["train", "--out", str(out), "--resume-or-start", *CLI, f"train.steps={steps}"]) == 0
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3]


@pytest.mark.parametrize("change, key", [({"batch_size": 16}, "train.batch_size 8 -> 16"),
                                         ({"seed": 6}, "train.seed 5 -> 6"),
                                         ({"lr": 1e-3}, "train.lr 0.0005 -> 0.001")])
def test_resume_refuses_what_breaks_exactness_and_takes_more_steps(tmp_path, change, key):
    make_trainer(tmp_path, steps=EVERY).train(progress=False)
    tr = make_trainer(tmp_path)
    changed = L.Trainer(tr.env, tr.gfn, tr.reward, dataclasses.replace(tr.config, **change), tmp_path)
    with pytest.raises(L.CheckpointError, match=f"refusing to resume with another {key}"):
        changed.load(tmp_path / "checkpoint.pt")
    assert not _locked(tmp_path)
    assert tr.load(tmp_path / "checkpoint.pt").step == EVERY  # steps 24, not 4: allowed
    tr.close()


def test_more_steps_are_refused_when_beta_anneals(tmp_path):
    tr = make_trainer(tmp_path, steps=2)
    anneal = L.BetaSampler(1.0, 16.0, "annealing")
    L.Trainer(tr.env, tr.gfn, tr.reward, dataclasses.replace(tr.config, beta=anneal), tmp_path).train(progress=False)
    longer = L.Trainer(tr.env, tr.gfn, tr.reward, dataclasses.replace(tr.config, beta=anneal, steps=4), tmp_path)
    with pytest.raises(L.CheckpointError, match="train.steps 2 -> 4"):
        longer.load(tmp_path / "checkpoint.pt")


# -- the file system ------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    fsync = os.fsync

    def full(fd):
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}") and (out / "checkpoint.pt").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)
    monkeypatch.setattr(os, "fsync", full)
    err = _user_error(capsys, ["train", "--out", str(out), *CLI, "train.steps=4", "train.checkpoint_every=2"])
    assert f"{out / 'checkpoint.pt'}: No space left on device" in err
    monkeypatch.undo()
    assert L.load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert _temporaries(out) == [] and not _locked(out)
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4]


def test_an_occupied_output_path_and_ctrl_c_at_start_up_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    err = _user_error(capsys, ["train", "--out", str(tmp_path / "file" / "run"), *CLI])
    assert "Not a directory" in err
    err = _user_error(capsys, ["train", "--out", str(tmp_path / "file"), *CLI])
    assert "File exists" in err

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr("lgfn_graph.run.build_task", interrupted)
    assert main(["train", "--out", str(tmp_path / "run"), *CLI]) == 130
    assert capsys.readouterr().err == "lgfn: interrupted\n"
    assert not _locked(tmp_path / "run")


def test_ctrl_c_while_the_lgfn_command_imports_is_one_line():
    lgfn = shutil.which("lgfn", path=str(Path(sys.executable).parent))
    proc = subprocess.Popen([lgfn, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text():  # importing torch, seconds to go
        assert time.time() - t0 < 60 and proc.poll() is None
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (130, b"lgfn: interrupted while starting\n")


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "new.txt") as f:
            f.write("a")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # 0o666 less the umask
        os.chmod(tmp_path / "new.txt", 0o604)
        with atomic_write(tmp_path / "new.txt") as f:
            f.write("b")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o604
    finally:
        os.umask(old)
