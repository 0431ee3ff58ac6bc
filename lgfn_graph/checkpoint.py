"""Checkpoints: model, optimizer, generator states and the task spec, saved atomically."""
from __future__ import annotations

import hashlib
import io
import pickle
import re
import struct
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from .envs import Env
from .betas import trained_range
from .checks import is_import_path
from .files import atomic_write
from .policy import ModelConfig, TemperatureGFlowNet

FORMAT = "lgfn_graph.checkpoint"
FORMAT_VERSION = 2  # 2: the payload is stored with its SHA-256


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted, or from an incompatible version or task."""


def save_checkpoint(path: str | Path, gfn: TemperatureGFlowNet, env, step: int,
                    optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
                    extra: dict | None = None, training: dict | None = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename), with a checksum.

    Args:
        gfn, env, step: the model, its environment (rebuilt on load) and the training step.
        optimizer, generator: their states, for an exact resume.
        extra: plain data describing the run (configs).
        training: any further training state (replay buffer, trackers), restored by the trainer.
    """
    state = {
        "step": step, "model_config": gfn.config_dict(), "env": env.spec(), "model": gfn.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "generator": generator.get_state() if generator is not None else None,
        "torch_rng": torch.get_rng_state(), "extra": extra or {}, "training": training or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    outer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": payload}, outer)
    with atomic_write(path, "wb") as f:
        f.write(outer.getvalue())


# struct.error: what the restricted unpickler raises on a file of a few bytes
READ_ERRORS = (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
                AttributeError, IndexError, TypeError, UnicodeDecodeError, MemoryError, struct.error)

# what a payload must hold, and the type of each entry (``None`` allowed where optional)
_PAYLOAD_KEYS = {"step": int, "model_config": dict, "env": dict, "model": dict}
_OPTIONAL_KEYS = {"optimizer": dict, "generator": torch.Tensor, "torch_rng": torch.Tensor, "extra": dict,
                  "training": dict}


def restricted_load(source, path: Path, what: str):
    """``torch.load`` with ``weights_only=True``: tensors and plain Python data only, so a crafted
    file cannot run code. Anything else is refused with the culprit named."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = unpickler_refusal(str(e))
        if reason is not None:
            raise CheckpointError(f"{path}: refusing to load {what}: it holds Python objects a checkpoint never "
                                  f"holds, and unpickling them could run code ({reason})") from None
        raise CheckpointError(f"{path}: truncated or corrupted {what} (UnpicklingError: {e})") from None
    except READ_ERRORS as e:
        raise CheckpointError(f"{path}: truncated or corrupted {what} ({type(e).__name__}: {e})") from None


def unpickler_refusal(message: str) -> str | None:
    """The restricted unpickler's own reason (e.g. ``Unsupported global: GLOBAL posix.system``),
    or ``None`` when the error is not a refusal."""
    for line in message.splitlines():
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
            return reason.replace(" was not an allowed global by default", "")
        # torch's wording for a global of a module it blocks outright (os, posix, subprocess, ...)
        blocked = re.match(r"\s*Trying to load unsupported (GLOBAL \S+) whose module (\S+) is blocked", line)
        if blocked:
            return f"{blocked[1]}, module {blocked[2]} is blocked"
    return None


def load_checkpoint(path: str | Path) -> dict:
    """Read and check a checkpoint; raise :class:`CheckpointError` saying what is wrong
    (missing, truncated or corrupted, not a checkpoint, an unsupported format version, missing
    entries, or objects other than tensors and plain data).

    Both layers (the envelope and the checksummed payload) are read by PyTorch's restricted
    unpickler (``weights_only=True``): a file that would run code when unpickled is refused
    before anything in it is used.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    outer = restricted_load(path, path, "checkpoint")
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lgfn_graph checkpoint")
    if outer.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {outer.get('format_version')} is not "
                              f"supported by this lgfn_graph (expects {FORMAT_VERSION})")
    payload = outer.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"{path}: corrupted checkpoint (checksum mismatch)")
    state = restricted_load(io.BytesIO(payload), path, "checkpoint payload")
    _check_payload(path, state)
    return state


def _check_payload(path: Path, state) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint payload is a {type(state).__name__}, not a dict")
    for key, kind in {**_PAYLOAD_KEYS, **_OPTIONAL_KEYS}.items():
        if key not in state:
            if key in _PAYLOAD_KEYS:
                raise CheckpointError(f"{path}: checkpoint payload has no {key!r} entry")
            continue
        if not isinstance(state[key], kind) and not (key in _OPTIONAL_KEYS and state[key] is None):
            raise CheckpointError(f"{path}: checkpoint entry {key!r} is a {type(state[key]).__name__}, "
                                  f"expected {kind.__name__}")


