r"""Training speed over widening beta ranges: exact L1 to R^beta / Z against training steps.

The paper's first claim: a temperature-conditional GFlowNet trains faster when a learned
g(beta) scales its logits than when beta enters its layers, the more so the wider the beta
range. On a task small enough to enumerate (:mod:`lgfn_graph.exact`), every conditioning mode
trains with the same settings at beta ~ log-uniform[1, high] for each ``high`` of ``ranges``
(16, 128, 1024); ``none`` cannot read beta and trains at the range's geometric middle
(``none_beta = None``) or a fixed ``none_beta``. At step 0 and at each of ``checkpoints``
(100, 250, 500, 1000, 1500) the study computes, with no sampling, the exact L1 distance
``sum_x |p(x | beta) - R(x)^beta / Z(beta)|`` (0: exact, 2: disjoint) at ``eval_betas``
betas spread log-evenly across the range (both ends included).

It also measures the mechanism the paper names: how much the size of a trajectory's gradient
depends on beta. At each evaluation beta, ``grad_trajectories`` trajectories are sampled
on-policy and the norm of the gradient of each one's trajectory-balance loss with respect to
the policy's parameters (backbone, heads, logit scaler; not log Z) is taken; the *spread* is
``log10(max / min)`` over the betas of the median norm (0: the same size at every beta). It is
measured at initialisation and after training.

Writes into ``--out`` (default ``runs/studies/beta_ranges``): ``beta_ranges.md`` (per range, a
row per mode: mean L1 over the evaluation betas at each checkpoint, the final L1 at the two
ends of the range and the gradient-norm spread, mean ± standard deviation over seeds),
``beta_ranges.csv`` (a row per range, mode and checkpoint) and ``beta_ranges.png`` (mean L1
against steps, one panel per range, one standard deviation over seeds shaded); each run keeps
``range_1_<high>/runs/<mode>/seed<k>/result.json``.

Cost of the defaults (``tiny_frag``, 3x64 graph transformer, 1,500 steps of batch 32; 3
ranges x 4 modes x 3 seeds) on one core of the 2-core development machine: about a minute a
run, half an hour for the study.

Run: ``lgfn study beta_ranges`` (``--config configs/studies/beta_ranges_seh.yaml`` for the
sharper sEH reward on the same molecules); ``--quick`` for a smoke run.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from rdkit import Chem
from tqdm.auto import tqdm

from .. import exact
from ..betas import BetaSampler, check_beta
from ..config import ConfigError
from ..files import atomic_write, markdown_table, save_png, write_csv
from ..policy import ModelConfig, TemperatureGFlowNet
from ..rewards import score_molecules
from ..sampler import sample_trajectories
from ..task import TaskConfig, build_task
from ..trainer import Objective, Trainer, TrainConfig
from . import _report as R
from ._cli import study_config, study_parser
from ._runs import RunSpec, StudyRuns, reported, run_all, run_specs, with_other_finished

NAME = "beta_ranges"
GRAD_FLOOR = 1e-12  # the smallest gradient norm the spread tells apart from zero

QUICK = ("model.hidden=16", "model.num_layers=1", "model.heads=1", "train.steps=6", "train.batch_size=8",
         "checkpoints=[3,6]", "ranges=[4,64]", "eval_betas=3", "grad_trajectories=2", "seeds=[0]")


@dataclass
class BetaRangesConfig(StudyRuns):
    """The beta-ranges study.

    Args:
        task: an enumerable task (``tiny_frag``: 97 molecules).
        model: the model of every run (its ``conditioning`` is replaced by each run's mode).
        train: training of every run (its ``beta`` is replaced by each range's, its ``seed`` by
            each run's).
        ranges: the high ends of the training ranges, beta ~ log-uniform[1, high].
        checkpoints: the steps (increasing, the last at most ``train.steps``) where L1 is measured.
        eval_betas: betas, spread log-evenly over each range, where L1 and gradients are measured.
        grad_trajectories: trajectories per beta for the gradient-norm spread.
        none_beta: the fixed beta of ``none``; ``None``: each range's geometric middle.
        conditionings, seeds, out, publish, threads: which runs, where (see :class:`StudyRuns`).
    """

    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="tiny_frag"))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(hidden=64, num_layers=3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1500, batch_size=32, lr=3e-3, lr_log_z=3e-2, tensorboard=False, sample_db=False))
    ranges: list[float] = field(default_factory=lambda: [16.0, 128.0, 1024.0])
    checkpoints: list[int] = field(default_factory=lambda: [100, 250, 500, 1000, 1500])
    eval_betas: int = 5
    grad_trajectories: int = 16
    none_beta: float | None = None
    out: str = f"runs/studies/{NAME}"

    def __post_init__(self):
        self.check_runs()
        if not self.ranges:
            raise ValueError("ranges is empty")
        check_beta(self.ranges, "ranges")
        if min(self.ranges) <= 1.0:
            raise ValueError(f"every range's high end must be > 1 (the low end is 1), got {self.ranges}")
        steps = self.checkpoints
        if not steps or any(b <= a for a, b in zip(steps, steps[1:])) or steps[0] < 1 or steps[-1] > self.train.steps:
            raise ValueError(f"checkpoints must increase from >= 1 to at most train.steps ({self.train.steps}), "
                             f"got {steps}")
        if self.eval_betas < 2:
            raise ValueError(f"eval_betas must be >= 2 (both ends of a range), got {self.eval_betas}")
        if self.grad_trajectories < 1:
            raise ValueError(f"grad_trajectories must be >= 1, got {self.grad_trajectories}")

    def betas(self, high: float) -> list[float]:
        """The evaluation betas of the range [1, ``high``]: ``eval_betas`` log-spaced, ends included."""
        return [float(b) for b in np.geomspace(1.0, high, self.eval_betas)]

    def range_train_config(self, high: float, spec: RunSpec) -> TrainConfig:
        """The training settings of one run in the range [1, ``high``]."""
        if spec.conditioning == "none":
            beta = BetaSampler.constant(self.none_beta if self.none_beta is not None else math.sqrt(high))
        else:
            beta = BetaSampler(1.0, high, "log_uniform")
        return replace(self.train, seed=spec.seed, beta=beta)


@dataclass
class ExactTask:
    """An enumerated task: its environment, its reward (answered from a table of every terminal
    molecule's reward, so that a slow reward such as the sEH proxy costs nothing per step),
    the state space and ``log R`` of every state."""

    env: object
    reward: "TableReward"
    space: exact.StateSpace
    log_reward: torch.Tensor

    @classmethod
    def build(cls, cfg: TaskConfig, floor: float) -> "ExactTask":
        env, reward = build_task(cfg)
        space = exact.enumerate_states(env)
        terminal = space.terminal.nonzero().flatten().tolist()
        mols = [env.to_mol(space.states, i) for i in terminal]
        table = TableReward(reward, [Chem.MolToSmiles(m) for m in mols], reward(mols))
        return cls(env, table, space, exact.terminal_log_rewards(space, env, table, floor))


class TableReward:
    """A reward answered from a table of SMILES -> reward, falling back to ``reward`` for a
    molecule the table lacks. ``B`` molecules -> ``[B]``."""

    def __init__(self, reward, smiles: Sequence[str], values: torch.Tensor):
        self.fallback = reward
        self.table = dict(zip(smiles, values.tolist()))

    def __call__(self, mols) -> torch.Tensor:
        keys = [Chem.MolToSmiles(m) for m in mols]
        missing = [i for i, k in enumerate(keys) if k not in self.table]
        if missing:
            for i, v in zip(missing, self.fallback([mols[i] for i in missing]).tolist()):
                self.table[keys[i]] = v
        return torch.tensor([self.table[k] for k in keys], dtype=torch.float32)


def policy_parameters(gfn: TemperatureGFlowNet) -> list[torch.nn.Parameter]:
    """The parameters of the forward policy: everything but log Z(beta)."""
    skip = {id(p) for p in gfn.log_z.parameters()}
    return [p for p in gfn.parameters() if id(p) not in skip and p.requires_grad]


def trajectory_grad_norms(gfn: TemperatureGFlowNet, task: ExactTask, config: TrainConfig, beta: float, n: int,
                          generator: torch.Generator) -> torch.Tensor:
    """The norm of the gradient of each of ``n`` on-policy trajectories' loss (the configured
    objective at ``beta``) with respect to :func:`policy_parameters`, ``[n]``."""
    b = torch.full((n,), float(beta))
    with torch.no_grad():
        traj = sample_trajectories(gfn, task.env, b, 0.0, generator)
    mols = [task.env.to_mol(traj.terminal, i) for i in range(n)]
    log_r = score_molecules(task.reward, mols, config.log_reward_floor, "floor").log_reward
    losses = Objective(gfn, task.env, config)(traj, log_r, b)
    params = policy_parameters(gfn)
    norms = []
    for i in range(n):
        grads = torch.autograd.grad(losses[i], params, retain_graph=i + 1 < n, allow_unused=True)
        norms.append(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))
    return torch.stack(norms).float()


def grad_norm_spread(gfn, task: ExactTask, config: TrainConfig, betas: Sequence[float], n: int,
                     seed: int) -> tuple[float, list[float]]:
    """``(log10(max / min) of the median gradient norm over betas, the medians)``; a median of 0
    (a policy saturated at some beta: no gradient at all) counts as :data:`GRAD_FLOOR`."""
    g = torch.Generator().manual_seed(seed)
    medians = [float(trajectory_grad_norms(gfn, task, config, b, n, g).median()) for b in betas]
    return math.log10(max(max(medians), GRAD_FLOOR) / max(min(medians), GRAD_FLOOR)), medians


def train_run(cfg: BetaRangesConfig, task: ExactTask, high: float, spec: RunSpec, folder: Path,
              progress: bool = True) -> dict:
    """Train one (range, mode, seed) run and return its results: ``l1`` (``[checkpoint][beta]``,
    with step 0 first), ``steps``, ``betas``, the gradient-norm spread and medians at ``init``
    and ``end``, ``wall_seconds``, and ``diverged_at``: the step at which training stopped on
    persistently non-finite gradients (later checkpoints then repeat that model's L1), or ``None``."""
    torch.manual_seed(spec.seed)
    gfn = TemperatureGFlowNet.build(task.env, replace(cfg.model, conditioning=spec.conditioning))
    tc = cfg.range_train_config(high, spec)
    betas = cfg.betas(high)
    l1 = [_l1(gfn, task, betas)]
    spread0, med0 = grad_norm_spread(gfn, task, tc, betas, cfg.grad_trajectories, spec.seed + 10_000)
    wanted = set(cfg.checkpoints)

    def measure(trainer, batch, metrics):
        if trainer.step in wanted:
            l1.append(_l1(gfn, task, betas))

    trainer = Trainer(task.env, gfn, task.reward, replace(tc, steps=cfg.checkpoints[-1]), folder,
                      callbacks=[measure])
    t0 = time.perf_counter()
    diverged_at = None
    try:
        trainer.train(progress=progress)
    except FloatingPointError as e:
        # a run whose gradients stay non-finite is a result, not a crash: the trainer keeps the
        # parameters from before those steps, and the model stays there for the later checkpoints
        diverged_at = trainer.step
        trainer.save()  # the model it stopped with, for inspection
        print(f"{folder}: diverged at step {diverged_at} ({' '.join(str(e).split())[:200]})", file=sys.stderr)
        l1 += [_l1(gfn, task, betas)] * (len(cfg.checkpoints) + 1 - len(l1))
    wall = time.perf_counter() - t0
    spread1, med1 = grad_norm_spread(gfn, task, tc, betas, cfg.grad_trajectories, spec.seed + 20_000)
    return {"steps": [0, *cfg.checkpoints], "betas": betas, "l1": l1, "grad_spread_init": spread0,
            "grad_spread_end": spread1, "grad_medians_init": med0, "grad_medians_end": med1,
            "wall_seconds": wall, "diverged_at": diverged_at}


def _l1(gfn, task: ExactTask, betas: Sequence[float]) -> list[float]:
    with torch.no_grad():
        return exact.l1_distance(gfn, task.env, task.space, task.log_reward, betas).tolist()


# -- the report -----------------------------------------------------------------------------------
def summarise(cfg: BetaRangesConfig, by_range: dict[float, list[dict]]) -> list[dict]:
    """One row per (range, mode, checkpoint): ``mean_l1`` (over the evaluation betas) mean and
    std over seeds, L1 at the low and high end of the range, and the gradient-norm spreads."""
    rows = []
    for high, results in by_range.items():
        for c in cfg.conditionings:
            mine = [r for r in results if r["conditioning"] == c]
            if not mine:
                continue
            for k, step in enumerate(mine[0]["steps"]):
                l1 = np.array([r["l1"][k] for r in mine])  # [seeds, betas]
                row = {"range_high": high, "conditioning": c, "seeds": len(mine), "step": step}
                row["mean_l1_mean"], row["mean_l1_std"] = R.mean_std(l1.mean(1))
                row["l1_low_mean"], row["l1_low_std"] = R.mean_std(l1[:, 0])
                row["l1_high_mean"], row["l1_high_std"] = R.mean_std(l1[:, -1])
                for when in ("init", "end"):
                    row[f"grad_spread_{when}_mean"], row[f"grad_spread_{when}_std"] = R.mean_std(
                        [r[f"grad_spread_{when}"] for r in mine])
                row["wall_seconds_mean"], row["wall_seconds_std"] = R.mean_std([r["wall_seconds"] for r in mine])
                row["diverged"] = sum(r.get("diverged_at") is not None for r in mine)
                rows.append(row)
    return rows


def write_report(cfg: BetaRangesConfig, by_range: dict[float, list[dict]], command: str,
                 n_terminal: int) -> list[Path]:
    """Write ``beta_ranges.md``, ``.csv`` and ``.png`` into ``cfg.out``; returns their paths."""
    out = Path(cfg.out)
    rows = summarise(cfg, by_range)
    paths = [out / f"{NAME}.md", out / f"{NAME}.csv", out / f"{NAME}.png"]
    write_csv(paths[1], rows)
    t = cfg.train
    parts = [f"# Exact L1 over widening beta ranges on {cfg.task.name}"
             f"{' (reward ' + cfg.task.reward + ')' if cfg.task.reward else ''}",
             R.provenance(command),
             f"{n_terminal} terminal molecules, enumerated. Each mode trains with trajectory balance, batch "
             f"{t.batch_size}, lr {t.lr} (log Z {t.lr_log_z}), epsilon {t.epsilon}, at beta ~ log-uniform[1, high] "
             f"(`none`: {'the geometric middle of the range' if cfg.none_beta is None else cfg.none_beta}), "
             f"{cfg.model.num_layers}x{cfg.model.hidden} graph transformer, beta encoding "
             f"`{cfg.model.beta_encoding}`. Mean L1: the exact L1 to R^beta/Z averaged over {cfg.eval_betas} "
             "betas spread log-evenly over the range (0 exact, 2 disjoint); mean ± standard deviation over seeds "
             f"{', '.join(map(str, cfg.seeds))}. Gradient spread: log10(max/min) over those betas of the median "
             f"per-trajectory gradient norm of the policy ({cfg.grad_trajectories} on-policy trajectories per beta), "
             "at initialisation and after training. A run whose gradients stay non-finite for "
             f"{t.max_skipped_steps} steps in a row stops there (\"diverged\"); its later checkpoints repeat the "
             "L1 of the model it stopped with."]
    for high, results in by_range.items():
        mine = [r for r in rows if r["range_high"] == high]
        steps = sorted({r["step"] for r in mine})
        header = ["mode", *[f"L1 @ {s}" for s in steps], "final L1 @ beta 1", f"final L1 @ beta {high:g}",
                  "grad spread init", "grad spread end"]
        body = []
        for c in cfg.conditionings:
            rs = [r for r in mine if r["conditioning"] == c]
            if not rs:
                continue
            last = rs[-1]
            note = "" if last["seeds"] == len(cfg.seeds) else f" ({last['seeds']} of {len(cfg.seeds)} seeds)"
            if last["diverged"]:
                note += f" (diverged: {last['diverged']} of {last['seeds']})"
            body.append([c + note, *[R.cell(r["mean_l1_mean"], r["mean_l1_std"], 3) for r in rs],
                         R.cell(last["l1_low_mean"], last["l1_low_std"], 3),
                         R.cell(last["l1_high_mean"], last["l1_high_std"], 3),
                         R.cell(last["grad_spread_init_mean"], last["grad_spread_init_std"], 2),
                         R.cell(last["grad_spread_end_mean"], last["grad_spread_end_std"], 2)])
        betas = ", ".join(f"{b:.3g}" for b in cfg.betas(high))
        parts.append(f"## beta ~ log-uniform[1, {high:g}] (evaluated at {betas})\n\n"
                     + markdown_table(header, body))
    with atomic_write(paths[0]) as f:
        f.write("\n\n".join(parts) + "\n")
    plot_l1(cfg, by_range, paths[2])
    return paths


def plot_l1(cfg: BetaRangesConfig, by_range: dict[float, list[dict]], path: Path) -> None:
    """Mean exact L1 against training steps, one panel per range, one line per mode, one
    standard deviation over seeds shaded."""
    from matplotlib.figure import Figure  # not pyplot: no backend is chosen or switched

    fig = Figure(figsize=(4.5 * len(by_range), 3.8))
    axes = fig.subplots(1, len(by_range), squeeze=False)
    for ax, (high, results) in zip(axes[0], by_range.items()):
        for c in cfg.conditionings:
            mine = [r for r in results if r["conditioning"] == c]
            if mine:
                R.band(ax, mine[0]["steps"], np.array([np.mean(r["l1"], axis=1) for r in mine]), c, marker="o")
        ax.set(xlabel="training steps", ylabel="mean exact L1", ylim=(0, 2), title=f"beta ~ log-U[1, {high:g}]")
    axes[0][0].legend(fontsize=8)
    save_png(fig, path)


# -- command line ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``lgfn study beta_ranges [--config F] [--out D] [--seeds 0,1] [--modes logit,layer]
    [--quick] [--report-only] [key=value ...]``: run every (range, mode, seed) not yet finished,
    then write the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = study_parser(NAME, __doc__.splitlines()[0]).parse_args(argv)
    cfg = study_config(BetaRangesConfig, args, QUICK)
    torch.set_num_threads(cfg.threads)
    progress = not args.no_progress
    task = ExactTask.build(cfg.task, cfg.train.log_reward_floor)
    by_range, skipped = {high: [] for high in cfg.ranges}, 0
    # seed by seed, every range within a seed: a study stopped early has compared every mode
    # over every range on its first seeds
    for seed in cfg.seeds:
        for high in cfg.ranges:
            results, n = run_all(Path(cfg.out) / f"range_1_{high:g}", run_specs(cfg.conditionings, [seed]),
                                 {**cfg.settings(), "range_high": high},
                                 lambda spec, folder, p, h=high: train_run(cfg, task, h, spec, folder, p), progress,
                                 f"{NAME} [1, {high:g}] seed {seed}",
                                 defaults={**cfg.default_settings(), "range_high": high},
                                 only_finished=args.report_only)
            skipped += n
            by_range[high] += results
    by_range = {high: with_other_finished(Path(cfg.out) / f"range_1_{high:g}", results,
                                          {**cfg.settings(), "range_high": high},
                                          {**cfg.default_settings(), "range_high": high})
                for high, results in by_range.items()}
    by_range = {high: results for high, results in by_range.items() if results}
    if not by_range:
        raise ConfigError(f"no finished runs in {cfg.out} to report")
    if skipped:
        tqdm.write(f"{skipped} runs had finished before and were skipped")
    cfg = reported(cfg, [r for results in by_range.values() for r in results])
    paths = write_report(cfg, by_range, " ".join(["lgfn study", NAME, *argv]), int(task.space.terminal.sum()))
    if cfg.publish:
        R.publish(paths, cfg.publish)
    print(paths[0].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
