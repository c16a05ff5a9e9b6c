"""Atomic file writes: write to a temp file in the destination folder, fsync, then rename over the target.

An interrupted write (crash, SIGKILL, full disk) never leaves a truncated file where a good one was: the
rename is atomic on POSIX file systems, and the temp file lives in the same folder so it is on the same one.

A write that fails — full disk (ENOSPC), quota (EDQUOT), a read-only file system (EROFS), a folder without write
permission (EACCES / EPERM), the file-size limit (EFBIG under ``ulimit -f``; the CLI ignores SIGXFSZ so that the
write fails instead of the process being killed) — is one :class:`jembench.errors.JembenchError` naming the file
and the fix; the previous file stays intact and no temp file is left behind.

The final file gets the permissions any new file gets, ``0666 & ~umask`` (``mkstemp`` creates the temp file
``0600``, which would hide reports and records from the other users of a shared server).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator


def ensure_writable_dir(folder: str | os.PathLike, what: str = "output folder", flag: str = "--out") -> None:
    """Fail early (before any work) when ``folder`` cannot be created or written."""
    from .errors import JembenchError

    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise JembenchError(f"{what} {folder} is not writable ({probe} is not a writable folder); "
                            f"pass {flag} to a folder you can write")


_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write to another folder",
    errno.EACCES: "permission denied: make the folder writable or write elsewhere",
    errno.EPERM: "permission denied: make the folder writable or write elsewhere",
    errno.EFBIG: "the file exceeds the file-size limit (ulimit -f): raise the limit or write elsewhere",
}


def write_error(target: str | os.PathLike, exc: OSError):
    """The one-line error for a failed write of ``target``."""
    from .errors import JembenchError

    fix = _FIXES.get(exc.errno or 0, "check the folder, its permissions and the free space")
    reason = exc.strerror or type(exc).__name__
    return JembenchError(f"cannot write {target} ({reason}); {fix} (pass another output path, e.g. --out)")


def current_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set-and-restore, which is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it gets mode ``0666 & ~umask`` and is renamed to
    ``target``, on failure deleted. An ``OSError`` while creating, writing or renaming it (disk full,
    read-only, size limit, permissions) becomes a one-line error naming ``target``."""
    target = Path(target)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    except OSError as exc:
        raise write_error(target, exc) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def write_bytes(target: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result atomically to ``target``."""
    with atomic_path(target) as tmp:
        writer(tmp)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, obj: Any) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def torch_save(target: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` atomically. Saving through a file object keeps the archive's inner folder name fixed
    ("archive"), so identical states give identical bytes (and SHA-256) whatever the temp file was called."""
    import torch

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            try:
                torch.save(obj, fh)
            except RuntimeError as exc:  # torch's zip writer reports a failed or short write() as a RuntimeError
                _raise_write_failure(tmp, exc)  # ("failed writing", "unexpected pos 562752 vs 562640", ...)


_PROBE_BYTES = 1 << 20


def _raise_write_failure(tmp: Path, exc: Exception) -> None:
    """Turn a writer's non-OSError failure into the OSError it hides, found by writing to the same file what the
    writer could not (ENOSPC on a full disk, EFBIG beyond ``ulimit -f``, EDQUOT, ...): 1 MiB, more than the
    partly filled page a full file system may still have room for. When the probe succeeds the failure was not a
    write failure: a message that says so is a write failure all the same (EIO), anything else is re-raised."""
    try:
        with open(tmp, "ab") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as probe:
        raise probe from None
    if "writ" in str(exc).lower():
        raise OSError(errno.EIO, f"write failed ({str(exc).splitlines()[0][:120]})") from None
    raise exc
