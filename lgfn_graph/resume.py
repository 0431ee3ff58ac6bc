"""What a resumed run may change, and what it may not.

A resume continues a run exactly only if everything that decides its batches and its updates
(task and reward, model, batch size, seed, learning rates, objective, beta samplers, epsilon,
replay...) is what the checkpoint was trained with. :func:`check_resumable` compares the
configuration a checkpoint records with the new one key by key: a difference that matters is
refused, naming the dotted keys; the harmless ones (:data:`HARMLESS`) are returned to be reported.
"""
from __future__ import annotations

from typing import Any

from .checkpoint import CheckpointError

# how long it runs, how often it saves, where it runs (and in how many reward processes), what
# it logs, when it gives up on non-finite steps, the sweep after training
HARMLESS = ("train.steps", "train.checkpoint_every", "train.device", "task.proxy_device", "task.reward_workers",
            "train.tensorboard", "train.max_skipped_steps", "eval", "out")

_MISSING = object()


def check_resumable(where: str, recorded: dict, current: dict, defaults: dict | None = None) -> list[str]:
    """Check that a run recorded as ``recorded`` can be resumed as ``current``.

    Args:
        where: the checkpoint, for the error message.
        recorded, current: nested plain-data configs with the same layout (e.g. ``to_dict`` of a
            :class:`~lgfn_graph.RunConfig`, or ``{"train": asdict(train_config)}``).
        defaults: the values of keys ``recorded`` lacks (fields added to the library since).

    Returns:
        The harmless changes, as ``"train.steps 1000 -> 2000"``.

    Raises:
        CheckpointError: naming every other key that differs, with both values.
    """
    recorded = _fill(recorded, defaults or {})
    changed = changed_keys(recorded, current)
    harmless = _harmless(current)
    refused = [k for k in changed if not _under(k, harmless)]
    if refused:
        differing = "; ".join(_show(k, recorded, current) for k in refused)
        raise CheckpointError(f"{where}: refusing to resume with another {differing}: the run would no longer "
                              "continue exactly. Resume with the recorded values, or start a new run in another folder")
    return [_show(k, recorded, current) for k in changed]


def changed_keys(old: dict, new: dict, path: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts (a key on one side only
    differs), in the order of ``new``, then of ``old``."""
    out = []
    for key in [*new, *(k for k in old if k not in new)]:
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        dotted = f"{path}.{key}" if path else str(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, dotted)
        elif a is _MISSING or b is _MISSING or a != b:
            out.append(dotted)
    return out


def _harmless(current: dict) -> tuple[str, ...]:
    # an annealing beta window slides with step / steps: another step count changes the betas
    # of every step still to come
    train = current.get("train") or {}
    anneals = any((train.get(k) or {}).get("kind") in ("annealing", "inverse_annealing")
                  for k in ("beta", "explore_beta"))
    return tuple(k for k in HARMLESS if not (anneals and k == "train.steps"))


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _fill(data: dict, defaults: dict) -> dict:
    """``data`` with the keys it lacks taken from ``defaults``, recursively."""
    out = dict(data)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _fill(out[k], v)
    return out


def _show(key: str, recorded: dict, current: dict) -> str:
    return f"{key} {_value(_get(recorded, key))} -> {_value(_get(current, key))}"


def _get(data: dict, key: str) -> Any:
    for name in key.split("."):
        data = data.get(name, _MISSING) if isinstance(data, dict) else _MISSING
    return data


def _value(v: Any) -> str:
    return "(absent)" if v is _MISSING else repr(v)
