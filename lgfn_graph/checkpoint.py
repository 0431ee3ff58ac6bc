"""Checkpoints: model, optimizer, generator states and the task spec, saved atomically."""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from .envs import AtomEnv, FragmentEnv
from .fragments import FragmentLibrary
from .io import atomic_write
from .policy import ModelConfig, TemperatureGFlowNet

FORMAT = "lgfn_graph.checkpoint"
FORMAT_VERSION = 2  # 2: the payload is stored with its SHA-256


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted, or from an incompatible version or task."""


def env_spec(env) -> dict:
    """What is needed to rebuild the environment (and to tell two tasks apart)."""
    if isinstance(env, AtomEnv):
        return {"kind": "atom", "elements": list(env.elements), "max_atoms": env.max_atoms,
                "ban_3ring_triple": env.ban_3ring_triple}
    if not isinstance(env, FragmentEnv):
        raise TypeError(f"cannot checkpoint an environment of type {type(env).__name__}")
    return {"kind": "fragment", "max_fragments": env.max_fragments, "min_fragments": env.min_fragments,
            "fragments": [(f.smiles, list(f.attachment_atoms)) for f in env.library.fragments]}


def env_from_spec(spec: dict):
    if spec.get("kind") == "atom":
        return AtomEnv(spec["elements"], spec["max_atoms"], spec["ban_3ring_triple"])
    lib = FragmentLibrary.from_pairs([(s, a) for s, a in spec["fragments"]], name="checkpoint")
    return FragmentEnv(lib, spec["max_fragments"], spec["min_fragments"])


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
        "step": step, "model_config": gfn.config_dict(), "env": env_spec(env), "model": gfn.state_dict(),
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


_READ_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
                AttributeError, IndexError, TypeError, UnicodeDecodeError)


def load_checkpoint(path: str | Path) -> dict:
    """Read and check a checkpoint; raise :class:`CheckpointError` saying what is wrong
    (missing, truncated or corrupted, not a checkpoint, or an unsupported format version)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=False)
    except _READ_ERRORS as e:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lgfn_graph checkpoint")
    if outer.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {outer.get('format_version')} is not "
                              f"supported by this lgfn_graph (expects {FORMAT_VERSION})")
    payload = outer.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != outer.get("sha256"):
        raise CheckpointError(f"{path}: corrupted checkpoint (checksum mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    except _READ_ERRORS as e:
        raise CheckpointError(f"{path}: corrupted checkpoint ({type(e).__name__}: {e})") from None


def check_same_task(path: str | Path, state: dict, gfn: TemperatureGFlowNet, env) -> None:
    """Raise :class:`CheckpointError` unless ``state`` was saved from this environment and model
    configuration (so a resume never loads weights into another task)."""
    if state["env"] != env_spec(env):
        raise CheckpointError(f"{path}: checkpoint is from another task (environment {_brief(state['env'])}, "
                              f"this run has {_brief(env_spec(env))})")
    if state["model_config"] != gfn.config_dict():
        diff = sorted(k for k in set(state["model_config"]) | set(gfn.config_dict())
                      if state["model_config"].get(k) != gfn.config_dict().get(k))
        raise CheckpointError(f"{path}: checkpoint has another model configuration (differs in {diff})")


def _brief(spec: dict) -> str:
    if spec.get("kind") == "atom":
        return f"atoms {spec['elements']}, at most {spec['max_atoms']}"
    return f"{len(spec['fragments'])} fragments, at most {spec['max_fragments']}"


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TemperatureGFlowNet, object, dict]:
    """Rebuild the environment and model of a checkpoint, the model on ``device``. Returns
    ``(gfn, env, state)``."""
    state = load_checkpoint(path)
    env = env_from_spec(state["env"])
    gfn = TemperatureGFlowNet.build(env, ModelConfig(**state["model_config"]))
    try:
        gfn.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {e}") from None
    return gfn.to(device), env, state
