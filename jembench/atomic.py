"""Atomic file writes: write to a temp file in the destination folder, fsync, then rename over the target.

An interrupted write (crash, SIGKILL, full disk) never leaves a truncated file where a good one was: the
rename is atomic on POSIX file systems, and the temp file lives in the same folder so it is on the same one.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it is renamed to ``target``, on failure deleted."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
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

    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_figure(target: str | os.PathLike, fig) -> None:
    """Save a matplotlib figure atomically (PNG, format taken from the target's suffix)."""
    fmt = Path(target).suffix.lstrip(".") or "png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight", dpi=120)
