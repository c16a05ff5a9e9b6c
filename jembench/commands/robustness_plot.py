"""``jembench robustness-plot``: draw the robustness curves of several records (e.g. softmax vs JEM) on one figure."""

from __future__ import annotations

import argparse

from ..errors import JembenchError
from ..records import load_records

NAME = "robustness-plot"
ORDER = 52
HELP = "draw robustness–distortion curves of several robustness records on one figure"
DESCRIPTION = ("Draw the curves of `jembench eval --suite robustness` records on one PNG: PGD robust accuracy vs "
               "ε for L∞ and L2 (JEM Fig. 5) and accuracy vs distance for the boundary (L2) and pointwise (L0) "
               "attacks (JEM Fig. 10); one line per record and refinement depth K. ε in [0, 1] pixel units.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..suites.robustness import _PANELS  # imported when the command is chosen: it pulls in torch

    p.add_argument("records", nargs="+", metavar="RECORD", help="robustness record files (or folders of them)")
    p.add_argument("-o", "--out", required=True, metavar="FIG.png", help="figure to write (PNG)")
    p.add_argument("--kind", action="append", choices=list(_PANELS), default=None,
                   help="panel to draw, repeatable (default: every kind the records hold)")
    p.add_argument("--labels", nargs="+", default=None, help="legend label per record (default: model names)")


def run(args) -> int:
    from ..suites.robustness import plot_records

    records = [ref.record for ref in load_records(args.records)]
    if args.labels is not None and len(args.labels) != len(records):
        raise JembenchError(f"--labels has {len(args.labels)} labels for {len(records)} records; give one per record")
    path = plot_records(records, args.out, kinds=args.kind, labels=args.labels)
    print(f"figure: {path}")
    return 0
