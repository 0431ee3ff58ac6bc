"""The ``lgfn`` console script.

It sits outside :mod:`lgfn_graph` because importing that package (torch, PyTorch Geometric,
RDKit) takes seconds, and a Ctrl-C meanwhile should end the command with one line, as it does
once :func:`lgfn_graph.cli.main` runs, rather than with the traceback of some import.
"""
import os
import signal
import sys


def _interrupted(signum, frame):
    # nothing is written before the import ends, so leave at once: a KeyboardInterrupt raised
    # inside a half-done import of numpy or scipy can surface as another error
    sys.stderr.write("lgfn: interrupted while starting\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def main() -> int:
    old = signal.getsignal(signal.SIGINT)
    if old is not signal.SIG_IGN:  # a background job's ignored Ctrl-C stays ignored
        signal.signal(signal.SIGINT, _interrupted)
    from lgfn_graph.cli import main as lgfn
    signal.signal(signal.SIGINT, old)
    return lgfn()
