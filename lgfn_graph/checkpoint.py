"""Checkpoints: model, optimizer, generator states and the task spec, saved atomically."""
from __future__ import annotations

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
FORMAT_VERSION = 1


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
                    extra: dict | None = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    state = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "step": step,
        "model_config": gfn.config_dict(), "env": env_spec(env), "model": gfn.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "generator": generator.get_state() if generator is not None else None,
        "torch_rng": torch.get_rng_state(), "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """Read and check a checkpoint; raise :class:`CheckpointError` saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an lgfn_graph checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state.get('format_version')} is not "
                              f"supported by this lgfn_graph (expects {FORMAT_VERSION})")
    return state


def load_model(path: str | Path) -> tuple[TemperatureGFlowNet, object, dict]:
    """Rebuild the environment and model of a checkpoint. Returns ``(gfn, env, state)``."""
    state = load_checkpoint(path)
    env = env_from_spec(state["env"])
    gfn = TemperatureGFlowNet.build(env, ModelConfig(**state["model_config"]))
    try:
        gfn.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the model it describes: {e}") from None
    return gfn, env, state
