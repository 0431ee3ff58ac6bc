"""The sample database (lgfn_graph/sampledb.py): WAL journal, truncation, and waiting out a lock."""
import sqlite3
import threading

import pytest

import lgfn_graph as L
from lgfn_graph.sampledb import SampleDB


def test_sample_db_is_wal_and_truncates(tmp_path):
    path = tmp_path / "s.db"
    with L.SampleDB(path) as db:
        db.add(1, ["CCO", None], [0.5, 0.0], [1.0, 2.0], [True, False])
        db.add(2, ["C"], [0.1], [3.0], rank=1)
        assert db.truncate_after(1) == 1
        rows = db.rows()
        with pytest.raises(ValueError, match="2 smiles but 1 rewards"):
            db.add(3, ["C", "O"], [0.1], [1.0, 1.0])
    assert rows == [{"step": 1, "rank": 0, "beta": 1.0, "smiles": "CCO", "reward": 0.5, "valid": 1},
                    {"step": 1, "rank": 0, "beta": 2.0, "smiles": None, "reward": 0.0, "valid": 0}]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"



def test_a_long_external_write_lock_on_samples_db_makes_training_wait_not_fail(tmp_path):
    db = SampleDB(tmp_path / "samples.db", busy_timeout=0.05)
    other = sqlite3.connect(tmp_path / "samples.db", check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a reader's open write transaction
    threading.Timer(0.5, other.commit).start()
    with pytest.warns(RuntimeWarning, match="locked by another connection"):
        db.add(1, ["C", "CC"], [0.5, 0.25], [1.0, 2.0])
    assert [r["smiles"] for r in db.rows()] == ["C", "CC"]
    db.close()
    other.close()

