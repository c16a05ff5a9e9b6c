"""Arguments that several commands share, so their names and help texts agree everywhere."""

from __future__ import annotations

import argparse


def add_device_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")


def add_seed_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed for torch, numpy and python RNGs")


def add_progress_argument(p: argparse.ArgumentParser, help: str) -> None:
    """``--no-progress`` → ``args.progress = False`` (default True: bars when stderr is a terminal)."""
    p.add_argument("--no-progress", dest="progress", action="store_false", help=help)
