"""``jembench robustness-plot``: draw the robustness curves of several records (e.g. softmax vs JEM) on one figure."""

from __future__ import annotations

import argparse
import sys

from ..errors import JembenchError
from ..records import load_records

NAME = "robustness-plot"
ORDER = 52
HELP = "draw robustness–distortion curves of several robustness records on one figure (PNG + PDF)"
DESCRIPTION = ("Draw the curves of `jembench eval --suite robustness` records on one figure, written as FIG.png and "
               "FIG.pdf (vector): PGD robust accuracy vs ε for L∞ and L2 (JEM Fig. 5) and accuracy vs distance for "
               "the boundary (L2) and pointwise (L0) attacks (JEM Fig. 10), over the inputs that had a starting "
               "point (the legend counts those without); one line per record and refinement depth K. ε in [0, 1] "
               "pixel units. Records made under different protocols are drawn, with a warning.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..figures import PANELS  # imported when the command is chosen: it pulls in numpy

    p.add_argument("records", nargs="+", metavar="RECORD", help="robustness record files (or folders of them)")
    p.add_argument("-o", "--out", required=True, metavar="FIG.png",
                   help="figure to write (PNG; its vector copy FIG.pdf is written beside it)")
    p.add_argument("--kind", action="append", choices=list(PANELS), default=None,
                   help="panel to draw, repeatable (default: every kind the records hold)")
    p.add_argument("--labels", nargs="+", default=None, help="legend label per record (default: model names)")


def protocol_warning(records: list[dict]) -> str | None:
    """One line when the records were made under different protocols (their curves are then not comparable)."""
    from ..figures import short

    seen = list(dict.fromkeys(f"{short(r['protocol'].get('name', '?'), 32)}@{short(r['protocol'].get('hash'))[:8]}"
                              for r in records))
    if len(seen) < 2:
        return None
    return (f"jembench: warning: the records use {len(seen)} different protocols ({', '.join(seen)}); "
            f"their curves are not comparable point for point")


def run(args) -> int:
    from ..figures import check_robustness_records, robustness_figure

    if not args.out.lower().endswith((".png", ".pdf")):
        raise JembenchError(f"-o {args.out} must end in .png (the .pdf is written beside it), e.g. robustness.png")
    records = [ref.record for ref in load_records(args.records)]
    if args.labels is not None and len(args.labels) != len(records):
        raise JembenchError(f"--labels has {len(args.labels)} labels for {len(records)} records; give one per record")
    check_robustness_records(records)
    warning = protocol_warning(records)
    if warning:
        print(warning, file=sys.stderr)
    path = robustness_figure(records, args.out, kinds=args.kind, labels=args.labels)
    print(f"figure: {path} (+ {path.with_suffix('.pdf').name})")
    return 0
