"""The lgfn command: train a temperature-conditional GFlowNet, sample it, sweep beta, run studies.

Errors a user can cause (a missing file, a bad beta, an unknown configuration key, an output
folder another process trains in, a full disk or an unwritable folder) print one line to stderr
and exit with status 2. SIGINT (Ctrl-C), SIGTERM and SIGHUP exit with 128 + the signal's number
(130, 143, 129), training saving a checkpoint first; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import csv
import errno
import importlib
import pkgutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Sequence

from .checkpoint import CheckpointError, load_model
from .checks import is_import_path, parse_device
from .config import ConfigError, RunConfig, from_dict, load_config
from .datasets import DatasetError
from .evaluate import sample_molecules, temperature_sweep
from .featurize import FeaturizeError
from .files import atomic_write, write_csv
from .fragments import FragmentLibraryError
from .metrics import best_rewards
from .nn import BackboneContractError, BackboneError
from .proxy_base import ProxyError
from .proxy_cli import add_fit_arguments, fit_proxy
from .run import format_summary, parse_betas, train_and_sweep
from .runfolder import RunFolderError
from .seh_proxy import SEHProxyError, WeightsUnavailableError
from .task import TASKS, RewardImportError, TaskConfig, build_reward, reward_name
from .usage import ArgumentParser, UsageError

STUDIES_PACKAGE = "lgfn_graph.studies"


USER_ERRORS = (UsageError, ConfigError, RewardImportError, CheckpointError, FragmentLibraryError, FeaturizeError,
               SEHProxyError, WeightsUnavailableError, RunFolderError, BackboneError, BackboneContractError, DatasetError,
               ProxyError)

# the file system refusing a write (a full disk, no permission, a file where a folder should be):
# the user's to fix, not a bug
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                      errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EIO, errno.ENOLCK}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lgfn`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line  # restored on leaving: main also runs in-process
            return args.command(args)
    except USER_ERRORS as e:
        return _error(str(e))
    except OSError as e:
        if e.errno not in FILE_SYSTEM_ERRORS:
            raise
        # written atomically, the files finished before (the last checkpoint) are intact
        return _error(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    except KeyboardInterrupt as e:
        # the trainer saves a checkpoint before it lets a first signal through (TrainingInterrupted)
        print(f"lgfn: interrupted{': ' if str(e) else ''}{e}", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)


def _error(message: str) -> int:
    print(f"lgfn: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning during a command (a beta far outside the trained range, another task's reward)
    as one line, like errors, without the source line Python would print under it."""
    _warn(str(message))