def check_same_task(path: str | Path, state: dict, gfn: TemperatureGFlowNet, env) -> None:
    """Raise :class:`CheckpointError` unless ``state`` was saved from this environment and model
    configuration (so a resume never loads weights into another task)."""
    if state["env"] != env.spec():
        raise CheckpointError(f"{path}: checkpoint is from another task (environment "
                              f"{Env.describe_spec(state['env'])}, this run has {Env.describe_spec(env.spec())})")
    saved = saved_model_config(state)
    if saved != gfn.config_dict():
        diff = sorted(k for k in set(saved) | set(gfn.config_dict()) if saved.get(k) != gfn.config_dict().get(k))
        raise CheckpointError(f"{path}: checkpoint has another model configuration (differs in {diff})")


def saved_model_config(state: dict) -> dict:
    """The checkpoint's model config, with fields added since it was written (``backbone``,
    ``backbone_kwargs``) at their defaults: the model it describes. ``{}`` (a model built by
    hand, without a config) stays ``{}``."""
    saved = state["model_config"]
    return {**asdict(ModelConfig()), **saved} if saved else saved


def load_model(path: str | Path, device: str | torch.device = "cpu",
               trust_code: bool = False) -> tuple[TemperatureGFlowNet, object, dict]:
    """Rebuild the environment and model of a checkpoint, the model on ``device``. Returns
    ``(gfn, env, state)``.

    Args:
        trust_code: rebuild a backbone the checkpoint names by import path
            (``package.module:Class``), which imports that module and runs its code. A checkpoint
            is data, read without running code from it; so by default it may name only the
            built-in and stock backbones, and one naming an import path is refused
            (:class:`CheckpointError`) before anything is imported. Pass ``True`` for your own
            checkpoints, or files you trust.
    """
    state = load_checkpoint(path)
    backbone = (state["model_config"] or {}).get("backbone")
    if is_import_path(backbone) and not trust_code:
        raise CheckpointError(f"{path}: names the backbone {backbone!r}, an import path: rebuilding it imports that "
                              "module and runs its code, so it is refused by default. If you trust the file, pass "
                              "trust_code=True (lgfn sample / evaluate: --trust-code)")
    try:
        Env.env_class(state["env"])
    except ValueError as e:  # saved by a version with another environment
        raise CheckpointError(f"{path}: {e}") from None
    env = Env.from_spec(state["env"])
    try:
        config = ModelConfig(**state["model_config"])
    except (TypeError, ValueError) as e:
        # e.g. an import-path backbone that this environment cannot import: the message names it
        raise CheckpointError(f"{path}: cannot rebuild the model it describes: {e}") from None
    gfn = TemperatureGFlowNet.build(env, config)
    misfit = _misfit(gfn.state_dict(), state["model"])
    if misfit:
        hint = "" if state["model_config"] else (" (it was saved from a model built by hand: name its backbone in "
                                                 "ModelConfig.backbone to make it rebuildable, or build it and "
                                                 "load_state_dict(load_checkpoint(path)['model']))")
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {misfit}{hint}")
    gfn.load_state_dict(state["model"])
    gfn.trained_beta_range = _trained_beta_range(state)
    return gfn.to(device), env, state


def _trained_beta_range(state: dict) -> tuple[float, float] | None:
    """The ``(low, high)`` of the loss's beta the checkpoint's run trained at: from the Trainer's
    ``train_config``, else the run config of ``lgfn train``; ``None`` if neither records it."""
    extra = state.get("extra") or {}
    for train in (extra.get("train_config"), (extra.get("run_config") or {}).get("train")):
        found = trained_range(train.get("beta")) if isinstance(train, dict) else None
        if found is not None:
            return found
    return None


def _misfit(model: dict, saved: dict) -> str:
    """How the ``saved`` state dict fails to fit the ``model``'s, in one line ("" if it fits):
    counts of missing, unexpected and wrongly shaped tensors, with the first of each."""
    missing = [k for k in model if k not in saved]
    unexpected = [k for k in saved if k not in model]
    shapes = [f"{k} {tuple(saved[k].shape)} vs {tuple(model[k].shape)}" for k in model
              if k in saved and isinstance(saved[k], torch.Tensor) and saved[k].shape != model[k].shape]
    return "; ".join(f"{len(keys)} {what} (first: {keys[0]})"
                     for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes))
                     if keys)
