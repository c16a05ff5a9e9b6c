"""Progress reporting for long loops (suites, attack units, training): tqdm bars on terminals, lines in logs.

One switch for the whole process, :func:`configure` (the CLI's ``--no-progress``). By default tqdm itself
decides whether a bar is drawn (``disable=None``: a bar only when stderr is a terminal), so a log file or a
pipe never receives a bar's ``\r`` frames. Where no bar is drawn — not a terminal, or ``--no-progress`` —
every open bar still counts, and

* :func:`unit_done` prints one short line per finished unit of work (a robustness unit, a batch of chains);
* a heartbeat line (:class:`_Heartbeat`) reports every open bar — done / total, elapsed, ETA, in tqdm's own
  format — every ``$JEMBENCH_HEARTBEAT`` seconds (default 30; 0 turns it off), from a background thread, so a
  log is never silent for minutes even inside one long unit or one long step.

Under ``torchrun`` only rank 0 reports. The lines go through the standard :mod:`logging` logger ``jembench``
(:func:`info`, :func:`warning`), written to the current ``sys.stderr``, so the CLI's ``-q`` / ``-v``
(:func:`set_verbosity`) and any application's own logging configuration decide what is shown; ``-q`` also hides
the bars and the heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: seconds between heartbeat lines in logs (0 = none); read when a heartbeat starts
HEARTBEAT_ENV = "JEMBENCH_HEARTBEAT"
DEFAULT_HEARTBEAT_S = 30.0

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
    return os.environ.get("RANK", "0") == "0"


def bars_allowed() -> bool:
    """False under ``-q`` (the ``jembench`` logger above INFO): no bar may animate, whatever else asks for one."""
    return logger.getEffectiveLevel() <= logging.INFO


def _lines_wanted() -> bool:
    """Whether a loop without a drawn bar reports in lines (unit lines, heartbeat): info level, rank 0, and
    lines not switched off (:func:`configure`)."""
    return bars_allowed() and _main_rank() and bool(_STATE["lines"])


def heartbeat_interval() -> float:
    """``$JEMBENCH_HEARTBEAT`` in seconds (0 or less: no heartbeat); :data:`DEFAULT_HEARTBEAT_S` when unset or
    not a number."""
    try:
        return float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
    except ValueError:
        return DEFAULT_HEARTBEAT_S


class Bar(tqdm):
    """A tqdm bar whose drawing tqdm decides (``disable=None``: only on a terminal) unless bars are forced on or
    off (:func:`configure`, ``-q``). A bar that is not drawn still counts (tqdm's own disabled bar does not), so
    the heartbeat can say how far it got."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, desc: str = "", unit: str = "it",
                 total: float | None = None, initial: float = 0, **kwargs: Any) -> None:
        self._label, self._unit = desc.strip(), unit
        self.started = time.monotonic()
        super().__init__(iterable, desc=desc, unit=unit, total=total, initial=initial, **kwargs)
        self.drawn = not self.disable  # tqdm sets disable on close: whether it was drawn is kept here
        if self.disable and _lines_wanted():
            _HEARTBEAT.add(self)

    def update(self, n: float | None = 1) -> bool | None:
        if self.disable:  # not drawn: count for the heartbeat
            self.n += n or 0
            return None
        return super().update(n)

    def __iter__(self) -> Iterator[Any]:
        if not self.disable:
            yield from super().__iter__()
            return
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def close(self) -> None:
        if _HEARTBEAT is not None:  # None only while the interpreter shuts down (tqdm closes in __del__)
            _HEARTBEAT.discard(self)
        super().close()

    def status(self) -> str:
        """``desc: n/total unit, elapsed mm:ss, ETA mm:ss`` (tqdm's formatting; no ETA without a total)."""
        fmt = ("{desc}: {n_fmt}/{total_fmt} {unit}, elapsed {elapsed}, ETA {remaining}" if self.total
               else "{desc}: {n_fmt} {unit}, elapsed {elapsed}")
        return tqdm.format_meter(self.n, self.total, time.monotonic() - self.started, prefix=self._label,
                                 unit=self._unit, bar_format=fmt)


class _Heartbeat:
    """A daemon thread that, while any undrawn bar is open, logs one line every :func:`heartbeat_interval`
    seconds with the status of each that has been open for half an interval or more (outermost first):
    ``jembench: … robustness: 5/24 unit, elapsed 01:10, ETA 04:12 | k10/pgd-linf/b0: 130 step, elapsed 00:40``.
    It stops when the last bar closes."""

    def __init__(self) -> None:
        self._bars: dict[int, Bar] = {}  # by id: tqdm's == compares bar positions, not bars
        # re-entrant: the garbage collector may finalise (close) a bar in whichever thread holds the lock
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

    def add(self, bar: Bar) -> None:
        if heartbeat_interval() <= 0:
            return
        with self._lock:
            self._bars[id(bar)] = bar
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="jembench-heartbeat", daemon=True)
                self._thread.start()

    def discard(self, bar: Bar) -> None:
        with self._lock:
            self._bars.pop(id(bar), None)

    def _run(self) -> None:
        interval = heartbeat_interval()
        while True:
            time.sleep(interval)
            with self._lock:
                bars = list(self._bars.values())
                if not bars:
                    self._thread = None
                    return
            settled = [bar for bar in bars if time.monotonic() - bar.started >= interval / 2]  # not just opened
            if settled:
                info("jembench: … " + " | ".join(bar.status() for bar in settled))


_HEARTBEAT = _Heartbeat()


def bar(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        leave: bool = False, initial: int = 0, enabled: bool | None = None) -> Bar:
    """A progress bar on stderr (:class:`Bar`); use as an iterator wrapper or with ``update``. Drawn when
    ``enabled`` or :func:`configure` forces it, else when tqdm finds stderr to be a terminal; never under ``-q``
    or on ranks other than 0. ``enabled=False`` (a command's ``--no-progress``) keeps it undrawn."""
    forced = _STATE["enabled"] if enabled is None else enabled
    disable = True if not (bars_allowed() and _main_rank()) else None if forced is None else not forced
    return Bar(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, file=sys.stderr,
               dynamic_ncols=True, disable=disable)


def track(iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate with a bar; without a drawn bar, one line when the loop ends (``desc: N unit in S s``)."""
    start, n = time.perf_counter(), 0
    with bar(iterable, total=total, desc=desc, unit=unit) as wrapped:
        for item in wrapped:
            n += 1
            yield item
    unit_done(desc, f"{n} {unit}", time.perf_counter() - start, bar=wrapped)


def unit_done(desc: str, what: str = "", seconds: float | None = None, bar: Bar | None = None) -> None:
    """One line on stderr for a finished unit of work, unless ``bar`` (the loop's bar) is drawn and shows it."""
    if (bar is not None and bar.drawn) or not _lines_wanted():
        return
    text = f"jembench: {desc}" + (f": {what}" if what else "") + (f" ({seconds:.1f} s)" if seconds is not None else "")
    info(text)
