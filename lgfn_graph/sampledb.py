"""Every sampled molecule in an SQLite database, written as training goes."""
from __future__ import annotations

import errno
import sqlite3
import warnings
from pathlib import Path
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

_SCHEMA = """CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, rank INTEGER NOT NULL, beta REAL NOT NULL,
    smiles TEXT, reward REAL NOT NULL, valid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS samples_step ON samples(step);"""

# SQLite's messages for the failures that are the file system's, not a bug's
_OS_ERRORS = {"database or disk is full": errno.ENOSPC, "attempt to write a readonly database": errno.EACCES,
              "unable to open database file": errno.EACCES, "disk I/O error": errno.EIO}


class SampleDB:
    """An append-only table ``samples(step, rank, beta, smiles, reward, valid)``.

    Uses write-ahead logging and commits once per :meth:`add`, so a run that is killed loses at
    most the step in flight and readers (e.g. a notebook) can query while training writes.

    Another connection holding the write lock (an open write transaction) makes a write wait:
    ``busy_timeout`` seconds, then with a warning for as long as it lasts. Training waits rather
    than stops or drops rows. The file system's failures (disk full, read-only, unopenable) are
    raised as :class:`OSError` naming the file.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._write(lambda: sqlite3.connect(self.path, timeout=busy_timeout))
        self._write(lambda: self._con.execute("PRAGMA journal_mode=WAL"))
        self._write(lambda: self._con.executescript(_SCHEMA))

    def add(self, step: int, smiles: Sequence[str | None], reward: Sequence[float], beta: Sequence[float],
            valid: Sequence[bool] | None = None, rank: int = 0) -> None:
        """Record one step's molecules (one entry per molecule in each sequence) and commit."""
        n = len(smiles)
        if not (len(reward) == len(beta) == n) or (valid is not None and len(valid) != n):
            raise ValueError(f"SampleDB.add: {n} smiles but {len(reward)} rewards and {len(beta)} betas")
        valid = [True] * n if valid is None else valid
        rows = [(step, rank, float(b), s, float(r), int(v)) for s, r, b, v in zip(smiles, reward, beta, valid)]

        def insert() -> None:
            with self._con:  # one transaction: all the step's rows or, rolled back, none
                self._con.executemany("INSERT INTO samples(step, rank, beta, smiles, reward, valid) "
                                      "VALUES (?,?,?,?,?,?)", rows)
        self._write(insert)

    def truncate_after(self, step: int) -> int:
        """Delete the rows of steps after ``step`` (a resumed run redoes them). Returns how many."""
        def delete() -> int:
            with self._con:
                return self._con.execute("DELETE FROM samples WHERE step > ?", (step,)).rowcount
        return self._write(delete)

    def rows(self, min_step: int = 0) -> list[dict]:
        """All rows from ``min_step`` on, in insertion order."""
        cur = self._con.execute("SELECT step, rank, beta, smiles, reward, valid FROM samples WHERE step >= ? "
                                "ORDER BY id", (min_step,))
        keys = ("step", "rank", "beta", "smiles", "reward", "valid")
        return [dict(zip(keys, r)) for r in cur.fetchall()]

    def _write(self, write: Callable[[], T]) -> T:
        """``write()``, run again each time it finds the database locked past the busy timeout."""
        warned = False
        while True:
            try:
                return write()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    raise _os_error(e, self.path) or e
                if not warned:
                    warnings.warn(f"{self.path} is locked by another connection (an open write transaction?); "
                                  "training waits for it", RuntimeWarning, stacklevel=3)
                    warned = True

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "SampleDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _os_error(e: sqlite3.Error, path: Path) -> OSError | None:
    """The :class:`OSError` an SQLite failure of the file system stands for, else ``None``."""
    code = next((c for message, c in _OS_ERRORS.items() if message in str(e)), None)
    if code is None:
        return None
    error = OSError(code, f"{e} (SQLite)", str(path))
    error.__cause__ = e
    return error
