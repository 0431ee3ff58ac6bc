"""The runs of a study: one folder per (conditioning mode, seed), finished once its
``result.json`` exists. A rerun into the same output folder skips finished runs; an unfinished
one (a study killed midway) continues from its last checkpoint where the study's run function
can resume (``resumable``), else it is redone from scratch."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from ..betas import BetaSampler, check_beta
from ..config import ConfigError, to_dict
from ..policy import MODES
from ..files import atomic_write

RESULT_FILE = "result.json"
SETTINGS_FILE = "settings.json"  # written when a run starts: what a resume must match


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: a conditioning mode and a seed."""

    conditioning: str
    seed: int

    def folder(self, out: str | Path) -> Path:
        """Where the run writes: ``out/runs/<conditioning>/seed<seed>``."""
        return Path(out) / "runs" / self.conditioning / f"seed{self.seed}"


@dataclass
class StudyRuns:
    """What the configuration dataclass of every study shares: its fields ``train``
    (a :class:`~lgfn_graph.TrainConfig`), ``none_beta`` and the run fields below, their checks,
    and how they make each run's settings.

    Run fields:
        conditionings: the modes compared (``--modes``).
        seeds: one run per mode and seed (``--seeds``).
        out: the output folder (``--out``).
        publish: a folder to copy the table, CSV and PNG into (``None``: none).
        threads: torch CPU threads (the default model is small: one thread is as fast).
    """

    conditionings: list[str] = field(default_factory=lambda: list(MODES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out: str = "runs/studies/study"  # each study names its own folder
    publish: str | None = None
    threads: int = 1

    # fields that say which runs to make and where, not what a run does
    RUN_FIELDS = ("conditionings", "seeds", "out", "publish", "threads")

    def check_runs(self) -> None:
        """Raise ``ValueError`` for bad run fields (call from ``__post_init__``)."""
        check_runs(self.conditionings, self.seeds)
        if self.none_beta is not None:
            check_beta(self.none_beta, "none_beta")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def settings(self) -> dict:
        """What decides a run's outcome, apart from its mode and seed (recorded in its result)."""
        d = to_dict(self)
        for key in self.RUN_FIELDS:
            del d[key]
        if isinstance(d.get("task"), dict):  # how many processes score the reward changes no score
            d["task"].pop("reward_workers", None)
        return d

    def default_settings(self) -> dict:
        """:meth:`settings` of this study's default configuration: a key that a later version of
        the library added is accepted as missing from a recorded run while it keeps this value."""
        return type(self)().settings()

    def train_config(self, spec: "RunSpec"):
        """The training settings of one run: its seed, and for ``none`` the fixed ``none_beta``
        (a model that cannot read beta trains at one beta)."""
        beta = self.train.beta
        if spec.conditioning == "none" and self.none_beta is not None:
            beta = BetaSampler.constant(self.none_beta)
        return replace(self.train, seed=spec.seed, beta=beta)


# (spec, its folder, show progress) -> the run's results as plain JSON data
RunFn = Callable[[RunSpec, Path, bool], dict]


def run_specs(conditionings: Sequence[str], seeds: Sequence[int]) -> list[RunSpec]:
    """Every (mode, seed) pair, seed by seed, so a study stopped early has compared every mode on
    its first seeds."""
    return [RunSpec(c, s) for s in seeds for c in conditionings]


def check_runs(conditionings: Sequence[str], seeds: Sequence[int]) -> None:
    """Raise ``ValueError`` unless both lists are non-empty, free of repeats and the modes known."""
    for name, values in (("conditionings", conditionings), ("seeds", seeds)):
        if not values:
            raise ValueError(f"{name} is empty")
        if len(set(values)) != len(values):
            raise ValueError(f"{name} repeats a value: {list(values)}")
    bad = [c for c in conditionings if c not in MODES]
    if bad:
        raise ValueError(f"unknown conditioning mode {bad[0]!r}; modes: {', '.join(MODES)}")


def run_all(out: str | Path, specs: Sequence[RunSpec], settings: dict, run: RunFn, progress: bool = True,
            desc: str = "runs", resumable: bool = False, defaults: dict | None = None,
            only_finished: bool = False) -> tuple[list[dict], int]:
    """Run each spec not yet finished under ``out``; returns ``(results, skipped)``.

    An unfinished run's folder is kept for ``run`` to resume when ``resumable``, it holds a
    ``checkpoint.pt`` and it was started with the same ``settings`` (its ``settings.json``);
    otherwise it is emptied first.

    Each result is ``{"conditioning", "seed", "settings", **run(...)}``, written atomically to
    the run's ``result.json`` when the run ends. ``settings`` (plain data: everything that
    changes a run's outcome) is recorded there; a finished run recorded with other settings
    raises :class:`ConfigError` rather than mixing two experiments in one table, except for keys
    the recorded settings lack whose value equals ``defaults`` (fields added to the library since).
    ``only_finished``: run nothing, return the finished runs only.
    """
    settings, defaults = _plain(settings), _plain(defaults or {})
    results, skipped = [], 0
    bar = tqdm(specs, desc=desc, disable=not progress)
    for spec in bar:
        bar.set_postfix_str(f"{spec.conditioning}, seed {spec.seed}")
        folder = spec.folder(out)
        result = finished_result(folder, settings, defaults)
        if result is not None:
            skipped += 1
        elif only_finished:
            continue
        else:
            resume = resumable and (folder / "checkpoint.pt").is_file() and _started_with(folder, settings, defaults)
            if folder.exists() and not resume:
                shutil.rmtree(folder)  # left by a killed run: the trainer would append to its logs
            if not folder.exists():
                with atomic_write(folder / SETTINGS_FILE) as f:
                    json.dump(settings, f, indent=1)
            result = _plain({"conditioning": spec.conditioning, "seed": spec.seed, "settings": settings,
                             **run(spec, folder, progress)})
            with atomic_write(folder / RESULT_FILE) as f:
                json.dump(result, f, indent=1)
        results.append(result)
    return results, skipped


def with_other_finished(out: str | Path, results: Sequence[dict], settings: dict,
                        defaults: dict | None = None) -> list[dict]:
    """``results`` and every other finished run under ``out`` made with ``settings``: the runs of
    other modes and seeds that earlier commands put there (``--modes logit`` then ``--modes
    layer``, or two machines sharing the folder), so that the report covers all of them, not only
    the last command's. A run made with other settings is left out, with a note naming it.
    Returned in library mode order, then by seed: the report's means are then the same to the last
    bit whichever command wrote it."""
    have = {(r["conditioning"], r["seed"]) for r in results}
    found = list(results)
    for path in sorted(Path(out).glob(f"runs/*/seed*/{RESULT_FILE}")):
        mode, seed = path.parent.parent.name, path.parent.name[len("seed"):]
        if mode not in MODES or not seed.isdigit() or (mode, int(seed)) in have:
            continue
        try:
            found.append(finished_result(path.parent, settings, defaults))
        except ConfigError as e:
            tqdm.write(f"not in the report: {e}")
    return sorted(found, key=lambda r: (MODES.index(r["conditioning"]), r["seed"]))


def reported(cfg, results: Sequence[dict]):
    """``cfg`` as its report covers ``results``: the modes that have one (in library order), and
    the seeds asked for plus those found (a mode short of some says "k of n seeds")."""
    modes = [m for m in MODES if any(r["conditioning"] == m for r in results)]
    return replace(cfg, conditionings=modes, seeds=sorted(set(cfg.seeds) | {r["seed"] for r in results}))


def finished_result(folder: str | Path, settings: dict, defaults: dict | None = None) -> dict | None:
    """The result of the finished run in ``folder``, or ``None`` if it has not finished.

    Raises:
        ConfigError: the run was made with settings other than ``settings`` (see :func:`run_all`
            for ``defaults``).
    """
    path = Path(folder) / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    current = _recorded_keys_only(result["settings"], _plain(settings), _plain(defaults or {}))
    if result["settings"] != current:
        diff = "; ".join(_differences(result["settings"], current)[:3])
        raise ConfigError(f"{folder} holds a finished run with other settings ({diff}): choose another --out, "
                          "or delete that folder to redo it")
    return result


def _started_with(folder: Path, settings: dict, defaults: dict) -> bool:
    path = folder / SETTINGS_FILE
    try:
        recorded = json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return False
    return recorded is not None and recorded == _recorded_keys_only(recorded, settings, defaults)


def _recorded_keys_only(recorded, current, defaults):
    """``current`` without the keys ``recorded`` lacks where they hold their ``defaults`` value
    (settings added to the library after the run was recorded)."""
    if not (isinstance(recorded, dict) and isinstance(current, dict)):
        return current
    defaults = defaults if isinstance(defaults, dict) else {}
    out = {}
    for k, v in current.items():
        if k in recorded:
            out[k] = _recorded_keys_only(recorded[k], v, defaults.get(k))
        elif k not in defaults or v != defaults[k]:
            out[k] = v  # a real difference: reported
    return out


def _plain(data):
    """``data`` as JSON reads it back (tuples become lists), so that comparisons are exact."""
    return json.loads(json.dumps(data))


def _differences(old, new, path: str = "") -> list[str]:
    """``"key: old -> new"`` for each dotted key whose value differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [k for k in new if k not in old]
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{path}.{k}" if path else k)]
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]
