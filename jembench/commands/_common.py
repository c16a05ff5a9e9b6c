"""Arguments that several commands share, so their names and help texts agree everywhere."""

from __future__ import annotations

import argparse


def add_progress_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--no-progress`` → ``args.progress = False`` (default True: bars when stderr is a terminal)."""
    p.add_argument("--no-progress", dest="progress", action="store_false", help=help)
