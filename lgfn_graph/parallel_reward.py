"""Scoring molecules in worker processes: :class:`ParallelReward`.

RDKit oracles (QED, SA) run one molecule at a time in Python and hold the GIL, so threads do not
help; on the default task they are a third of a training step. :class:`ParallelReward` splits
each batch into contiguous chunks, one per worker process, and joins the scores in order, so a
run scores what it would in one process (bit for bit, for rewards that score each molecule on
its own), only sooner when cores are free.
"""
from __future__ import annotations

import pickle
import signal
import warnings
import weakref
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Sequence

import torch
from rdkit import Chem
from torch import Tensor

from .rewards import RewardFn, _as_scores, _name

# molecules travel as RDKit binaries with every property, so a reward reading one still finds it
_PICKLE_PROPS = Chem.PropertyPickleOptions.AllProps

# after this many broken pools in one object's life, it scores in its own process for good
_MAX_BROKEN_POOLS = 3

# in a worker process: the reward, or why it could not be unpickled
_worker_reward: RewardFn | None = None
_worker_load_error: str | None = None


class _RewardNotLoaded(RuntimeError):
    """A worker could not unpickle the reward (e.g. its class lives in a script's ``__main__``)."""


def _start_worker(payload: bytes) -> None:
    global _worker_reward, _worker_load_error
    # the parent decides what Ctrl-C means (the trainer finishes its step and checkpoints)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core already
    try:
        # Not a file anyone hands us: ``payload`` is what the parent pickled from its own reward
        # object a moment ago (ParallelReward.__init__) and sent down the pipe to this child it
        # spawned, the same trust as multiprocessing's own argument passing. Loading it here,
        # not as an initarg, lets a reward that cannot load say why instead of killing the worker.
        _worker_reward = pickle.loads(payload)
    except Exception as e:  # reported by the first chunk, not as an anonymous broken pool
        _worker_load_error = f"{type(e).__name__}: {e}"


def _ready() -> bool:
    return _worker_load_error is None


def _score_chunk(binaries: list[bytes]) -> Tensor:
    if _worker_load_error is not None:
        raise _RewardNotLoaded(_worker_load_error)
    mols = [Chem.Mol(b) for b in binaries]
    return _as_scores(_worker_reward, _worker_reward(mols), len(mols))


def _shutdown(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=True, cancel_futures=True)


