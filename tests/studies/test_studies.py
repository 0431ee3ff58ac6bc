"""The studies at --quick size: reports, skipping finished runs, the mode count against a recount
from the samples on disk, the offline dataset split and training data, configuration errors."""
import csv
import json
import math
import shutil
from itertools import groupby

import pytest
import torch

import lgfn_graph as L

from lgfn_graph.cli import main as lgfn
from lgfn_graph.config import ConfigError
from lgfn_graph.metrics import ModeTracker, canonical_smiles
from lgfn_graph.sampledb import SampleDB
from lgfn_graph.studies import beta_ranges as BR
from lgfn_graph.studies import mode_seeking as MS
from lgfn_graph.studies import offline_generalization as OG
from lgfn_graph.studies._runs import RESULT_FILE, RunSpec, finished_result, with_other_finished
from lgfn_graph.task import TaskConfig, build_task
from lgfn_graph.usage import UsageError
from tasks import mode_seeking as mode_seeking_script

PNG = b"\x89PNG\r\n\x1a\n"
MODES = ["logit", "layer", "logit+layer", "none"]
SEEDS = [0, 1]


def _csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_report(out, name, rows_expected: int, columns: list[str]) -> list[dict]:
    rows = _csv(out / f"{name}.csv")
    assert len(rows) == rows_expected and list(rows[0]) == columns
    for r in rows:
        for k in columns[1:]:
            assert math.isfinite(float(r[k])), (k, r)
    assert (out / f"{name}.png").read_bytes()[:8] == PNG
    return rows


def _mtimes(out) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(out.glob(f"runs/*/*/{RESULT_FILE}"))}


# -- mode seeking ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mode_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("mode_seeking")
    # a low threshold, so that the tiny runs find modes and the count is worth checking
    argv = ["--quick", "--out", str(out), "--seeds", "0,1", "--no-progress", "mode_criteria.reward_threshold=0.6",
            f"publish={out / 'published'}"]
    assert MS.main(argv) == 0
    return out, argv


