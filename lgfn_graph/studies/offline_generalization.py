r"""Offline generalization: train on the low-reward half of random molecules, evaluate at betas far outside training.

Trained only on low-reward molecules at beta ~ U[10, 50], does the model rank unseen molecules
by reward, and does turning beta up beyond the training range find better molecules than it saw?

1. A fixed dataset (:func:`build_dataset`): ``data.size`` (6,000) molecules drawn by the
   uniformly random policy (every legal action equally likely at each step:
   ``lgfn_graph.sampler.uniform_sampler``), scored, duplicates (by canonical
   SMILES) removed. ``data.heldout`` (512) of them, chosen at random, are held out for
   evaluation, whatever their reward; of the rest, the bottom ``data.train_fraction`` (half)
   by reward is the training set. The default task is ``qed_frag`` (QED x normalised SA).
2. Every conditioning mode trains offline on that set alone (trajectory balance on
   trajectories drawn backwards from its molecules, never sampling the policy), beta ~
   U[10, 50]; ``none`` cannot read beta and trains at the fixed beta 30 (``none_beta``).
3. At each beta of ``eval.betas`` (1, 5, 10, 50, 100, 500, 1000, 5000): the importance-sampled
   log-likelihood ``log p(x | beta)`` of every held-out molecule
   (:func:`~lgfn_graph.metrics.log_likelihood`, ``eval.likelihood_samples`` backward
   trajectories each), its Spearman and Pearson correlation with ``log R(x)``, and the mean
   reward, top-``eval.top_k`` reward (over distinct molecules) and distinct fraction of
   ``eval.samples`` molecules sampled from the model (no exploration).

Writes into ``--out`` (default ``runs/studies/offline_generalization``):
``offline_generalization.md`` (one table per metric: a row per mode, a column per beta,
mean ± standard deviation over seeds; then the training fit, the TB loss early and late, which
tells a failure to generalize from a failure to fit), ``offline_generalization.csv`` (a row per mode and beta)
and ``offline_generalization.png`` (mean reward, top-k reward and Spearman against beta, log
scale, one line per mode, one standard deviation shaded); ``dataset.pt`` and ``dataset.csv``
(every molecule with its reward and split); each run keeps ``runs/<mode>/seed<k>/`` with
``metrics.jsonl``, ``checkpoint.pt``, ``eval.csv`` and ``result.json`` (written last: a run with
one is finished and a rerun skips it). ``publish=DIR`` copies the table, CSV and PNG into ``DIR``.

Cost of the defaults (3-layer, 64-wide graph transformer, 1,000 steps of batch 32; 4 modes x 3
seeds) on one core of the 2-core development machine: the dataset about 15 s, a run about
1 minute of training and 30 s of evaluation, the study about 20 minutes.

Run: ``lgfn study offline_generalization`` or ``python tasks/offline_generalization.py``;
``--quick`` for a smoke run.
"""
from __future__ import annotations

import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..betas import BetaRangeWarning, BetaSampler, check_beta
from ..buffer import ReplayBuffer
from ..config import ConfigError, to_dict
from ..evaluate import sample_molecules
from ..files import atomic_write, markdown_table, save_png, write_csv
from ..metrics import correlations, log_likelihood, temperature_response
from ..policy import ModelConfig, TemperatureGFlowNet
from ..rewards import RewardFn, score_molecules
from ..sampler import uniform_sampler
from ..task import TaskConfig, build_task
from ..trainer import Callback, Trainer, TrainConfig
from . import _report as R
from ._cli import study_config, study_parser
from ._runs import RESULT_FILE, RunSpec, StudyRuns, reported, run_all, run_specs, with_other_finished

NAME = "offline_generalization"

# --quick: seconds, not minutes; the settings a smoke test needs and no more
QUICK = ("task.max_fragments=3", "model.hidden=16", "model.num_layers=1", "model.heads=1", "train.steps=4",
         "train.batch_size=8", "data.size=160", "data.heldout=32", "eval.betas=[1, 100]", "eval.samples=16",
         "eval.top_k=5", "eval.likelihood_samples=4", "seeds=[0]")


