"""The sEH task: molecules of up to 9 of the 72 fragments, rewarded by the sEH binding proxy.

The benchmark of Bengio et al. (2021) as the field runs it: reward ``clip(proxy / 8, 1e-4, 100)``
(:class:`lgfn_graph.seh_proxy.SEHReward`). Needs two public files:

* the 72-fragment library (``--fragments``, default ``$LGFN_FRAGMENTS_72``): ``fragments_72.json``,
  the list in recursionpharma/gflownet ``src/gflownet/models/bengio2021flow.py`` (MIT), written
  as ``[{"smiles": ..., "attachment_atoms": [...]}, ...]``;
* the proxy weights (``--weights``, default ``$LGFN_SEH_PROXY``, else downloaded once into the
  cache ``$LGFN_CACHE`` or ``~/.cache/lgfn_graph``).

Trains a temperature-conditional GFlowNet with beta ~ U[1, 64], samples at several betas and
writes into ``--out`` the same files as ``tasks/qed_frag.py``: ``checkpoint.pt``,
``metrics.jsonl``, ``samples.csv``, ``summary.csv``, ``mean_reward_vs_beta.png``, ``run.json``.

Run: ``LGFN_FRAGMENTS_72=fragments_72.json python tasks/seh_frag.py --out runs/seh_frag``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import lgfn_graph as L
from lgfn_graph.run import add_training_args, parse_betas, train_and_sweep
from lgfn_graph.seh_proxy import SEHReward

ENV_FRAGMENTS = "LGFN_FRAGMENTS_72"


def fragments_path(path: str | None = None) -> Path:
    """The 72-fragment library file: ``path``, else ``$LGFN_FRAGMENTS_72``."""
    path = path or os.environ.get(ENV_FRAGMENTS)
    if not path:
        raise L.FragmentLibraryError(
            f"seh_frag needs the 72-fragment library: pass --fragments PATH or set {ENV_FRAGMENTS}=PATH "
            "(fragments_72.json: the fragment list of recursionpharma/gflownet, src/gflownet/models/bengio2021flow.py "
            "(MIT), written as [{\"smiles\": ..., \"attachment_atoms\": [...]}, ...])")
    return Path(path)


def make_task(fragments: str | None = None, weights: str | None = None, max_fragments: int = 9,
              proxy_device: str = "cpu", proxy_batch_size: int = 256):
    """The environment and reward of the task: ``(env, reward)``."""
    lib = L.FragmentLibrary.from_json(fragments_path(fragments))
    reward = SEHReward(weights, device=proxy_device, batch_size=proxy_batch_size)
    return L.FragmentEnv(lib, max_fragments=max_fragments), reward


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(p, out="runs/seh_frag", max_fragments=9, beta_high=64.0, eval_betas="1,4,16,32,64")
    p.add_argument("--fragments", default=None, help=f"72-fragment library JSON (default: ${ENV_FRAGMENTS})")
    p.add_argument("--weights", default=None, help="sEH proxy weights best_params.pkl.gz (default: $LGFN_SEH_PROXY, "
                                                   "else the cache, downloaded on first use)")
    p.add_argument("--proxy-device", default="cpu", help="device of the proxy (the policy trains on the CPU)")
    p.add_argument("--proxy-batch-size", type=int, default=256)
    a = p.parse_args(argv)
    parse_betas(a.eval_betas)  # fail before loading anything
    env, reward = make_task(a.fragments, a.weights, a.max_fragments, a.proxy_device, a.proxy_batch_size)
    return train_and_sweep(env, reward, a)


if __name__ == "__main__":
    main()