def test_mode_seeking_writes_a_row_per_mode_to_table_csv_and_png(mode_study):
    out, _ = mode_study
    metrics = [m for m, _, _ in MS.METRICS]
    columns = ["conditioning", "seeds", "trajectories"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    rows = _check_report(out, "mode_seeking", len(MODES), columns)
    assert [r["conditioning"] for r in rows] == MODES
    assert all(r["seeds"] == "2" and r["trajectories"] == "40" for r in rows)  # 5 steps of 8, equal for all
    table = [line for line in (out / "mode_seeking.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| mode | modes at 25 % | modes at 50 % | modes at 100 % | top-5 reward at 25 %")
    assert [t.split(" | ")[0][2:] for t in table[1:]] == ["logit", "layer", "logit+layer", "none (beta = 2)"]
    for name in ("mode_seeking.md", "mode_seeking.csv", "mode_seeking.png"):
        assert (out / "published" / name).read_bytes() == (out / name).read_bytes()


def test_mode_count_matches_a_recount_from_the_samples_on_disk(mode_study):
    out, _ = mode_study
    total = 0
    for c in MODES:
        for s in SEEDS:
            folder = RunSpec(c, s).folder(out)
            result = json.loads((folder / RESULT_FILE).read_text())
            tracker = ModeTracker(reward_threshold=0.6, max_similarity=0.7, reward_scale=0.8)
            with SampleDB(folder / "samples.db") as db:
                rows = db.rows()
            for _, group in groupby(rows, key=lambda r: r["step"]):
                group = list(group)
                tracker.update([r["smiles"] for r in group], [r["reward"] for r in group], len(group))
            assert [list(h) for h in tracker.history] == result["history"]
            assert tracker.modes == result["modes"] and result["modes_found"] == len(tracker.modes)
            rebuilt = MS.ModeRecorder.from_samples(folder / "samples.db", MS.ModeCriteria(reward_threshold=0.6))
            assert rebuilt.tracker.history == tracker.history and rebuilt.summary(5) == {
                k: v for k, v in result.items() if k in rebuilt.summary(5)}
            assert [h[0] for h in result["history"]] == [8 * k for k in range(1, 6)]
            best = {}
            for r in rows:
                best[r["smiles"]] = max(r["reward"], best.get(r["smiles"], 0.0))
            top = sorted(best.values(), reverse=True)[:result["top_k"]]
            assert result["top_k"] == 5 and result["top_k_reward"] == pytest.approx(sum(top) / len(top))
            assert result["unique_molecules"] == len(set(canonical_smiles(list(best))))
            total += len(tracker.modes)
    assert total > 0  # otherwise the comparison above proves little


def test_a_rerun_skips_finished_runs_and_redoes_a_killed_one(mode_study, monkeypatch):
    out, argv = mode_study
    killed = RunSpec("layer", 1).folder(out)
    before = json.loads((killed / RESULT_FILE).read_text())
    (killed / RESULT_FILE).unlink()  # as if the study had been killed while training this run
    mtimes = _mtimes(out)
    calls = []
    real = MS.train_run

    def counting(cfg, spec, folder, progress=True, callbacks=()):
        calls.append(spec)
        return real(cfg, spec, folder, progress, callbacks)

    monkeypatch.setattr(MS, "train_run", counting)
    assert MS.main(argv) == 0
    assert calls == [RunSpec("layer", 1)]
    assert {p: t for p, t in _mtimes(out).items() if p != killed / RESULT_FILE} == mtimes and len(mtimes) == 7
    # redone from scratch: its logs hold one run, not the killed one's steps and then the new ones
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 5
    after = json.loads((killed / RESULT_FILE).read_text())
    assert after["history"] == before["history"] and after["modes"] == before["modes"]
    with pytest.raises(ConfigError, match="other settings.*train.lr: 0.001 -> 0.01"):
        MS.main(argv + ["train.lr=0.01"])


# -- offline generalization -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def offline_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("offline")
    argv = ["--quick", "--out", str(out), "--seeds", "0,1", "--no-progress"]
    assert OG.main(argv) == 0
    return out, argv


def test_offline_study_writes_tables_csv_and_png_and_reruns_nothing(offline_study, monkeypatch):
    out, argv = offline_study
    metrics = [m for m, _, _ in OG.METRICS]
    columns = ["conditioning", "beta", "seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    rows = _check_report(out, "offline_generalization", len(MODES) * 2, columns)
    assert [(r["conditioning"], float(r["beta"])) for r in rows] == [(c, b) for c in MODES for b in (1.0, 100.0)]
    text = (out / "offline_generalization.md").read_text()
    for _, heading, _ in OG.METRICS:
        table = text.split(f"## {heading.format(k=5)}\n\n")[1].split("\n\n")[0].splitlines()
        assert table[0] == "| mode | 1 | 100 |" and [t.split(" | ")[0][2:] for t in table[2:]] == MODES
    mtimes, dataset = _mtimes(out), (out / "dataset.pt").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(OG, "train_run", fail)
    assert OG.main(argv) == 0
    assert _mtimes(out) == mtimes and len(mtimes) == 8 and (out / "dataset.pt").stat().st_mtime_ns == dataset


def test_training_fit_is_the_mean_loss_of_the_first_and_last_tenth():
    assert OG.training_fit([float(i) for i in range(1, 21)]) == {"loss_first": 1.5, "loss_last": 19.5}
    assert OG.training_fit([4.0, 2.0, 7.0]) == {"loss_first": 4.0, "loss_last": 7.0}  # a step each
    with pytest.raises(ValueError, match="no steps"):
        OG.training_fit([])


def test_offline_report_shows_the_fit_and_fills_it_in_for_older_runs(offline_study, tmp_path):
    """Every run records its fit; a result.json written before fits were recorded gets it from
    its metrics.jsonl on the next report, and one without metrics says so."""
    out = tmp_path / "copy"
    shutil.copytree(offline_study[0], out)
    old, gone = RunSpec("layer", 1).folder(out), [RunSpec("none", s).folder(out) for s in (0, 1)]
    losses = [json.loads(line)["loss"] for line in (old / "metrics.jsonl").read_text().splitlines()]
    assert json.loads((old / RESULT_FILE).read_text())["fit"] == OG.training_fit(losses)
    for folder in (old, *gone):
        result = json.loads((folder / RESULT_FILE).read_text())
        del result["fit"]
        (folder / RESULT_FILE).write_text(json.dumps(result))
    for folder in gone:
        (folder / "metrics.jsonl").unlink()
    assert OG.main(["--quick", "--out", str(out), "--seeds", "0,1", "--no-progress", "--report-only"]) == 0
    assert json.loads((old / RESULT_FILE).read_text())["fit"] == OG.training_fit(losses)
    assert all("fit" not in json.loads((f / RESULT_FILE).read_text()) for f in gone)
    text = (out / "offline_generalization.md").read_text()
    table = text.split("## Training fit")[1].split("\n\n")[2].splitlines()
    assert table[0] == "| mode | first tenth | last tenth |" and [t.split(" | ")[0][2:] for t in table[2:]] == MODES
    assert [("not recorded" in t) for t in table[2:]] == [m == "none" for m in MODES]


def test_offline_split_is_the_low_reward_half_and_training_sees_only_it(tmp_path):
    cfg = OG.OfflineGeneralizationConfig(
        task=TaskConfig(max_fragments=3), data=OG.DatasetConfig(size=200, heldout=40),
        eval=OG.OfflineEvalConfig(betas=[1.0, 1000.0], samples=8, likelihood_samples=2))
    cfg.model.hidden, cfg.model.num_layers, cfg.train.steps, cfg.train.batch_size = 16, 1, 6, 16
    env, reward = build_task(cfg.task)
    data = OG.build_dataset(env, reward, cfg.data)
    train_r, pool_r = data.train_log_reward, data.pool_log_reward
    assert len(data.heldout_smiles) == 40 and len(data.train_smiles) == len(pool_r) // 2
    assert bool((train_r <= pool_r.median()).all())
    assert torch.equal(train_r.sort().values, pool_r.sort().values[:len(train_r)])  # exactly the lowest half
    assert not set(data.train_smiles) & set(data.heldout_smiles)
    assert len(set(data.train_smiles)) == len(data.train_smiles)
    assert env.to_smiles(data.train) == data.train_smiles and env.to_smiles(data.heldout) == data.heldout_smiles
    mols = [env.to_mol(data.heldout, i) for i in range(len(data.heldout))]
    assert torch.allclose(reward(mols).log(), data.heldout_log_reward)
    assert data.heldout_log_reward.max() > train_r.max()  # held out: every reward, not just the low ones

    allowed, batches = set(data.train_smiles), []

    def only_dataset_molecules(trainer, batch, metrics):
        assert batch.num_sampled == 0  # offline: the policy never samples
        smiles = env.to_smiles(batch.trajectories.terminal)
        assert set(smiles) <= allowed, set(smiles) - allowed
        batches.append(len(smiles))

    result = OG.train_run(cfg, data, RunSpec("logit", 0), tmp_path / "run", False, [only_dataset_molecules])
    assert batches == [16] * 6
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result["fit"] == {"loss_first": losses[0], "loss_last": losses[-1]}  # 6 steps: a tenth is one
    assert [r["beta"] for r in result["eval"]] == [1.0, 1000.0]
    assert all(math.isfinite(v) for r in result["eval"] for v in r.values())


# -- configuration --------------------------------------------------------------------------------
def test_an_unknown_key_fails_naming_it(tmp_path, capsys):
    bad = tmp_path / "study.yaml"
    bad.write_text("trian:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trian' \(did you mean 'train'\?\)"):
        MS.main(["--config", str(bad)])
    with pytest.raises(ConfigError, match=r"'data.heldot'.*did you mean 'data.heldout'"):
        OG.main(["--quick", "data.heldot=3"])
    with pytest.raises(ConfigError, match="unknown conditioning mode 'logits'"):
        OG.main(["--modes", "logit,logits"])
    # through the command line and the script: one line on stderr, status 2, nothing run
    assert lgfn(["study", "mode_seeking", "--config", str(bad)]) == 2
    assert mode_seeking_script.main(["mode_criteria.reward_treshold=0.5"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "'trian'" in err[0] and "did you mean 'mode_criteria.reward_threshold'" in err[1]


def test_study_overrides_may_come_before_between_and_after_options(tmp_path):
    """``lgfn study`` takes key=value overrides on both sides of an option, in order; an unknown
    option is still refused by name."""
    args = MS.study_parser("m", "").parse_args(["train.steps=3", "--out", str(tmp_path), "train.steps=5",
                                                "--modes", "logit", "train.lr=0.01"])
    assert args.overrides == ["train.steps=3", "train.steps=5", "train.lr=0.01"]
    cfg = MS.study_config(MS.ModeSeekingConfig, args, MS.QUICK)
    assert (cfg.train.steps, cfg.train.lr, cfg.out, cfg.conditionings) == (5, 0.01, str(tmp_path), ["logit"])
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus"):
        MS.study_parser("m", "").parse_args(["train.steps=3", "--bogus", "train.steps=5"])


def test_a_run_killed_midway_resumes_from_its_checkpoint_exactly(tmp_path):
    """A run stopped after step 3 (checkpoint at step 2) continues from step 2 when the study is
    rerun, and ends with the same result as a run never stopped (modes, curve, top-k)."""
    argv = ["--quick", "--no-progress", "--modes", "logit", "train.steps=6", "train.checkpoint_every=2",
            "train.replay_capacity=32", "mode_criteria.reward_threshold=0.6"]
    assert MS.main(argv + ["--out", str(tmp_path / "whole")]) == 0
    cfg = MS.study_config(MS.ModeSeekingConfig, MS.study_parser("m", "").parse_args(
        argv + ["--out", str(tmp_path / "killed")]), MS.QUICK)

    class Killed(Exception):
        pass

    def kill_after_step_3(trainer, batch, metrics):
        if trainer.step == 3:
            raise Killed

    spec = RunSpec("logit", 0)
    folder = spec.folder(cfg.out)
    (folder / "settings.json").parent.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps(cfg.settings()))
    with pytest.raises(Killed):
        MS.train_run(cfg, spec, folder, False, [kill_after_step_3])
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3
    calls = []
    real = MS.train_run

    def resumed_from(cfg_, spec_, folder_, progress=True, callbacks=()):
        calls.append(L.load_checkpoint(folder_ / "checkpoint.pt")["step"])
        return real(cfg_, spec_, folder_, progress, callbacks)

    MS.train_run = resumed_from
    try:
        assert MS.main(argv + ["--out", str(tmp_path / "killed")]) == 0
    finally:
        MS.train_run = real
    assert calls == [2]
    whole = json.loads((spec.folder(tmp_path / "whole") / RESULT_FILE).read_text())
    after = json.loads((folder / RESULT_FILE).read_text())
    for key in ("history", "modes", "curve", "top_k_reward", "unique_molecules", "modes_found_at_50"):
        assert after[key] == whole[key], key
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 6


def test_report_only_writes_the_finished_runs_and_runs_nothing(mode_study, tmp_path, monkeypatch):
    out, argv = mode_study

    def fail(*args, **kwargs):
        raise AssertionError("--report-only ran a run")

    monkeypatch.setattr(MS, "train_run", fail)
    assert MS.main(argv + ["--report-only", "--seeds", "0,1,2"]) == 0
    text = (out / "mode_seeking.md").read_text()
    assert "| logit (2 of 3 seeds) |" in text


@pytest.mark.parametrize("study", ["mode_study", "offline_study", "ranges_study"])
def test_a_command_for_one_mode_reports_every_finished_run(study, request, tmp_path, capsys):
    """Studies run in parts (``--modes logit`` on one lane, ``--modes layer`` on another) get one
    report of every finished run in the folder; a run made with other settings stays out, named."""
    module, report = {"mode_study": (MS, "mode_seeking"), "offline_study": (OG, "offline_generalization"),
                      "ranges_study": (BR, "beta_ranges")}[study]
    fixture_out, argv = request.getfixturevalue(study)
    out = tmp_path / "copy"
    shutil.copytree(fixture_out, out)
    argv = [a.replace(str(fixture_out), str(out)) for a in argv]

    def reported_runs():  # (mode, seeds averaged) of each report row
        return sorted({(r["conditioning"], r["seeds"]) for r in _csv(out / f"{report}.csv")})

    everything = reported_runs()
    assert {mode for mode, _ in everything} == set(MODES)
    assert module.main(argv + ["--modes", "logit", "--report-only"]) == 0
    assert reported_runs() == everything
    changed = sorted(out.glob(f"**/runs/layer/seed*/{RESULT_FILE}"))
    for result_file in changed:
        result = json.loads(result_file.read_text())
        result["settings"]["train"]["lr"] *= 2
        result_file.write_text(json.dumps(result))
    capsys.readouterr()
    assert module.main(argv + ["--modes", "logit", "--report-only"]) == 0
    assert reported_runs() == [run for run in everything if run[0] != "layer"]
    said = "".join(capsys.readouterr())
    assert all(f"not in the report: {f.parent} holds a finished run with other settings" in said for f in changed)


def test_finished_runs_come_in_mode_then_seed_order_whatever_the_command(mode_study):
    """Means over seeds depend on summation order in the last bit; the report must not depend on
    which lane's command wrote it."""
    out, _ = mode_study
    settings = json.loads((RunSpec("logit", 0).folder(out) / RESULT_FILE).read_text())["settings"]
    expected = [(m, s) for m in MODES for s in SEEDS]
    for first in [("none", 1), ("layer", 0), ("logit", 1)]:
        own = [finished_result(RunSpec(*first).folder(out), settings)]
        found = with_other_finished(out, own, settings)
        assert [(r["conditioning"], r["seed"]) for r in found] == expected


def test_a_setting_added_later_with_its_default_keeps_finished_runs(mode_study, monkeypatch):
    """A finished run recorded before a field existed still counts while the field keeps its
    default; a non-default value is a different experiment and is refused."""
    out, argv = mode_study
    folder = RunSpec("logit", 0).folder(out)
    result = json.loads((folder / RESULT_FILE).read_text())
    del result["settings"]["train"]["epsilon"]  # as if recorded before epsilon existed
    (folder / RESULT_FILE).write_text(json.dumps(result))
    monkeypatch.setattr(MS, "train_run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rerun")))
    assert MS.main(argv) == 0
    with pytest.raises(ConfigError, match="train.epsilon: None -> 0.3"):
        MS.main(argv + ["train.epsilon=0.3"])


# -- the seh_frag mode criterion ------------------------------------------------------------------
def test_seh_mode_criterion_on_hand_made_molecules():
    """R >= 0.875 and Tanimoto < 0.7 to every earlier mode (configs/studies/mode_seeking_seh.yaml),
    on molecules whose similarities are checked here first, so the expectations are exact."""
    from rdkit import DataStructs

    from lgfn_graph.config import from_dict, read_yaml
    from lgfn_graph.metrics import morgan_fingerprints

    cfg = from_dict(MS.ModeSeekingConfig, read_yaml("configs/studies/mode_seeking_seh.yaml"))
    a, a_twin, b, c = "CCCCCCCCCCCCO", "CCCCCCCCCCCCCO", "c1ccc2ccccc2c1", "O=C(O)c1ccncc1"
    fa, ftwin, fb, fc = morgan_fingerprints([a, a_twin, b, c])
    assert DataStructs.TanimotoSimilarity(fa, ftwin) >= 0.7  # a near-duplicate of a
    assert max(DataStructs.BulkTanimotoSimilarity(fb, [fa, ftwin])) < 0.7
    assert max(DataStructs.BulkTanimotoSimilarity(fc, [fa, ftwin, fb])) < 0.7
    tracker = cfg.mode_criteria.tracker()
    # b scores just below the threshold: not a mode, and it does not block a later similar one
    tracker.update([b, a, a_twin], [0.8749, 0.875, 0.99], 3)
    assert tracker.modes == [a]  # 0.875 counts (>=); the twin is too similar to a, however good
    tracker.update([c, b], [0.9, 0.876], 4)
    assert tracker.modes == [a, c, b] and tracker.history == [(3, 1), (7, 3)]


def test_mode_counts_at_budget_fractions_read_the_history(mode_study):
    out, _ = mode_study
    for c in MODES:
        r = json.loads((RunSpec(c, 0).folder(out) / RESULT_FILE).read_text())
        history = r["history"]  # 5 steps
        assert r["modes_found_at_100"] == r["modes_found"] == history[-1][1]
        assert r["modes_found_at_50"] == history[2][1] and r["modes_found_at_25"] == history[1][1]  # ceil
        assert len(r["curve"]) == 5 and r["top_k_reward_at_100"] == r["curve"][-1][2]


# -- beta ranges ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranges_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("beta_ranges")
    argv = ["--quick", "--out", str(out), "--no-progress"]
    assert BR.main(argv) == 0
    return out, argv


def test_beta_ranges_report_rows_and_recorded_l1_is_the_trained_models(ranges_study):
    out, _ = ranges_study
    rows = _csv(out / "beta_ranges.csv")
    assert [(float(r["range_high"]), r["conditioning"], int(r["step"])) for r in rows] == [
        (h, c, s) for h in (4.0, 64.0) for c in MODES for s in (0, 3, 6)]
    assert (out / "beta_ranges.png").read_bytes()[:8] == PNG
    cfg = BR.BetaRangesConfig(task=TaskConfig(name="tiny_frag"))
    task = BR.ExactTask.build(cfg.task, cfg.train.log_reward_floor)
    for c in ("logit", "none"):
        folder = RunSpec(c, 0).folder(out / "range_1_64")
        result = json.loads((folder / RESULT_FILE).read_text())
        gfn, env, state = L.load_model(folder / "checkpoint.pt")
        assert state["step"] == 6 and result["betas"] == pytest.approx([1.0, 8.0, 64.0])
        with torch.no_grad():
            again = L.exact.l1_distance(gfn, env, task.space, task.log_reward, result["betas"]).tolist()
        assert again == pytest.approx(result["l1"][-1], abs=1e-6)
        assert result["grad_spread_end"] == pytest.approx(
            math.log10(max(result["grad_medians_end"]) / min(result["grad_medians_end"])))


def test_a_diverged_run_is_recorded_and_reported(tmp_path, monkeypatch):
    """Training that stops on persistently non-finite gradients is a result: its later
    checkpoints repeat the L1 of the model it stopped with, and the table says so."""

    class DivergesAfterFour(BR.Trainer):
        def update(self, batch):
            if self.step == 4:
                raise FloatingPointError("step 5: 10 steps in a row skipped as non-finite")
            return super().update(batch)

    monkeypatch.setattr(BR, "Trainer", DivergesAfterFour)
    out = tmp_path / "study"
    assert BR.main(["--quick", "--out", str(out), "--no-progress", "--modes", "logit", "ranges=[64]"]) == 0
    folder = RunSpec("logit", 0).folder(out / "range_1_64")
    result = json.loads((folder / RESULT_FILE).read_text())
    assert result["diverged_at"] == 4 and result["steps"] == [0, 3, 6]
    cfg = BR.BetaRangesConfig(task=TaskConfig(name="tiny_frag"))
    task = BR.ExactTask.build(cfg.task, cfg.train.log_reward_floor)
    gfn, env, state = L.load_model(folder / "checkpoint.pt")
    with torch.no_grad():
        stopped = L.exact.l1_distance(gfn, env, task.space, task.log_reward, result["betas"]).tolist()
    assert state["step"] == 4 and result["l1"][2] == pytest.approx(stopped, abs=1e-6)
    assert "logit (diverged: 1 of 1)" in (out / "beta_ranges.md").read_text()
    rows = _csv(out / "beta_ranges.csv")
    assert {r["diverged"] for r in rows} == {"1"}


def test_per_trajectory_gradient_norm_is_that_of_each_trajectory_alone():
    """The norms of one batched computation equal those of each trajectory's loss on its own."""
    cfg = BR.BetaRangesConfig(task=TaskConfig(name="tiny_frag"))
    task = BR.ExactTask.build(cfg.task, cfg.train.log_reward_floor)
    torch.manual_seed(0)
    gfn = L.TemperatureGFlowNet.build(task.env, L.ModelConfig(hidden=16, num_layers=1, heads=1))
    norms = BR.trajectory_grad_norms(gfn, task, cfg.train, 8.0, 3, torch.Generator().manual_seed(5))
    with torch.no_grad():
        traj = L.sample_trajectories(gfn, task.env, torch.full((3,), 8.0), 0.0, torch.Generator().manual_seed(5))
    log_r = torch.log(task.reward([task.env.to_mol(traj.terminal, i) for i in range(3)]))
    for i in range(3):
        gfn.zero_grad()
        loss = L.trainer.Objective(gfn, task.env, cfg.train)(traj, log_r, torch.full((3,), 8.0))[i]
        loss.backward()
        brute = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in BR.policy_parameters(gfn) if p.grad is not None))
        assert float(norms[i]) == pytest.approx(float(brute), rel=1e-4)
    assert not {id(p) for p in BR.policy_parameters(gfn)} & {id(p) for p in gfn.log_z.parameters()}


def test_table_reward_answers_like_the_reward():
    env, reward = build_task(TaskConfig(name="tiny_frag"))
    task = BR.ExactTask.build(TaskConfig(name="tiny_frag"), 1e-8)
    mols = [env.to_mol(task.space.states, int(i)) for i in task.space.terminal.nonzero().flatten()[:20]]
    torch.testing.assert_close(task.reward(mols), reward(mols))
    from rdkit import Chem
    new = [Chem.MolFromSmiles("CCCCCCO")]  # not a tiny_frag molecule: asks the real reward
    torch.testing.assert_close(task.reward(new), reward(new))