def _warn(message: str) -> None:
    print(f"lgfn: warning: {' '.join(message.split())}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``lgfn`` and its subcommands; each sets ``command`` to the function running it."""
    p = ArgumentParser(prog="lgfn", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(title="commands", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train, checkpoint, then sample at each evaluation beta",
                       description="Train as the YAML config and key=value overrides say (e.g. train.steps=100 "
                                   "model.conditioning=layer train.beta.high=64), write checkpoint.pt, "
                                   "metrics.jsonl and config.yaml into the output folder, then sample at each "
                                   "of eval.betas. The folder is locked while training: a second process there "
                                   "is refused. SIGINT (Ctrl-C), SIGTERM and SIGHUP finish the step, save a "
                                   "checkpoint and exit; a second signal exits at once.",
                       epilog="exit status: 0 done; 2 a user error, on one line (bad config, folder in use, "
                              "nothing to resume, a change a resume refuses, a full disk or unwritable folder: "
                              "the last checkpoint stays valid); 128 + N stopped by signal N: 130 SIGINT, "
                              "143 SIGTERM, 129 SIGHUP.")
    t.add_argument("--config", help="YAML run configuration (default: the built-in one, task qed_frag; with "
                                    "--resume, applied on top of the run's own config.yaml)")
    t.add_argument("--out", help="output folder (overrides the config's out)")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run whose checkpoint.pt is in the output folder, exactly, up to "
                            "train.steps; its config.yaml is the base config. Only train.steps, "
                            "train.checkpoint_every, train.device, train.tensorboard and eval.* may change. "
                            "A folder without a checkpoint is an error")
    again.add_argument("--resume-or-start", action="store_true",
                       help="--resume if the output folder holds a checkpoint, else start the run there (for a "
                            "command a scheduler reruns after preempting it)")
    t.add_argument("--device", help="where the model trains: cpu, cuda or cuda:K (overrides train.device; under "
                                    "torchrun, cuda is each process's own GPU)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides, applied in order; before, between or after the options")
    t.set_defaults(command=train)

    s = sub.add_parser("sample", help="sample molecules from a checkpoint at one beta")
    _checkpoint_args(s)
    s.add_argument("--beta", type=_beta, required=True, help="inverse temperature (> 0)")
    s.add_argument("--n", type=_positive, default=100, help="molecules to sample (default 100)")
    s.add_argument("--out", help="file to write: CSV (default: standard output) or, with --format pyg, the "
                                 "PyG dataset (.pt)")
    s.add_argument("--format", choices=["csv", "pyg"], default="csv",
                   help="csv (default) or pyg: atom-level PyG graphs with y = reward, beta and smiles, read back "
                        "with lgfn_graph.SampleDataset.from_file (needs --out)")
    s.add_argument("--fragment-graph", action="store_true",
                   help="with --format pyg: also store each molecule's fragment tree (frag_x, frag_edge_index, "
                        "frag_edge_attr)")
    s.add_argument("--grid", help="PNG to draw the best distinct molecules into, rewards as legends")
    s.add_argument("--top", type=_positive, default=12, help="molecules in the grid (default 12)")
    s.set_defaults(command=sample)

    e = sub.add_parser("evaluate", help="sample a checkpoint at several betas; print and plot the sweep")
    _checkpoint_args(e)
    e.add_argument("--betas", type=_betas, default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                   help="comma-separated betas (default 1,2,4,8,16,32,64)")
    e.add_argument("--n", type=_positive, default=256, help="molecules per beta (default 256)")
    e.add_argument("--out", help="folder for samples.csv, summary.csv and the plot (default: eval/ beside "
                                 "the checkpoint)")
    e.set_defaults(command=evaluate)

    st = sub.add_parser("study", help="run a study of lgfn_graph.studies; its own options follow its name",
                        description="Run the study lgfn_graph.studies.NAME with the arguments that follow its "
                                    "name; an unknown NAME lists the studies there are.")
    st.add_argument("name", help="the study")
    st.add_argument("args", nargs=argparse.REMAINDER, help="the study's own arguments")
    st.set_defaults(command=study)

    px = sub.add_parser("proxy", help="fit a proxy reward on a CSV of molecules and scores")
    fit = px.add_subparsers(title="commands", required=True, metavar="COMMAND").add_parser(
        "fit", help="fit a GNN or fingerprint proxy, print its held-out score, save it",
        description="Fit a proxy on a CSV (SMILES and value columns; bad rows skipped and counted), print "
                    "its held-out (gnn) or cross-validated (fingerprint) RMSE, R^2 and Spearman, and save "
                    "it with --out; train on it with task.reward_model=FILE.")
    add_fit_arguments(fit)
    fit.set_defaults(command=fit_proxy)
    return p


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by training")
    task = p.add_mutually_exclusive_group()
    task.add_argument("--task", choices=list(TASKS), help="the task whose reward scores the samples")
    task.add_argument("--config", help="the run's YAML config (its task section scores the samples)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default="cpu", type=_device, help="where the model runs: cpu, cuda or cuda:K (default cpu)")
    p.add_argument("--trust-code", action="store_true",
                   help="let the checkpoint name a backbone or reward by import path (package.module:name), "
                        "which imports that module and runs its code; refused without this flag")


def _beta(text: str) -> float:
    try:
        return parse_betas(text, "beta")[0]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _betas(text: str) -> list[float]:
    try:
        return parse_betas(text, "betas")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _device(text: str):
    try:
        return parse_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


# -- commands ---------------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides)
    if args.out is not None:
        cfg.out = args.out
    checkpoint = Path(cfg.out) / "checkpoint.pt"
    if args.resume and not checkpoint.is_file():
        # most likely a mistyped folder: training from scratch would hide it
        raise UsageError(f"--resume: no checkpoint to resume in {cfg.out} (is the folder right? to start a run "
                         "there when it has none, pass --resume-or-start)")
    resume = checkpoint.is_file() and (args.resume or args.resume_or_start)
    if checkpoint.exists() and not resume:
        # training afresh would overwrite it and append a second run to metrics.jsonl
        raise UsageError(f"{checkpoint} exists: pass --resume to continue it, or choose another --out")
    if resume:
        cfg = _resumed_config(Path(cfg.out), args.config, overrides)
    train_and_sweep(cfg, resume=resume, progress=not args.no_progress)
    return 0


def sample(args: argparse.Namespace) -> int:
    if args.format == "pyg" and args.out is None:
        raise UsageError("--format pyg needs --out FILE.pt (PyG data does not go to standard output)")
    if args.fragment_graph and args.format != "pyg":
        raise UsageError("--fragment-graph needs --format pyg")
    gfn, env, state = load_model(args.checkpoint, args.device, trust_code=args.trust_code)
    reward = build_reward(_task_config(args, state))
    if args.format == "pyg":
        rows = _sample_pyg(args, gfn, env, reward)
    else:
        rows = sample_molecules(gfn, env, reward, args.beta, args.n, seed=args.seed)
        if args.out is None:
            w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        else:
            write_csv(args.out, rows)
            mean = sum(r["reward"] for r in rows) / len(rows)
            print(f"{len(rows)} molecules at beta {args.beta:g} (mean reward {mean:.3f}) in {args.out}")
    if args.grid is not None:
        draw_top(rows, args.top, args.grid)
    return 0


def _sample_pyg(args: argparse.Namespace, gfn, env, reward) -> list[dict]:
    """``lgfn sample --format pyg``: write the samples as a :class:`~lgfn_graph.pyg.SampleDataset`
    and print one line; returns their rows (SMILES and reward) for ``--grid``."""
    from .pyg import SampleDataset, sample_pyg

    if args.fragment_graph and not env.has_fragment_graph:
        raise UsageError(f"--fragment-graph needs a fragment-based checkpoint; {args.checkpoint} builds molecules "
                         f"with {type(env).__name__}")
    data = sample_pyg(gfn, env, reward, args.beta, args.n, seed=args.seed, fragment_graph=args.fragment_graph)
    SampleDataset.save(data, args.out)
    mean = sum(float(d.y) for d in data) / len(data)
    atoms = sum(d.num_nodes for d in data) / len(data)
    print(f"{len(data)} molecules at beta {args.beta:g} (mean reward {mean:.3f}, {atoms:.1f} atoms on average) "
          f"as PyG data{' with fragment graphs' if args.fragment_graph else ''} in {args.out}")
    return [{"smiles": d.smiles, "reward": float(d.y)} for d in data]


def evaluate(args: argparse.Namespace) -> int:
    gfn, env, state = load_model(args.checkpoint, args.device, trust_code=args.trust_code)
    reward = build_reward(_task_config(args, state))
    out = Path(args.out) if args.out is not None else Path(args.checkpoint).parent / "eval"
    summary = temperature_sweep(gfn, env, reward, args.betas, args.n, out, seed=args.seed)
    print(format_summary(summary))
    print(f"samples.csv, summary.csv and mean_reward_vs_beta.png in {out}/")
    return 0


def study(args: argparse.Namespace) -> int:
    status = load_study(args.name).main(args.args)
    return status if isinstance(status, int) else 0


# -- helpers -------------------------------------------------------------------------------------------
def _resumed_config(folder: Path, config: str | None, overrides: list[str]) -> RunConfig:
    """The configuration of a resumed run: the run folder's own ``config.yaml``, then the
    sections of ``config`` and the overrides on top; its ``out`` is ``folder``."""
    cfg = load_config(config, overrides, base=folder / "config.yaml")
    cfg.out = str(folder)
    return cfg


def _task_config(args: argparse.Namespace, state: dict) -> TaskConfig:
    """The task whose reward scores a checkpoint's samples: ``--task``, ``--config``, or the run
    configuration recorded in the checkpoint. One warning line where the first two score with
    another reward than the recorded run was trained on."""
    recorded = state["extra"].get("run_config")
    if args.task is None and args.config is None:
        if recorded is None:
            raise UsageError(f"{args.checkpoint} does not record its task: pass --task NAME or --config FILE")
        task = from_dict(TaskConfig, recorded["task"], "task")
        if is_import_path(task.reward) and not args.trust_code:
            raise UsageError(f"{args.checkpoint} records the reward {task.reward!r}, an import path: scoring with it "
                             "imports that module and runs its code. If you trust the file, pass --trust-code; or "
                             "score with another reward (--task NAME or --config FILE)")
        return task
    task = TaskConfig(args.task) if args.task is not None else load_config(args.config).task
    try:
        trained = from_dict(TaskConfig, recorded["task"], "task") if recorded is not None else None
    except ValueError:  # a task this version cannot read: nothing to compare with
        trained = None
    if trained is not None and reward_name(task) != reward_name(trained):
        # the policy still samples what it learned; only the scores come from another reward
        _warn(f"scoring with the reward of task {task.name!r} ({reward_name(task)}), but {args.checkpoint} was "
              f"trained on task {trained.name!r} (reward {reward_name(trained)})")
    return task


def draw_top(rows: list[dict], k: int, path: str | Path) -> None:
    """Draw the ``k`` best distinct molecules of ``rows`` (by reward) into a PNG grid, atomically."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    ranked = sorted(rows, key=lambda r: -r["reward"])  # so each molecule is first seen at its best
    top = list(best_rewards([r["smiles"] for r in ranked], [r["reward"] for r in ranked]).items())[:k]
    img = Draw.MolsToGridImage([Chem.MolFromSmiles(s) for s, _ in top], molsPerRow=min(4, len(top)),
                               subImgSize=(250, 200), legends=[f"{x:.3f}" for _, x in top])
    with atomic_write(path, "wb") as f:
        img.save(f, format="PNG")


def available_studies() -> list[str]:
    """The modules of :mod:`lgfn_graph.studies` (none while that package is absent)."""
    try:
        package = importlib.import_module(STUDIES_PACKAGE)
    except ModuleNotFoundError as e:
        if e.name != STUDIES_PACKAGE:
            raise
        return []
    return sorted(m.name for m in pkgutil.iter_modules(getattr(package, "__path__", [])) if not m.name.startswith("_"))


def load_study(name: str):
    """The study module ``lgfn_graph.studies.<name>`` (it has ``main(argv)``); an unknown name is
    a :class:`UsageError` listing the studies there are."""
    module = f"{STUDIES_PACKAGE}.{name}"
    if name.isidentifier() and not name.startswith("_"):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e:
            # a study that fails to import one of its own dependencies is a bug, not an unknown name
            if e.name not in (module, STUDIES_PACKAGE):
                raise
    known = available_studies()
    raise UsageError(f"unknown study {name!r}; studies: {', '.join(known) if known else 'none installed'}")