class ParallelReward:
    """A reward scored in ``workers`` processes: ``B mols -> [B]`` float32, equal to
    ``reward(mols)`` converted to float32 for a reward that scores each molecule on its own (the
    RDKit ones). A network that scores batches (the sEH proxy, a GNN proxy) sees smaller batches
    on one thread each, so its scores may differ in the last bits; it is rarely faster anyway.

    Each call of at least ``2 * min_chunk`` molecules is split into at most ``workers``
    contiguous chunks of at least ``min_chunk``; smaller calls (and ``workers == 1``) run in
    this process, which is where :func:`~lgfn_graph.rewards.score_molecules` rescores one
    molecule at a time to name the one that made a batch fail. An exception in a worker reaches
    the caller as it was raised.

    The worker processes start (by ``spawn``) on the first parallel call and last until
    :meth:`close`, the end of a ``with`` block, or the object's deletion (:meth:`start` starts
    them at once, to import in the background). Each worker unpickles ``reward`` once, so the
    reward must pickle: a lambda or a local function does not (wrap a module-level function
    instead). Molecules travel as RDKit binaries with all their properties. Scores never change
    with the workers' fate: if a worker dies, that batch is scored in this process with a
    warning and the next call starts new workers; if processes cannot be started, the workers
    cannot unpickle the reward (a class defined in a script run as ``__main__``), or pools break
    three times, every later call is scored in this process, after one warning saying why.

    Args:
        reward: any reward (``B mols -> [B]``).
        workers: processes, >= 1.
        min_chunk: the fewest molecules worth sending to a worker, >= 1.

    Example::

        >>> from lgfn_graph.rewards import qed_sa
        >>> with ParallelReward(qed_sa(), workers=2) as reward:  # doctest: +SKIP
        ...     scores = reward(mols)  # [len(mols)], == qed_sa()(mols)
    """

    def __init__(self, reward: RewardFn, workers: int, min_chunk: int = 8):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"ParallelReward workers must be an integer >= 1, got {workers!r}")
        if isinstance(min_chunk, bool) or not isinstance(min_chunk, int) or min_chunk < 1:
            raise ValueError(f"ParallelReward min_chunk must be an integer >= 1, got {min_chunk!r}")
        try:
            self._payload = pickle.dumps(reward)
        except Exception as e:  # pickling raises many types (PicklingError, AttributeError, TypeError)
            raise ValueError(f"reward {_name(reward)} cannot be sent to worker processes: it does not pickle "
                             f"({type(e).__name__}: {e}). Define it at module level, or score in one "
                             "process (reward_workers=0)") from e
        self.reward, self.workers, self.min_chunk = reward, workers, min_chunk
        self.__name__ = f"ParallelReward({_name(reward)}, workers={workers})"
        self._pool: ProcessPoolExecutor | None = None
        self._finalizer = None
        self._broken_pools = 0
        self._started: list = []
        self.in_process_reason: str | None = None  # why every call is now scored in this process

    def __call__(self, mols: Sequence[Chem.Mol]) -> Tensor:
        mols = list(mols)
        chunks = self._chunks(len(mols))
        if len(chunks) < 2 or self.in_process_reason is not None:
            return self.reward(mols)
        binaries = [m.ToBinary(_PICKLE_PROPS) for m in mols]
        pool = self.start()
        if pool is None:
            return self.reward(mols)
        try:
            futures = [pool.submit(_score_chunk, binaries[a:b]) for a, b in chunks]
            return torch.cat([f.result() for f in futures])
        except _RewardNotLoaded as e:
            self._score_here(f"the worker processes cannot unpickle the reward ({e})")
        except BrokenProcessPool as e:
            self._broken_pools += 1
            if self._broken_pools >= _MAX_BROKEN_POOLS:
                self._score_here(f"worker pools broke {self._broken_pools} times, the last: {e}")
            else:
                warnings.warn(f"{self.__name__}: a worker process died ({e}); scoring this batch in this "
                              "process and starting new workers on the next call", RuntimeWarning, stacklevel=2)
                self.close()
        return self.reward(mols)

    def _score_here(self, reason: str) -> None:
        self.in_process_reason = reason
        warnings.warn(f"{self.__name__}: {reason}; scoring every batch in this process from now on",
                      RuntimeWarning, stacklevel=3)
        self.close()

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        """``(start, stop)`` of each chunk: as many as ``workers`` and ``min_chunk`` allow, sizes
        differing by at most one."""
        k = max(1, min(self.workers, n // self.min_chunk))
        bounds = [round(i * n / k) for i in range(k + 1)]
        return [(bounds[i], bounds[i + 1]) for i in range(k)]

    def start(self, wait: bool = False) -> ProcessPoolExecutor | None:
        """Start the worker processes unless they run already, and return the pool; ``None``
        (after a warning) if processes cannot be started here, and from then on. ``wait``:
        return once they have imported the reward (e.g. before timing), not at once."""
        if self.in_process_reason is not None:
            return None
        if self._pool is None:
            try:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                                 initializer=_start_worker, initargs=(self._payload,))
                self._finalizer = weakref.finalize(self, _shutdown, self._pool)
                # a spawn pool starts every process on the first submit; each answers once loaded
                self._started = [self._pool.submit(_ready) for _ in range(self.workers)]
            except OSError as e:  # no semaphores (/dev/shm), no processes left...
                self._score_here(f"cannot start worker processes ({type(e).__name__}: {e})")
                return None
        if wait:
            for f in self._started:
                f.result()
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (the next parallel call starts new ones)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = self._finalizer = None
        self._started = []

    def __enter__(self) -> "ParallelReward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):  # a copy gets its own workers
        return ParallelReward, (self.reward, self.workers, self.min_chunk)


def parallel(reward: RewardFn, workers: int) -> RewardFn:
    """``reward`` scored in ``workers`` processes (:class:`ParallelReward`, started at once so
    that they import while the caller builds its model); ``workers`` 0 or 1: ``reward`` itself,
    scored in this process."""
    if workers <= 1:
        return reward
    out = ParallelReward(reward, workers)
    out.start()
    return out


__all__ = ["ParallelReward", "parallel"]
