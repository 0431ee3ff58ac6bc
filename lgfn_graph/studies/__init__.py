"""Studies: the experiments that judge temperature conditioning, each a module with ``main(argv)``.

* :mod:`~lgfn_graph.studies.mode_seeking`: online training at beta ~ U[1, 3]; modes found
  against trajectories sampled, top-k reward and diversity, per conditioning mode.
* :mod:`~lgfn_graph.studies.offline_generalization`: offline training on the low-reward half of
  random molecules at beta ~ U[10, 50]; held-out likelihood against reward and samples' reward
  at betas from 1 to 5000, per conditioning mode.

Run one with ``lgfn study NAME [options] [key=value ...]`` (or ``python tasks/NAME.py``); every
study takes ``--config``, ``--out``, ``--seeds``, ``--modes``, ``--quick`` and overrides, and a
rerun into the same ``--out`` skips the (mode, seed) runs that already finished.
"""
