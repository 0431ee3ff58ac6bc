"""A run folder belongs to one process at a time: an OS lock on its ``.lock`` file.

Two trainers writing into one folder would interleave their metrics and samples and overwrite
each other's checkpoints, so :class:`RunFolderLock` takes an exclusive ``flock`` on
``<folder>/.lock`` before anything is written there, and a second process is refused at once,
naming the owner. The kernel drops the lock when its owner exits, however it exits (even
SIGKILL), so a crashed run never leaves the folder locked; the ``.lock`` file itself stays,
holding the last owner's pid, host and start time (read only to name a live owner).

Readers (a notebook querying ``samples.db``, ``lgfn sample`` on the checkpoint) take no lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

LOCK_NAME = ".lock"

# what files.atomic_write names its temporary files: ".<name>.<8 characters>.tmp"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")

# the folders this process holds: real path -> [open lock file, how many holds]
_held: dict[str, list] = {}
_held_guard = threading.Lock()


class RunFolderError(RuntimeError):
    """A run folder is not in the state a command needs (in use, or holding another run)."""


class RunFolderBusy(RunFolderError):
    """Another process holds the run folder's lock."""


class RunFolderLock:
    """An exclusive lock on a run folder, for as long as it is held.

    The process that holds it may take it again (``lgfn train`` holds it around its
    :class:`~lgfn_graph.Trainer`, which takes it too); it is freed when every hold is released.
    Taking it first removes the temporary files a killed writer left (:func:`remove_stale_temporaries`).

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     with RunFolderLock(folder):
        ...         pass  # no other process can take the folder until here

    Raises:
        RunFolderBusy: from :meth:`acquire`, when another process holds it.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._key: str | None = None

    def acquire(self) -> "RunFolderLock":
        if self._key is not None:
            raise RuntimeError(f"{self.folder}: this RunFolderLock is already held")
        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.folder)
        with _held_guard:
            if key in _held:
                _held[key][1] += 1
            else:
                f = _lock(self.folder)
                try:
                    remove_stale_temporaries(self.folder)
                except BaseException:
                    f.close()
                    raise
                _held[key] = [f, 1]
        self._key = key
        return self

    def release(self) -> None:
        if self._key is None:
            return
        with _held_guard:
            entry = _held[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self._key]
                entry[0].close()  # closing the file frees the flock
        self._key = None

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(folder: Path):
    """Open ``folder/.lock``, take its flock and write this process's identity into it."""
    f = open(folder / LOCK_NAME, "a+")  # "a+": create it if missing, never truncate another's record
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = _describe(f.read())
        f.close()
        raise RunFolderBusy(f"{folder} is in use by another process ({owner}): wait for it to end, or "
                            "write into another folder") from None
    except BaseException:
        f.close()
        raise
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
    f.flush()
    return f


def _describe(record: str) -> str:
    """The owner recorded in a lock file, in words (its writer may not have written it yet)."""
    try:
        owner = json.loads(record)
        return f"pid {owner['pid']} on {owner['host']}, since {owner['started']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "it is starting"


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of :func:`~lgfn_graph.files.atomic_write` (``.<name>.XXXXXXXX.tmp``)
    directly in ``folder``: a writer killed between creating one and renaming it leaves it for
    good. Call only while holding the folder's lock, so that no live writer owns them. Returns
    what was removed."""
    removed = []
    for path in Path(folder).iterdir():
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
