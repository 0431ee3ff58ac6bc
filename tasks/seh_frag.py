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
``metrics.jsonl``, ``samples.csv``, ``summary.csv``, ``mean_reward_vs_beta.png``,
``config.yaml``, ``run.json``.

Run: ``LGFN_FRAGMENTS_72=fragments_72.json python tasks/seh_frag.py --out runs/seh_frag``.
"""
from __future__ import annotations

import argparse

from lgfn_graph.run import add_training_args, config_from_args, train_and_sweep
from lgfn_graph.task import ENV_FRAGMENTS_72, TaskConfig


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_args(p, out="runs/seh_frag", max_fragments=9, beta_high=64.0, eval_betas="1,4,16,32,64")
    p.add_argument("--fragments", default=None, help=f"72-fragment library JSON (default: ${ENV_FRAGMENTS_72})")
    p.add_argument("--weights", default=None, help="sEH proxy weights best_params.pkl.gz (default: $LGFN_SEH_PROXY, "
                                                   "else the cache, downloaded on first use)")
    p.add_argument("--proxy-device", default="cpu", help="device of the proxy (the policy trains on the CPU)")
    p.add_argument("--proxy-batch-size", type=int, default=256)
    a = p.parse_args(argv)
    task = TaskConfig("seh_frag", fragments=a.fragments, max_fragments=a.max_fragments, proxy_weights=a.weights,
                      proxy_device=a.proxy_device, proxy_batch_size=a.proxy_batch_size)
    return train_and_sweep(config_from_args(a, task), resume=a.resume_or_start, progress=not a.no_progress)


if __name__ == "__main__":
    main()
