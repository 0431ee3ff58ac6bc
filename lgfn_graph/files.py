"""Result files: written atomically (complete on disk or not there at all), as CSV, PNG figures
or with Markdown tables.

(Named ``files`` rather than ``io``, which would shadow the standard library's module.)"""
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


def save_png(fig, path: str | Path) -> None:
    """Write a matplotlib figure as PNG (tight layout, 120 dpi) atomically.

    Build the figure as ``matplotlib.figure.Figure(figsize=...)`` rather than with pyplot: it then
    needs no backend, so plotting never switches the user's (and is freed with its last reference).
    """
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table of text cells: the header line, the ``|---|`` rule, then one
    line per row (no trailing newline).

    >>> print(markdown_table(["mode", "reward"], [["logit", "0.81"], ["none", "0.64"]]))
    | mode | reward |
    |---|---|
    | logit | 0.81 |
    | none | 0.64 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
