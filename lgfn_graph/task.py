"""Tasks: the fragment environment and the reward of a run, built from a :class:`TaskConfig`.

Every way of running the library (``lgfn train``, the scripts in ``tasks/``, ``lgfn sample``)
builds its task here, so a task means the same thing everywhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .checks import (FieldError, check_choice, check_choice_or_import_path, check_device, check_int, check_path,
                     import_failure, import_object, is_import_path)
from .envs import FragmentEnv
from .fragments import FragmentLibrary, FragmentLibraryError
from .gnn_proxy import load_proxy_reward
from .parallel_reward import parallel
from .proxy_base import ProxyError
from .rewards import QED, RewardFn, qed_sa
from .seh_proxy import SEHReward

ENV_FRAGMENTS_72 = "LGFN_FRAGMENTS_72"

# The tiny task: 98 states (97 terminal), small enough for lgfn_graph.exact to enumerate.
TINY_FRAGMENTS = [
    ("c1ccccc1", [0, 3]),   # benzene, para stems
    ("C1CCNCC1", [3]),      # piperidine, at N
    ("C(=O)O", [0, 2]),     # carboxyl: at C or at O
    ("F", [0]),
]


@dataclass
class TaskConfig:
    """Which molecules are built and how they are rewarded.

    Every field is checked when the config is made: a value of the wrong type or out of range
    raises a one-line ``ValueError`` naming it.

    Args:
        name: ``"qed_frag"`` (the 18 shipped fragments, at most 8, reward QED x SA),
            ``"seh_frag"`` (the 72 fragments of Bengio et al. 2021, at most 9, the sEH proxy) or
            ``"tiny_frag"`` (4 fragments, at most 3, reward QED; every state can be enumerated).
        fragments: a fragment library JSON replacing the task's own (``seh_frag`` has none
            shipped: its default is ``$LGFN_FRAGMENTS_72``); a non-empty path or ``None``.
        max_fragments: fragments per molecule, >= 1 (``None``: the task's default).
        reward: ``"qed_sa"``, ``"qed"``, ``"seh"``, ``"proxy"`` (the file in ``reward_model``), or
            your own as an import path ``"package.module:name"``: a reward (any callable
            ``list[Mol] -> Tensor[B]``: a function, or an object such as ``Product(...)``) or a
            class that builds one with no arguments. Only its form is checked here; it is imported
            when the reward is built. ``None``: ``"proxy"`` if ``reward_model`` is set, else the
            task's default.
        reward_model: a proxy file written by ``lgfn proxy fit`` (either kind: a GNN ``.pt`` or
            a fingerprint ``.pkl.gz``) whose predictions are the reward; ``reward`` must then be
            ``None`` or ``"proxy"``. A relative path is read from the current folder.
        proxy_weights: sEH proxy weights (``None``: ``$LGFN_SEH_PROXY``, else the cache).
        proxy_device, proxy_batch_size: where (a CPU or available CUDA device) and in what
            batches (>= 1) the sEH proxy or the GNN of ``reward_model`` runs.
        reward_workers: score each batch in this many processes
            (:class:`~lgfn_graph.parallel_reward.ParallelReward`), >= 0; 0 or 1: in the training
            process. The scores are the same either way; worth it for the RDKit rewards
            (``qed_sa``, ``qed``) when cores sit idle while they run, not for the torch proxies.
    """

    name: str = "qed_frag"
    fragments: str | None = None
    max_fragments: int | None = None
    reward: str | None = None
    reward_model: str | None = None
    proxy_weights: str | None = None
    proxy_device: str = "cpu"
    proxy_batch_size: int = 256
    reward_workers: int = 0

    def __post_init__(self):
        check_choice(self, "name", list(TASKS))
        check_choice_or_import_path(self, "reward", list(REWARDS), optional=True)
        for name in ("fragments", "reward_model", "proxy_weights"):
            check_path(self, name)
        if self.reward_model is not None and self.reward not in (None, "proxy"):
            raise FieldError(self, "reward_model", f"is the reward, so reward must be None or 'proxy', "
                                                   f"got reward={self.reward!r}")
        check_int(self, "max_fragments", 1, optional=True)
        check_device(self, "proxy_device")
        check_int(self, "proxy_batch_size", 1)
        check_int(self, "reward_workers", 0)


@dataclass(frozen=True)
class TaskDefaults:
    """What a task uses where its :class:`TaskConfig` says ``None``."""

    library: Callable[[], FragmentLibrary]
    max_fragments: int
    reward: str


def _seh_library() -> FragmentLibrary:
    path = os.environ.get(ENV_FRAGMENTS_72)
    if not path:
        raise FragmentLibraryError(
            f"seh_frag needs the 72-fragment library: pass --fragments PATH (task.fragments) or set "
            f"{ENV_FRAGMENTS_72}=PATH (fragments_72.json: the fragment list of recursionpharma/gflownet, "
            "src/gflownet/models/bengio2021flow.py (MIT), written as [{\"smiles\": ..., \"attachment_atoms\": [...]}, ...])")
    return FragmentLibrary.from_json(Path(path))


TASKS: dict[str, TaskDefaults] = {
    "qed_frag": TaskDefaults(FragmentLibrary.default, 8, "qed_sa"),
    "seh_frag": TaskDefaults(_seh_library, 9, "seh"),
    "tiny_frag": TaskDefaults(lambda: FragmentLibrary.from_pairs(TINY_FRAGMENTS, name="tiny_frag"), 3, "qed"),
}

REWARDS: dict[str, Callable[[TaskConfig], RewardFn]] = {
    "qed_sa": lambda cfg: qed_sa(),
    "qed": lambda cfg: QED(),
    "seh": lambda cfg: SEHReward(cfg.proxy_weights, device=cfg.proxy_device, batch_size=cfg.proxy_batch_size),
    "proxy": lambda cfg: _proxy_reward(cfg),  # defined below
}


def _proxy_reward(cfg: TaskConfig) -> RewardFn:
    # checked here, not in TaskConfig: overrides are applied one at a time, so reward=proxy may
    # come before reward_model=FILE
    if cfg.reward_model is None:
        raise ProxyError("task.reward is 'proxy' but task.reward_model is not set: pass "
                         "task.reward_model=FILE, a proxy written by lgfn proxy fit")
    return load_proxy_reward(cfg.reward_model, cfg.proxy_device, cfg.proxy_batch_size)


class RewardImportError(FieldError):
    """``TaskConfig.reward`` is an import path that gives no reward: the module or name cannot be
    imported, the class cannot be built with no arguments, or the object is not callable."""


def _imported_reward(cfg: TaskConfig) -> RewardFn:
    """The reward ``cfg.reward`` names by import path: the object itself, or an instance of the
    class (built with no arguments). Errors name the field, the path and the cause."""
    try:
        obj = import_object(cfg.reward)
    except Exception as e:  # the user's module may fail to import in any way; say which and why
        raise RewardImportError(cfg, "reward", import_failure(cfg.reward, e)) from None
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as e:
            raise RewardImportError(cfg, "reward", f"{cfg.reward!r} is a class and could not be built with no arguments "
                                            f"({type(e).__name__}: {e})") from None
    if not callable(obj):
        raise RewardImportError(cfg, "reward", f"{cfg.reward!r} is a {type(obj).__name__}, not a reward (a callable "
                                        "list[Mol] -> Tensor[B], or a class that builds one with no arguments)")
    return obj


def build_env(cfg: TaskConfig) -> FragmentEnv:
    """The task's environment: its fragment library (or ``cfg.fragments``) and molecule size."""
    defaults = TASKS[cfg.name]
    lib = FragmentLibrary.from_json(cfg.fragments) if cfg.fragments else defaults.library()
    max_fragments = cfg.max_fragments if cfg.max_fragments is not None else defaults.max_fragments
    return FragmentEnv(lib, max_fragments=max_fragments)


def reward_name(cfg: TaskConfig) -> str:
    """The name of the task's reward in :data:`REWARDS`, or its import path: ``cfg.reward``, else
    ``"proxy"`` if ``cfg.reward_model`` is set, else the task's own."""
    return cfg.reward or ("proxy" if cfg.reward_model is not None else TASKS[cfg.name].reward)


def build_reward(cfg: TaskConfig) -> RewardFn:
    """The task's reward (``cfg.reward``, else ``cfg.reward_model``, else the task's own); loads
    the sEH proxy or the proxy file if it is one of those, imports the reward if it is an import
    path (the user's own code: never call this on a config read from a file you were handed); scored in ``cfg.reward_workers``
    processes if that is 2 or more."""
    name = reward_name(cfg)
    reward = _imported_reward(cfg) if is_import_path(name) else REWARDS[name](cfg)
    return parallel(reward, cfg.reward_workers)


def build_task(cfg: TaskConfig) -> tuple[FragmentEnv, RewardFn]:
    """The environment and reward of a task: ``(env, reward)``."""
    return build_env(cfg), build_reward(cfg)
