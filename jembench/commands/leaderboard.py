"""``jembench leaderboard``: the papers' tables with our records beside the published numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import atomic, progress
from ..errors import JembenchError
from ..leaderboard import TABLES, build_all
from ..render import FORMATS, render
from ..published import PAPERS, load_published
from ..records import RecordRef, load_records
from ..resources import runs_dir

NAME = "leaderboard"
ORDER = 50
HELP = "render paper-shaped leaderboards: published numbers and our records side by side"
DESCRIPTION = ("Build the papers' tables (hybrid: Model | Acc % | IS | FID, OOD: score x OOD set, calibration, "
               "robustness, ablation) from the published numbers (results/published/*.csv, shipped with jembench) "
               "and our JSON records, "
               "and render them as Markdown, LaTeX, CSV or HTML. Our rows are marked '(ours)' and carry the "
               "protocol they were measured under; records are averaged only when their protocol hashes match. Each "
               "published row names the protocol its numbers need, and our numbers sit beside it only when their "
               "record was measured under that protocol (name and the shipped file's hash); the rest get sections "
               "of their own, titled with their protocol.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="*", metavar="RECORDS",
                   help="record files or folders of records (searched recursively); default: runs/ in the working "
                        "folder (where `jembench eval` and `jembench demo` write by default), else results/runs of "
                        "the jembench source checkout when run from one; one line on stderr says which")
    p.add_argument("--table", choices=("all",) + TABLES, default="all", help="which paper table to reproduce")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format")
    p.add_argument("--dataset", default=None, help="only this dataset (cifar10, cifar100, svhn, digits, ...)")
    p.add_argument("--paper", choices=sorted(PAPERS), default=None, help="only the tables of this paper")
    p.add_argument("--published", default=None, metavar="DIR",
                   help="folder of published-number CSVs (default: the ones shipped with jembench)")
    p.add_argument("--no-published", action="store_true", help="our records only")
    p.add_argument("--no-records", action="store_true", help="published numbers only")
    p.add_argument("--out", default=None, metavar="FILE", help="write to FILE (atomically) instead of stdout")


#: where ``jembench eval`` (``<checkpoint folder>/eval/``, ``runs/<name>/eval/``), ``jembench train`` and
#: ``jembench demo`` write by default, relative to the working folder
EVAL_RUNS = Path("runs")


def default_records() -> list[RecordRef]:
    """The records used when none is named: those under ``runs/`` of the working folder when it exists, else
    under the source checkout's ``results/runs`` (the committed records); one line on stderr says where it
    looked."""
    checkout = runs_dir()
    for folder in [EVAL_RUNS] + ([checkout] if checkout is not None else []):
        if folder.is_dir():
            refs = load_records([folder])
            progress.info(f"leaderboard: {len(refs)} record(s) from {folder}/ (no RECORDS given; pass files or "
                          f"folders to choose)")
            return refs
    progress.info(f"leaderboard: no records given and no {EVAL_RUNS}/ folder here (where `jembench eval` writes by "
                  f"default): published numbers only; pass record files or folders to add yours")
    return []


def run(args) -> int:
    if args.no_published and args.no_records:
        raise JembenchError("--no-published and --no-records together leave nothing to show; drop one of them")
    if args.no_records:
        refs = []
    elif args.records:
        refs = load_records(args.records)
    else:
        refs = default_records()
    published = None if args.no_published else load_published(args.published)
    kinds = TABLES if args.table == "all" else (args.table,)
    sections = build_all(kinds, published, refs, dataset=args.dataset, paper=args.paper)
    text = render(sections, args.format)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise JembenchError(f"--out {out} is a folder; pass a file name such as {out / 'leaderboard.md'}")
        atomic.write_text(out, text)
        print(f"leaderboard: {out}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return 0
