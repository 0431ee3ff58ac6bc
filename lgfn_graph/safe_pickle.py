"""Reading pickles without running code from them: an unpickler that builds only scikit-learn
estimators, their tree and neighbour structures, numpy arrays and plain Python data.

A pickle names callables that the loader calls; a crafted file can name ``os.system``. The
loader here resolves a name only when it is on the allow-list below, and refuses anything else
with :class:`UnsafePickleError` naming it, before calling anything.
"""
from __future__ import annotations

import gzip
import importlib
import io
import pickle
from typing import BinaryIO

_NUMPY = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.numeric", "_frombuffer"),
          ("numpy.core.numeric", "_frombuffer"), ("numpy._core.multiarray", "scalar"),
          ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy.core.multiarray", "_reconstruct")}
_BUILTINS = {("builtins", n) for n in ("set", "frozenset", "slice", "complex", "bytearray")}
# compiled sklearn structures (not estimators) that fitted estimators hold, with their
# ``newObj`` helpers (``cls.__new__(cls)``, nothing more)
_SKLEARN_STRUCTURES = ("sklearn.tree._tree", "sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree",
                       "sklearn.metrics._dist_metrics", "sklearn._loss.loss", "sklearn._loss._loss")


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names something the restricted loader does not build."""


class EstimatorUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` limited to scikit-learn estimator classes (subclasses of
    ``BaseEstimator``), the compiled structures they hold, numpy arrays and plain data."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY or (module, name) in _BUILTINS:
            return super().find_class(module, name)
        if module.split(".")[0] == "sklearn":
            obj = getattr(importlib.import_module(module), name, None)
            if module in _SKLEARN_STRUCTURES and (isinstance(obj, type) or name == "newObj"):
                return obj
            from sklearn.base import BaseEstimator
            if isinstance(obj, type) and issubclass(obj, BaseEstimator):
                return obj
        raise UnsafePickleError(f"refusing to build {module}.{name}: only scikit-learn estimators, numpy arrays "
                                "and plain data may be loaded (unpickling anything else could run code)")


def dump_gz(obj, f: BinaryIO) -> None:
    """Pickle ``obj`` (protocol 5) gzip-compressed into the binary file ``f``."""
    with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6, mtime=0) as gz:
        pickle.dump(obj, gz, protocol=5)


def load_gz(data: bytes):
    """Read what :func:`dump_gz` wrote, with :class:`EstimatorUnpickler`."""
    return EstimatorUnpickler(io.BytesIO(gzip.decompress(data))).load()
