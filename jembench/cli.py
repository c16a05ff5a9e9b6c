"""The ``jembench`` command: one subcommand per module in :mod:`jembench.commands`.

A command module defines ``NAME``, ``HELP``, ``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`jembench.errors.JembenchError`) print one line on stderr and exit 2;
``--debug`` shows the traceback instead.

Everything the CLI prints passes through :class:`jembench.escape.TerminalSafeStream` (a run name or folder name
with terminal escape sequences cannot drive the user's terminal), the error line is made one line
(:func:`jembench.escape.one_line`) whatever the names in it hold, idle OpenMP threads are told to sleep instead of
spin before torch loads (:func:`jembench.threads.passive_openmp`), and SIGXFSZ is ignored so that a write beyond
the file-size limit (``ulimit -f``) fails with EFBIG and a one-line error instead of killing the process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import signal
import sys

from . import commands, progress, threads
from .escape import TerminalSafeStream, one_line
from .errors import JembenchError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter without the noise: no ``(default: None)`` (an option that is simply off),
    nothing for on/off flags (``--no-progress`` is store_false with default True, which argparse would print as
    ``(default: True)`` next to a flag that turns something *off*; ``--x/--no-x`` flags whose default comes
    from a preset) and nothing when the help text already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS or "default" in text
                or isinstance(action, (argparse._StoreConstAction, argparse.BooleanOptionalAction))
                or action.nargs == 0):
            return text
        return super()._get_help_string(action) or text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``jembench train: error: ... (see `jembench train --help`)``, exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _command_modules():
    mods = [importlib.import_module(f"{commands.__name__}.{info.name}")
            for info in pkgutil.iter_modules(commands.__path__) if not info.name.startswith("_")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def _chosen_command(argv: list[str] | None) -> str | None:
    """The subcommand named on the command line (first non-option word), if any."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None, all_commands: bool = False) -> argparse.ArgumentParser:
    """The parser. Only the chosen command's options are built (``all_commands`` builds every one), so
    `jembench leaderboard` never pays for importing torch."""
    parser = _Parser(
        prog="jembench",
        description="Train and benchmark Joint Energy-based Models (JEM, JEM++, SADA-JEM) and their softmax "
                    "baselines with standardized evaluation suites.",
        epilog="Run `jembench COMMAND --help` for the options of a command.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    _add_verbosity(parser, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    chosen = _chosen_command(argv)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=HelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks instead of one-line errors")
        _add_verbosity(p, argparse.SUPPRESS)
        if all_commands or mod.NAME == chosen:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    """``-q`` / ``-v``, accepted before and after the command name (``jembench -q eval ...``, ``jembench eval -q``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1, default=default,
                       help="print warnings and errors only: no progress bars or info lines (logging WARNING)")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=default,
                       help="also print debug lines (logging DEBUG); the default is info lines (logging INFO)")


@contextlib.contextmanager
def _safe_output():
    """stdout / stderr wrapped in :class:`TerminalSafeStream` for the duration of a command, and SIGXFSZ
    ignored (main thread only: signal handlers cannot be set elsewhere)."""
    saved = sys.stdout, sys.stderr
    previous = None
    if hasattr(signal, "SIGXFSZ"):
        with contextlib.suppress(ValueError):  # not in the main thread
            previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    sys.stdout, sys.stderr = (s if isinstance(s, TerminalSafeStream) else TerminalSafeStream(s) for s in saved)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = saved
        if previous is not None:
            signal.signal(signal.SIGXFSZ, previous)


def main(argv: list[str] | None = None) -> int:
    threads.passive_openmp()  # before anything loads torch: idle OpenMP threads sleep instead of spinning
    with _safe_output():
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        debug = getattr(args, "debug", False)
        progress.set_verbosity(getattr(args, "verbosity", 0))
        try:
            return int(args._run(args) or 0)
        except JembenchError as exc:
            if debug:
                raise
            print(f"jembench: error: {one_line(exc)}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("jembench: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # the reader of stdout went away (`jembench compare A B | head`): stop, as cat does
            _silence_stdout()
            return 141  # 128 + SIGPIPE, what a shell reports for a tool the closed pipe stopped


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so the interpreter's final flush of what is still buffered cannot
    raise BrokenPipeError again and print a traceback (Python's documented recipe, "Note on SIGPIPE" in the
    :mod:`signal` docs)."""
    stdout = sys.__stdout__
    if stdout is None:  # no stdout at all (pythonw): nothing to silence
        return
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
