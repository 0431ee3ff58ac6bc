"""Every sampled molecule in an SQLite database, written as training goes."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

_SCHEMA = """CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, rank INTEGER NOT NULL, beta REAL NOT NULL,
    smiles TEXT, reward REAL NOT NULL, valid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS samples_step ON samples(step);"""


class SampleDB:
    """An append-only table ``samples(step, rank, beta, smiles, reward, valid)``.

    Uses write-ahead logging and commits once per :meth:`add`, so a run that is killed loses at
    most the step in flight and readers (e.g. a notebook) can query while training writes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.executescript(_SCHEMA)

    def add(self, step: int, smiles: Sequence[str | None], reward: Sequence[float], beta: Sequence[float],
            valid: Sequence[bool] | None = None, rank: int = 0) -> None:
        """Record one step's molecules (one entry per molecule in each sequence) and commit."""
        n = len(smiles)
        if not (len(reward) == len(beta) == n) or (valid is not None and len(valid) != n):
            raise ValueError(f"SampleDB.add: {n} smiles but {len(reward)} rewards and {len(beta)} betas")
        valid = [True] * n if valid is None else valid
        rows = [(step, rank, float(b), s, float(r), int(v)) for s, r, b, v in zip(smiles, reward, beta, valid)]
        with self._con:
            self._con.executemany("INSERT INTO samples(step, rank, beta, smiles, reward, valid) VALUES (?,?,?,?,?,?)",
                                  rows)

    def truncate_after(self, step: int) -> int:
        """Delete the rows of steps after ``step`` (a resumed run redoes them). Returns how many."""
        with self._con:
            return self._con.execute("DELETE FROM samples WHERE step > ?", (step,)).rowcount

    def rows(self, min_step: int = 0) -> list[dict]:
        """All rows from ``min_step`` on, in insertion order."""
        cur = self._con.execute("SELECT step, rank, beta, smiles, reward, valid FROM samples WHERE step >= ? "
                                "ORDER BY id", (min_step,))
        keys = ("step", "rank", "beta", "smiles", "reward", "valid")
        return [dict(zip(keys, r)) for r in cur.fetchall()]

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> "SampleDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
