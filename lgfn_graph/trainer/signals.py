"""Stopping training on a signal: finish the step in flight, checkpoint, then stop.

SIGINT (Ctrl-C), SIGTERM and SIGHUP (a scheduler's preemption, a closed terminal) are caught
while :class:`StopSignals` is active; the training loop polls :attr:`StopSignals.requested`
after each step.
"""
from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT, SIGTERM or SIGHUP), after saving a checkpoint unless
    the signal was a second one. ``signum``: the signal; ``lgfn train`` exits with ``128 + signum``."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While active (main thread only), SIGINT, SIGTERM and SIGHUP ask training to stop after
    the current step instead of interrupting it half-way: the first sets :attr:`requested`, a
    second raises :class:`TrainingInterrupted` at once. A signal the process ignores stays
    ignored (``nohup`` ignores SIGHUP so that a run outlives its terminal). Leaving restores the
    previous handlers and clears :attr:`requested`.

    Attributes:
        requested: the signal that asked to stop, or ``None``.
    """

    def __init__(self):
        self.requested: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            raise TrainingInterrupted(signum, f"stopped at once by a second {signal.Signals(signum).name}; the last "
                                              "checkpoint is kept")
        self.requested = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)  # None: set outside Python
        self._old = {}
        self.requested = None


def interrupted(signum: int, step: int) -> TrainingInterrupted:
    """The error that ends training stopped by ``signum`` after ``step``, its checkpoint saved."""
    return TrainingInterrupted(signum, f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved")


__all__ = ["STOP_SIGNALS", "StopSignals", "TrainingInterrupted", "interrupted"]
