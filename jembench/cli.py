"""The ``jembench`` command: one subcommand per module in :mod:`jembench.commands`.

A command module defines ``NAME``, ``HELP``, ``ORDER`` (position in ``--help``), ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`jembench.errors.JembenchError`) print one line on stderr and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import JembenchError


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    chosen = _chosen_command(argv)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks instead of one-line errors")
        if all_commands or mod.NAME == chosen:
            mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        return int(args._run(args) or 0)
    except JembenchError as exc:
        if debug:
            raise
        print(f"jembench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("jembench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
