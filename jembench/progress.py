"""Progress reporting for long loops (suites, attack units, training): tqdm bars on stderr, or one line per unit.

One switch for the whole process, :func:`configure` (the CLI's ``--no-progress``; default: bars when stderr is a
terminal). When bars are off — not a TTY (CI logs, pipes) or ``--no-progress`` — nothing animates, but
:func:`unit_done` still prints one short line per finished unit of work, so a minutes-long robustness unit or OOD
set is never silent in a log. Under ``torchrun`` only rank 0 reports.

The informational lines go through the standard :mod:`logging` logger ``jembench`` (:func:`info`, :func:`warning`),
written to the current ``sys.stderr`` as they are, so the CLI's ``-q`` / ``-v`` (:func:`set_verbosity`) and any
application's own logging configuration decide what is shown; ``-q`` also hides the bars.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

_STATE: dict[str, Any] = {"enabled": None, "lines": True}

logger = logging.getLogger("jembench")


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a line is emitted (the CLI swaps in a terminal-safe stream,
    pytest a capture), not the stream that was current when the handler was made."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # follows sys.stderr (logging.StreamHandler keeps the stream it was given)
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging.StreamHandler.__init__ assigns it; always use the current stderr
        pass


def _ensure_handler() -> None:
    """jembench reports progress as a library too: lines of level INFO and above go to stderr by default
    (``logging.lastResort`` would only show warnings); an application changes that through the ``jembench``
    logger (its level, handlers or ``propagate``)."""
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def set_verbosity(verbosity: int = 0) -> None:
    """The CLI's ``-q`` / ``-v``: ``verbosity`` < 0 shows warnings only (no info lines, no bars), 0 info lines,
    > 0 debug lines too."""
    _ensure_handler()
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)


def info(message: str) -> None:
    """An informational line on stderr (rank 0 only; hidden by ``-q``)."""
    if _main_rank():
        _ensure_handler()
        logger.info(message)


def warning(message: str) -> None:
    """A warning line on stderr (every rank; shown under ``-q`` too)."""
    _ensure_handler()
    logger.warning(message)


def configure(enabled: bool | None = None, lines: bool = True) -> None:
    """``enabled``: True / False forces bars on / off, None = on when stderr is a terminal. ``lines``: print
    one line per finished unit when bars are off (``-q`` hides them, with every other info line)."""
    _STATE["enabled"], _STATE["lines"] = enabled, lines


@contextlib.contextmanager
def configured(enabled: bool | None = None) -> Iterator[None]:
    """:func:`configure` for the duration of a block (the library's ``progress=`` keyword), then as before."""
    saved = dict(_STATE)
    configure(enabled, saved["lines"])
    try:
        yield
    finally:
        _STATE.update(saved)


def _main_rank() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def bars_allowed() -> bool:
    """False under ``-q`` (the ``jembench`` logger above INFO): no bar may animate, whatever else asks for one."""
    return logger.getEffectiveLevel() <= logging.INFO


def bars_enabled() -> bool:
    """Whether animated bars are shown (see :func:`configure`)."""
    enabled = _STATE["enabled"]
    if not bars_allowed():  # -q
        return False
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
    info(text)