@dataclass
class DatasetConfig:
    """The fixed dataset of random molecules.

    Args:
        size: molecules drawn by the uniformly random policy (before duplicates are removed).
        heldout: of the distinct ones, how many are kept out of training for evaluation.
        train_fraction: train on this lowest-reward fraction of the rest.
        seed: of the draw and the split.
        batch_size: molecules drawn at a time.
    """

    size: int = 6000
    heldout: int = 512
    train_fraction: float = 0.5
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must lie in (0, 1], got {self.train_fraction}")
        if self.heldout < 3:
            raise ValueError(f"heldout must be >= 3 (a correlation needs 3 points), got {self.heldout}")
        if self.size <= self.heldout or self.batch_size < 1:
            raise ValueError(f"size ({self.size}) must exceed heldout ({self.heldout}); batch_size must be >= 1")


@dataclass
class OfflineEvalConfig:
    """The evaluation of every run at each beta.

    Args:
        betas: where to evaluate (finite, > 0).
        samples: molecules sampled from the model per beta.
        top_k: distinct molecules in the top-k reward (fewer where fewer were sampled).
        likelihood_samples: backward trajectories per held-out molecule in its likelihood.
        seed: of the sampling and the backward trajectories.
    """

    betas: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0])
    samples: int = 256
    top_k: int = 10
    likelihood_samples: int = 16
    seed: int = 0

    def __post_init__(self):
        if not self.betas:
            raise ValueError("betas is empty")
        check_beta(self.betas, "betas")
        if min(self.samples, self.top_k, self.likelihood_samples) < 1:
            raise ValueError("samples, top_k and likelihood_samples must be >= 1")


