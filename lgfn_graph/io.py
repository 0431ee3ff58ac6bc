"""Atomic file writes: a result is either complete on disk or not there at all."""
from __future__ import annotations

import csv
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator:
    """Write to a temporary file beside ``path`` (``.<name>.XXXXXXXX.tmp``), then rename it over ``path``.

    If the block raises, ``path`` is untouched and the temporary file is removed. The file keeps
    the permissions of the one it replaces; a new one gets the usual ``0o666`` less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, mode) as f:
            if path.exists():
                os.chmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a failed write or fsync names no file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new file beside ``path``, opened for writing. Unlike ``tempfile.mkstemp`` (always
    ``0o600``) the kernel applies the umask to ``0o666``, as for any file the user creates."""
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_csv(path: str | Path, rows: Sequence[dict]) -> None:
    """Write dict rows (the first row's keys are the columns) atomically."""
    if not rows:
        raise ValueError(f"no rows to write to {path}")
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
