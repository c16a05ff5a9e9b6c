"""One writer per run folder: ``jembench train`` holds ``<run folder>/.jembench.lock`` while it writes there.

Two ``jembench train`` processes with the same ``--out`` (or a ``--resume`` of a run that is still going) would
both write ``last.pt``, ``log.csv`` and ``events.jsonl``: one run silently replaces the other and the logs
interleave. The lock is an advisory ``flock`` taken through the ``filelock`` library (the lock of pip, tox and
Hugging Face's caches): the second writer fails at once with one line naming the holder — pid, host, command
and start time, which the holder writes into the lock file — instead of waiting. The kernel drops an ``flock``
when its process dies, however it dies (SIGKILL, OOM kill, power loss of a client), so a stale lock never blocks:
the next run takes it and overwrites the holder's note. The lock file stays in the folder (deleting it on
release would let a waiter lock a file that no longer has a name).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from .errors import JembenchError

LOCK_FILE = ".jembench.lock"


def _lock_class():
    import filelock

    return filelock.UnixFileLock if os.name == "posix" else filelock.FileLock


def _holder(path: Path) -> str:
    """Who holds the lock, in words, from the note in the lock file (read through :mod:`jembench.untrusted`)."""
    from .untrusted import read_json

    try:
        note = read_json(path, "lock")
    except JembenchError:
        note = None
    if not isinstance(note, dict):
        return "a process that has not written its name yet"
    parts = [f"pid {note.get('pid')}", f"on {note.get('host')}"]
    if note.get("command"):
        parts.append(f"running {str(note['command'])[:120]!r}")
    if note.get("started"):
        parts.append(f"since {note['started']}")
    return " ".join(parts)


def _write_note(path: Path) -> None:
    note = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(["jembench", *sys.argv[1:]]),
            "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(note) + "\n")


@contextlib.contextmanager
def hold(folder: str | os.PathLike, what: str = "run folder") -> Iterator[Path]:
    """Hold ``folder``'s lock for the block (the folder must exist); a folder another process holds is a
    one-line :class:`JembenchError` naming that process. Yields the lock file's path."""
    import filelock

    path = Path(folder) / LOCK_FILE
    lock = _lock_class()(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise JembenchError(f"{what} {folder} is being written by another jembench process ({_holder(path)}); "
                            f"wait for it to finish or stop it, or pass another --out") from None
    except OSError as exc:
        raise JembenchError(f"cannot lock {what} {folder} ({exc.strerror}); make the folder writable or pass "
                            f"another --out") from None
    try:
        with contextlib.suppress(OSError):  # the note is for the humans; the flock alone is the lock
            _write_note(path)
        yield path
    finally:
        lock.release()
