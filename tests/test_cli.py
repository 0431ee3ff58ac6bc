"""The lgfn command, run in-process: train, resume, sample, evaluate, study dispatch, user errors."""
import csv
import json
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest

import lgfn_graph as L
from lgfn_graph.cli import main
from lgfn_graph.config import load_config

CONFIG = """\
task: {name: tiny_frag}
model: {hidden: 16, num_layers: 1}
train: {batch_size: 4, tensorboard: false}
eval: {betas: [1, 4], n: 4}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step run on tiny_frag from a YAML file and overrides; its output folder."""
    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.yaml").write_text(CONFIG)
    out = root / "run"
    assert main(["train", "--config", str(root / "tiny.yaml"), "--out", str(out), "--no-progress",
                 "train.steps=3", "model.conditioning=logit+layer", "train.beta.high=8"]) == 0
    return out


def _user_error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lgfn: error: ") and "Traceback" not in err, err
    return err


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_train_writes_checkpoint_metrics_config_and_sweep(run):
    for name in ("checkpoint.pt", "metrics.jsonl", "config.yaml", "samples.csv", "summary.csv",
                 "mean_reward_vs_beta.png", "run.json"):
        assert (run / name).stat().st_size > 0, name
    cfg = load_config(run / "config.yaml")
    assert (cfg.task.name, cfg.model.hidden, cfg.model.conditioning, cfg.train.steps) == ("tiny_frag", 16,
                                                                                          "logit+layer", 3)
    assert cfg.train.beta == L.BetaSampler(1.0, 8.0) and cfg.out == str(run)
    gfn, env, state = L.load_model(run / "checkpoint.pt")
    assert state["step"] == 3 and env.max_fragments == 3 and gfn.config.conditioning == "logit+layer"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    rows = list(csv.DictReader(open(run / "samples.csv")))
    assert len(rows) == 8 and {r["beta"] for r in rows} == {"1.0", "4.0"}


def test_train_refuses_to_overwrite_a_run(run, capsys):
    err = _user_error(capsys, ["train", "--out", str(run), "train.steps=1"])
    assert "checkpoint.pt exists: pass --resume" in err


@pytest.mark.skipif(not hasattr(L.Trainer, "load"), reason="Trainer.load not available yet")
def test_resume_continues_up_to_the_new_step_count(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(tmp_path / "run"), "--resume",
                 "--no-progress", "train.steps=5"]) == 0
    assert L.load_model(tmp_path / "run" / "checkpoint.pt")[2]["step"] == 5
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics] == [1, 2, 3, 4, 5]


def test_sample_writes_rows_at_the_beta_and_a_grid(run, tmp_path, capsys):
    out, grid = tmp_path / "s.csv", tmp_path / "top.png"
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--config", str(run / "config.yaml"),
                 "--beta", "8", "--n", "7", "--out", str(out), "--grid", str(grid), "--top", "3"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 7 and all(r["beta"] == "8.0" and 0 < float(r["reward"]) <= 1 for r in rows)
    width, height = _png_size(grid)
    assert width > 0 and height > 0
    assert "7 molecules at beta 8" in capsys.readouterr().out


def test_sample_without_out_writes_csv_to_stdout(run, capsys):
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--task", "tiny_frag", "--beta", "2",
                 "--n", "3", "--seed", "1"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 3 and {r["beta"] for r in rows} == {"2.0"}


def test_sample_needs_a_task_unless_the_checkpoint_records_it(run, capsys):
    checkpoint = run / "checkpoint.pt"
    argv = ["sample", "--checkpoint", str(checkpoint), "--beta", "2", "--n", "2"]
    if "run_config" in L.load_checkpoint(checkpoint)["extra"]:
        assert main(argv) == 0
    else:
        assert "does not record its task: pass --task NAME or --config FILE" in _user_error(capsys, argv)


def test_evaluate_prints_the_sweep_and_writes_it(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--task", "tiny_frag",
                 "--betas", "1,16", "--n", "3", "--out", str(tmp_path / "ev")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["beta", "mean_reward", "max_reward", "unique"]
    assert [float(line.split()[0]) for line in table[1:3]] == [1.0, 16.0]
    assert len(list(csv.DictReader(open(tmp_path / "ev" / "summary.csv")))) == 2
    assert _png_size(tmp_path / "ev" / "mean_reward_vs_beta.png")[0] > 0


def test_overrides_may_follow_options_and_a_number_means_one_beta(tmp_path, capsys):
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "task.name=tiny_frag", "train.steps=5", "--out", str(out), "model.hidden=16",
                 "--no-progress", "model.num_layers=1", "train.batch_size=4", "train.tensorboard=false",
                 "train.steps=2", "eval.n=2", "eval.betas=1", "train.beta=4"]) == 0
    cfg = load_config(out / "config.yaml")
    assert (cfg.task.name, cfg.model.hidden, cfg.train.steps) == ("tiny_frag", 16, 2)  # in order: 2 wins
    assert cfg.train.beta == L.BetaSampler.constant(4.0) and cfg.eval.betas == [1.0]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["mean_beta"] for m in metrics] == [4.0, 4.0]
    assert [r["beta"] for r in csv.DictReader(open(out / "summary.csv"))] == ["1.0"]
    # beta 1 is below 4 / 2: the sweep says so, on one line
    err = capsys.readouterr().err
    assert err.count("lgfn: warning: sampling at beta 1, far outside the training range") == 1, err