@dataclass
class OfflineGeneralizationConfig(StudyRuns):
    """The offline generalization study.

    Args:
        task: the molecules and their reward.
        model: the model of every run (its ``conditioning`` is replaced by each run's mode).
        train: training of every run (its ``seed`` is replaced by each run's seed).
        none_beta: the fixed training beta of the ``none`` mode, which cannot read beta;
            ``None``: the same beta distribution as the other modes.
        data: the dataset and its split.
        eval: the evaluation at each beta.
        conditionings, seeds, out, publish, threads: which runs, where (see :class:`StudyRuns`).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden=64, num_layers=3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1000, batch_size=32, lr=1e-3, beta=BetaSampler(10.0, 50.0), sample_db=False, tensorboard=False))
    none_beta: float | None = 30.0
    data: DatasetConfig = field(default_factory=DatasetConfig)
    eval: OfflineEvalConfig = field(default_factory=OfflineEvalConfig)
    out: str = f"runs/studies/{NAME}"

    def __post_init__(self):
        self.check_runs()


# -- the dataset ----------------------------------------------------------------------------------
@dataclass
class OfflineDataset:
    """Random molecules split into a training set (the low rewards) and a held-out set.

    Attributes:
        train, heldout: ``N_train`` and ``N_heldout`` terminal states.
        train_log_reward, heldout_log_reward: ``[N_train]`` and ``[N_heldout]``, ``log R``.
        train_smiles, heldout_smiles: their canonical SMILES (no SMILES is in both).
        pool_log_reward: ``[N_pool]``, ``log R`` of every distinct molecule not held out; the
            training set is its lowest ``train_fraction``.
    """

    train: object
    train_log_reward: torch.Tensor
    train_smiles: list[str]
    heldout: object
    heldout_log_reward: torch.Tensor
    heldout_smiles: list[str]
    pool_log_reward: torch.Tensor

    def save(self, path: str | Path, settings: dict) -> None:
        """Write the dataset and the ``settings`` it was built with (plain tensors, atomically)."""
        state = {k: asdict(v) if k in ("train", "heldout") else v for k, v in self.__dict__.items()}
        with atomic_write(path, "wb") as f:
            torch.save({"settings": settings, "dataset": state}, f)

    @classmethod
    def load(cls, path: str | Path, env, settings: dict) -> "OfflineDataset | None":
        """The dataset saved at ``path`` if it was built with ``settings``, else ``None``."""
        if not Path(path).is_file():
            return None
        saved = torch.load(path, weights_only=True)
        if saved["settings"] != settings:
            return None
        d = saved["dataset"]
        states = type(env.initial(1))
        return cls(**{**d, "train": states(**d["train"]), "heldout": states(**d["heldout"])})

    def rows(self) -> list[dict]:
        """Every molecule as ``{"smiles", "reward", "split"}`` (``train`` or ``heldout``)."""
        return ([{"smiles": s, "reward": r, "split": "train"}
                 for s, r in zip(self.train_smiles, self.train_log_reward.exp().tolist())]
                + [{"smiles": s, "reward": r, "split": "heldout"}
                   for s, r in zip(self.heldout_smiles, self.heldout_log_reward.exp().tolist())])


@torch.no_grad()
def build_dataset(env, reward: RewardFn, cfg: DatasetConfig, log_reward_floor: float = 1e-8) -> OfflineDataset:
    """Draw ``cfg.size`` molecules with the uniformly random policy, score them, drop invalid ones
    and repeats (by canonical SMILES), hold ``cfg.heldout`` of them out at random and keep the
    lowest-reward ``cfg.train_fraction`` of the rest for training."""
    g = torch.Generator().manual_seed(cfg.seed)
    uniform = uniform_sampler(env)
    states, log_r, smiles, seen = [], [], [], set()
    for start in range(0, cfg.size, cfg.batch_size):
        n = min(cfg.batch_size, cfg.size - start)
        terminal = uniform(n, g)
        mols = [env.to_mol(terminal, i) for i in range(n)]
        scored = score_molecules(reward, mols, log_reward_floor, "floor")
        batch_smiles = env.to_smiles(terminal)
        keep = []
        for i, s in enumerate(batch_smiles):
            if not scored.invalid[i] and s not in seen:
                seen.add(s)
                keep.append(i)
        idx = torch.tensor(keep, dtype=torch.long)
        states.append(terminal[idx])
        log_r.append(scored.log_reward[idx])
        smiles += [batch_smiles[i] for i in keep]
    states, log_r = type(states[0]).cat(states), torch.cat(log_r)
    if len(smiles) <= cfg.heldout:
        raise ValueError(f"only {len(smiles)} distinct molecules in {cfg.size} draws: fewer than data.heldout + 1")
    order = torch.randperm(len(smiles), generator=g)
    held, pool = order[:cfg.heldout], order[cfg.heldout:]
    n_train = max(1, int(cfg.train_fraction * len(pool)))
    train = pool[torch.argsort(log_r[pool], stable=True)[:n_train]]
    return OfflineDataset(states[train], log_r[train], [smiles[i] for i in train.tolist()],
                          states[held], log_r[held], [smiles[i] for i in held.tolist()], log_r[pool])


def dataset_for(cfg: OfflineGeneralizationConfig, env, reward: RewardFn) -> OfflineDataset:
    """The study's dataset: read from ``cfg.out/dataset.pt`` when it was built with the same
    task and data settings, else built and written there (with ``dataset.csv``)."""
    settings = {"task": to_dict(cfg.task), "data": to_dict(cfg.data), "floor": cfg.train.log_reward_floor}
    path = Path(cfg.out) / "dataset.pt"
    data = OfflineDataset.load(path, env, settings)
    if data is None:
        data = build_dataset(env, reward, cfg.data, cfg.train.log_reward_floor)
        data.save(path, settings)
        write_csv(Path(cfg.out) / "dataset.csv", data.rows())
    return data


# -- one run --------------------------------------------------------------------------------------
def train_run(cfg: OfflineGeneralizationConfig, data: OfflineDataset, spec: RunSpec, folder: Path,
              progress: bool = True, callbacks: Sequence[Callback] = ()) -> dict:
    """Train one (mode, seed) run offline on ``data.train`` into ``folder``, evaluate it at every
    beta (:func:`evaluate_betas`, also written to ``eval.csv``) and return ``{"train_seconds",
    "eval_seconds", "eval": rows}``. ``callbacks`` go to the trainer."""
    env, reward = build_task(cfg.task)
    torch.manual_seed(spec.seed)
    gfn = TemperatureGFlowNet.build(env, replace(cfg.model, conditioning=spec.conditioning))
    dataset = ReplayBuffer.from_states(data.train, data.train_log_reward)
    trainer = Trainer(env, gfn, None, cfg.train_config(spec), folder, dataset=dataset, callbacks=list(callbacks))
    t0 = time.perf_counter()
    history = trainer.train(progress=progress)
    t1 = time.perf_counter()
    rows = evaluate_betas(gfn, env, reward, data, cfg.eval)
    write_csv(folder / "eval.csv", rows)
    return {"train_seconds": t1 - t0, "eval_seconds": time.perf_counter() - t1, "eval": rows,
            "fit": training_fit([m["loss"] for m in history])}


def training_fit(losses: Sequence[float]) -> dict:
    """``{"loss_first", "loss_last"}``: the mean trajectory-balance loss over the first and the
    last tenth of the ``[steps]`` ``losses`` (at least one step each). A loss that rises rather
    than falls means the run failed to fit its training set, and its evaluation then says nothing
    about generalization."""
    if not losses:
        raise ValueError("training_fit of no steps")
    n = max(1, len(losses) // 10)
    return {"loss_first": float(np.mean(losses[:n])), "loss_last": float(np.mean(losses[-n:]))}


def add_missing_fits(out: str | Path, results: Sequence[dict]) -> None:
    """Give each result that lacks ``fit`` (a run finished before the study recorded it) the fit
    read from its run's ``metrics.jsonl``, and write it back to its ``result.json``; a run whose
    metrics are gone keeps none."""
    for result in results:
        folder = RunSpec(result["conditioning"], result["seed"]).folder(out)
        metrics = folder / "metrics.jsonl"
        if "fit" in result or not metrics.is_file():
            continue
        with open(metrics) as f:
            result["fit"] = training_fit([json.loads(line)["loss"] for line in f if line.strip()])
        with atomic_write(folder / RESULT_FILE) as f:
            json.dump(result, f, indent=1)


def evaluate_betas(gfn, env, reward: RewardFn, data: OfflineDataset, cfg: OfflineEvalConfig) -> list[dict]:
    """One row per beta of ``cfg.betas``: ``beta``, the held-out molecules' mean log-likelihood,
    its ``spearman`` and ``pearson`` correlation with their ``log R`` (NaN where undefined: a
    constant likelihood), and the ``mean_reward``, ``top_k_reward`` and ``unique_fraction`` of
    ``cfg.samples`` molecules sampled at that beta."""
    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    # sampling far outside the trained range is this study's question, not a user's slip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaRangeWarning)
        for beta in cfg.betas:
            ll = log_likelihood(gfn, env, data.heldout, beta, cfg.likelihood_samples, g)
            try:
                corr = correlations(ll, data.heldout_log_reward)
            except ValueError:  # a model that gives every held-out molecule the same likelihood
                corr = {"spearman": math.nan, "pearson": math.nan}
            response = temperature_response(sample_molecules(gfn, env, reward, beta, cfg.samples, seed=cfg.seed),
                                            cfg.top_k)[0]
            rows.append({"beta": float(beta), "heldout_log_likelihood": ll.mean().item(), **corr,
                         "mean_reward": response["mean_reward"], "top_k_reward": response["top_k_reward"],
                         "unique_fraction": response["unique_fraction"]})
    return rows


# -- the report -----------------------------------------------------------------------------------
METRICS = (  # (eval key, Markdown heading, decimals)
    ("spearman", "Spearman correlation of held-out log p(x | beta) with log R(x)", 3),
    ("pearson", "Pearson correlation of held-out log p(x | beta) with log R(x)", 3),
    ("heldout_log_likelihood", "Mean held-out log p(x | beta)", 2),
    ("mean_reward", "Mean reward of samples", 3),
    ("top_k_reward", "Top-{k} reward of samples (distinct molecules)", 3),
    ("unique_fraction", "Distinct fraction of samples", 2),
)
PLOTTED = ("mean_reward", "top_k_reward", "spearman")


def summarise(cfg: OfflineGeneralizationConfig, results: Sequence[dict]) -> list[dict]:
    """One row per (mode, beta): ``conditioning``, ``beta``, ``seeds`` and ``<metric>_mean`` /
    ``<metric>_std`` over seeds for each of :data:`METRICS`."""
    rows = []
    for c in cfg.conditionings:
        mine = [r for r in results if r["conditioning"] == c]
        for j, beta in enumerate(cfg.eval.betas):
            row = {"conditioning": c, "beta": beta, "seeds": len(mine)}
            for key, _, _ in METRICS:
                row[f"{key}_mean"], row[f"{key}_std"] = R.mean_std([r["eval"][j][key] for r in mine])
            rows.append(row)
    return rows


def write_report(cfg: OfflineGeneralizationConfig, results: Sequence[dict], data: OfflineDataset,
                 command: str) -> list[Path]:
    """Write ``offline_generalization.md``, ``.csv`` and ``.png`` into ``cfg.out``; returns their paths."""
    out = Path(cfg.out)
    rows = summarise(cfg, results)
    paths = [out / f"{NAME}.md", out / f"{NAME}.csv", out / f"{NAME}.png"]
    write_csv(paths[1], rows)
    betas, t = cfg.eval.betas, cfg.train
    lo, hi = t.beta.low, t.beta.high
    cols = [f"**{b:g}**" if lo <= b <= hi else f"{b:g}" for b in betas]
    train_r, held_r = data.train_log_reward.exp(), data.heldout_log_reward.exp()
    parts = [
        f"# Offline generalization on {cfg.task.name}\n\n{R.provenance(command)}\n\n"
        f"Dataset: {cfg.data.size} molecules from the uniformly random policy, {len(data.heldout_smiles)} held out "
        f"(reward {held_r.min():.3f} to {held_r.max():.3f}, median {held_r.median():.3f}; "
        f"{float((held_r > train_r.max()).float().mean()):.0%} above every training reward), and the "
        f"{len(data.train_smiles)} lowest-reward molecules ({cfg.data.train_fraction:g} of the rest, reward <= "
        f"{train_r.max():.3f}) for training. {t.steps} offline TB steps of batch {t.batch_size} at beta ~ "
        f"{t.beta.kind}[{lo:g}, {hi:g}] (bold: inside it; `none` trains at beta = {cfg.none_beta}), "
        f"{cfg.model.num_layers}x{cfg.model.hidden} graph transformer, lr {t.lr}. At each beta: "
        f"{cfg.eval.likelihood_samples} backward trajectories per held-out molecule for its likelihood, "
        f"{cfg.eval.samples} molecules sampled. Mean ± standard deviation over seeds "
        f"{', '.join(map(str, cfg.seeds))}."]
    for key, heading, d in METRICS:
        body = [[c + _seeds_note(cfg, results, c)] + [R.cell(r[f"{key}_mean"], r[f"{key}_std"], d)
                                                     for r in rows if r["conditioning"] == c]
                for c in cfg.conditionings]
        parts.append(f"## {heading.format(k=cfg.eval.top_k)}\n\n" + markdown_table(["mode", *cols], body))
    fits = [[c] + [_fit_cell([r["fit"][k] for r in results if r["conditioning"] == c and "fit" in r])
                   for k in ("loss_first", "loss_last")] for c in cfg.conditionings]
    parts.append("## Training fit: trajectory-balance loss, mean over the first and last tenth of steps\n\n"
                 "A loss that rises means the run did not fit its training set, and the tables above then "
                 "measure a failed fit, not generalization.\n\n"
                 + markdown_table(["mode", "first tenth", "last tenth"], fits))
    timing = [[c] + [R.cell(*R.mean_std([r[k] for r in results if r["conditioning"] == c]), 1)
                     for k in ("train_seconds", "eval_seconds")] for c in cfg.conditionings]
    parts.append("## Wall time per run (s)\n\n" + markdown_table(["mode", "training", "evaluation"], timing))
    with atomic_write(paths[0]) as f:
        f.write("\n\n".join(parts) + "\n")
    plot_metrics(cfg, results, paths[2])
    return paths


def _fit_cell(values: Sequence[float]) -> str:
    return R.cell(*R.mean_std(values), 1) if values else "not recorded"


def _seeds_note(cfg: OfflineGeneralizationConfig, results: Sequence[dict], c: str) -> str:
    n = sum(r["conditioning"] == c for r in results)
    return "" if n == len(cfg.seeds) else f" ({n} of {len(cfg.seeds)} seeds)"


def plot_metrics(cfg: OfflineGeneralizationConfig, results: Sequence[dict], path: Path) -> None:
    """Mean reward, top-k reward and Spearman correlation against beta (log scale): one line
    per mode, one standard deviation over seeds shaded, the training range in grey."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    titles = {"mean_reward": "mean reward of samples", "top_k_reward": f"top-{cfg.eval.top_k} reward of samples",
              "spearman": "Spearman(log p(x|beta), log R), held out"}
    fig = Figure(figsize=(5 * len(PLOTTED), 4))
    axes = fig.subplots(1, len(PLOTTED))
    for ax, key in zip(axes, PLOTTED):
        for c in cfg.conditionings:
            ys = np.array([[e[key] for e in r["eval"]] for r in results if r["conditioning"] == c])
            R.band(ax, cfg.eval.betas, ys, c, marker="o")
        ax.axvspan(cfg.train.beta.low, cfg.train.beta.high, color="grey", alpha=0.15, label="training range")
        ax.set(xscale="log", xlabel="beta", title=titles[key])
    axes[0].legend(fontsize=8)
    save_png(fig, path)


