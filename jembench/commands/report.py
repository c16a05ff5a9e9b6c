"""``jembench report``: one self-contained HTML page with a run's leaderboard tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import atomic
from ..errors import JembenchError
from ..published import load_published
from ..report import build_report

NAME = "report"
ORDER = 60
HELP = "write a self-contained HTML report (leaderboard tables + embedded figures) of a run folder"
DESCRIPTION = ("Collect every record under RUN_DIR, render the leaderboard tables that contain them (next to the "
               "published numbers of the same dataset) and embed the PNG figures each record lists (reliability "
               "diagrams, OOD histograms, robustness curves, sample grids) as base64, so the page opens offline.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder with records (searched recursively)")
    p.add_argument("-o", "--out", default="report.html", metavar="FILE", help="HTML file to write (atomically)")
    p.add_argument("--title", default=None, help="page title (default: jembench report — RUN_DIR)")
    p.add_argument("--published", default=None, metavar="DIR",
                   help="folder of published-number CSVs (default: the ones shipped with jembench)")
    p.add_argument("--no-published", action="store_true", help="leave the published rows out of the tables")


def run(args) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise JembenchError(f"-o {out} is a folder; pass a file name such as {out / 'report.html'}")
    published = None if args.no_published else load_published(args.published)
    page = build_report(args.run_dir, published=published, title=args.title)
    atomic.write_text(out, page)
    print(f"report: {out} ({len(page) / 1024:.0f} KiB)")
    return 0