def test_evaluate_warns_once_about_betas_far_outside_the_training_range(run, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--n", "1"]
    capsys.readouterr()
    assert main(argv + ["--betas", "0.5,16", "--out", str(tmp_path / "in")]) == 0  # U[1, 8]: [0.5, 16] is near
    assert "warning" not in capsys.readouterr().err
    assert main(argv + ["--betas", "0.25,4,17,100", "--out", str(tmp_path / "far")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("lgfn: warning: sampling at beta 0.25, 17, 100, far outside") and err.count("\n") == 1, err
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--beta", "1000", "--n", "2"]) == 0
    assert capsys.readouterr().err.count("lgfn: warning: sampling at beta 1000, far outside") == 1


def test_scoring_with_another_task_s_reward_warns_naming_both(run, capsys):
    argv = ["sample", "--checkpoint", str(run / "checkpoint.pt"), "--beta", "2", "--n", "2", "--task"]
    capsys.readouterr()
    assert main(argv + ["tiny_frag"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(argv + ["qed_frag"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lgfn: warning: scoring with the reward of task 'qed_frag' "
                                                   "(qed_sa)") and "trained on task 'tiny_frag' (reward qed)" in err


@pytest.mark.parametrize("argv, message", [
    (["sample", "--checkpoint", "{tmp}/missing.pt", "--task", "tiny_frag", "--beta", "1"],
     "checkpoint not found: {tmp}/missing.pt"),
    (["sample", "--checkpoint", "x.pt", "--beta", "-1"], "argument --beta: beta must be finite and > 0, got -1.0"),
    (["sample", "--checkpoint", "x.pt", "--beta", "hot"], "argument --beta: beta must be comma-separated numbers"),
    (["evaluate", "--checkpoint", "x.pt", "--betas", "1,0"], "argument --betas: betas must be finite and > 0"),
    (["train", "--out", "{tmp}/run", "train.stpes=3"],
     "override 'train.stpes=3': unknown key 'train.stpes' (did you mean 'train.steps'?)"),
    (["train", "--config", "{tmp}/none.yaml"], "config file not found: {tmp}/none.yaml"),
    (["trian"], "argument COMMAND: invalid choice: 'trian'"),
    (["sample", "--checkpoint", "x.pt", "--beta", "1", "--device", "gpu0"], "argument --device: must name a torch device"),
    # overrides may follow options, unknown options may not
    (["train", "train.steps=1", "--out", "{tmp}/run", "eval.n=2", "--bogus"], "unrecognized arguments: --bogus ("),
    (["sample", "--checkpoint", "x.pt", "--beta", "1", "stray"], "unrecognized arguments: stray"),
])
def test_user_errors_print_one_line_and_exit_2(argv, message, tmp_path, capsys):
    err = _user_error(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "run").exists()


def test_study_dispatches_to_its_main_and_lists_the_studies(tmp_path, monkeypatch, capsys):
    for name, text in (("alpha", "def main(argv): pass\n"), ("beta", "def main(argv): pass\n"),
                       ("broken", "import no_such_dependency_of_a_study\n")):
        (tmp_path / f"{name}.py").write_text(text)
    package = types.ModuleType("lgfn_graph.studies")
    package.__path__ = [str(tmp_path)]
    monkeypatch.setitem(sys.modules, "lgfn_graph.studies", package)
    seen = []
    fake = types.ModuleType("lgfn_graph.studies.fake")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "lgfn_graph.studies.fake", fake)

    assert main(["study", "fake", "--steps", "2", "x"]) == 3 and seen == [["--steps", "2", "x"]]
    assert "unknown study 'nope'; studies: alpha, beta, broken" in _user_error(capsys, ["study", "nope"])
    assert "unknown study 'os.path'" in _user_error(capsys, ["study", "os.path"])
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_of_a_study"):
        main(["study", "broken"])  # a study's own missing import is a bug, not an unknown name


def test_the_console_script_is_installed():
    lgfn = shutil.which("lgfn", path=str(Path(sys.executable).parent))
    assert lgfn is not None, "the lgfn console script is missing: pip install -e ."
    done = subprocess.run([lgfn, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(c in done.stdout for c in ("train", "sample", "evaluate", "study"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    err = _user_error(capsys, ["train", "--out", str(tmp_path / "run"), "--device", "cuda", "train.steps=1"])
    assert "train.device" in err and "no CUDA device" in err
    err = _user_error(capsys, ["sample", "--checkpoint", "x.pt", "--beta", "1", "--device", "cuda"])
    assert "argument --device: is 'cuda', but this torch sees no CUDA device" in err
