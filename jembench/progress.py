"""Progress reporting for long loops (suites, attack units, training): tqdm bars on stderr, or one line per unit.

One switch for the whole process, :func:`configure` (the CLI's ``--no-progress``; default: bars when stderr is a
terminal). When bars are off — not a TTY (CI logs, pipes) or ``--no-progress`` — nothing animates, but
:func:`unit_done` still prints one short line per finished unit of work, so a minutes-long robustness unit or OOD
set is never silent in a log. Under ``torchrun`` only rank 0 reports.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_STATE: dict[str, Any] = {"enabled": None, "lines": True}


def configure(enabled: bool | None = None, lines: bool = True) -> None:
    """``enabled``: True / False forces bars on / off, None = on when stderr is a terminal. ``lines``: print
    one line per finished unit when bars are off (``-q`` turns them off)."""
    _STATE["enabled"], _STATE["lines"] = enabled, lines


def _main_rank() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def bars_enabled() -> bool:
    """Whether animated bars are shown (see :func:`configure`)."""
    enabled = _STATE["enabled"]
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(enabled) and _main_rank()


def bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        leave: bool = False) -> Any:
    """A tqdm bar on stderr (disabled when bars are off); use as an iterator wrapper or with ``update``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=sys.stderr, dynamic_ncols=True,
                disable=not bars_enabled())


def track(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate with a bar; without bars, one line when the loop ends (``desc: N unit in S s``)."""
    start, n = time.perf_counter(), 0
    with bar(iterable, total=total, desc=desc, unit=unit) as wrapped:
        for item in wrapped:
            n += 1
            yield item
    if not bars_enabled():
        unit_done(desc, f"{n} {unit}", time.perf_counter() - start)


def unit_done(desc: str, what: str = "", seconds: float | None = None) -> None:
    """One line on stderr for a finished unit of work — only when bars are off (a bar already shows it)."""
    if bars_enabled() or not _main_rank() or not _STATE["lines"]:
        return
    text = f"jembench: {desc}" + (f": {what}" if what else "") + (f" ({seconds:.1f} s)" if seconds is not None else "")
    print(text, file=sys.stderr, flush=True)