# -- command line ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``lgfn study offline_generalization [--config F] [--out D] [--seeds 0,1] [--modes logit,layer]
    [--quick] [key=value ...]``: build (or reuse) the dataset, run every (mode, seed) not yet
    finished, then write the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = study_parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    cfg = study_config(OfflineGeneralizationConfig, args, QUICK)
    torch.set_num_threads(cfg.threads)
    progress = not args.no_progress
    env, reward = build_task(cfg.task)
    data = dataset_for(cfg, env, reward)
    specs = run_specs(cfg.conditionings, cfg.seeds)
    results, skipped = run_all(cfg.out, specs, cfg.settings(),
                               lambda spec, folder, p: train_run(cfg, data, spec, folder, p), progress, NAME,
                               defaults=cfg.default_settings(), only_finished=args.report_only)
    results = with_other_finished(cfg.out, results, cfg.settings(), cfg.default_settings())
    if not results:
        raise ConfigError(f"no finished runs in {cfg.out} to report")
    add_missing_fits(cfg.out, results)
    cfg = reported(cfg, results)
    if skipped:
        tqdm.write(f"{skipped} of {len(specs)} runs had finished before and were skipped")
    paths = write_report(cfg, results, data, " ".join(["lgfn study", NAME, *argv]))
    if cfg.publish:
        R.publish(paths, cfg.publish)
    print(paths[0].read_text())
    return 0
