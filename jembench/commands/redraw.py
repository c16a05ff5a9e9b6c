"""``jembench redraw``: draw records' figures again from their details (restyle or relabel without re-running)."""

from __future__ import annotations

import argparse

from ..records import load_records

NAME = "redraw"
ORDER = 53
HELP = "draw the figures of records again from their details, beside each record (nothing is re-run)"
DESCRIPTION = ("Draw the figures each record lists again, from what the record holds, into the record's folder "
               "(PNG + PDF, replacing the old files atomically): reliability diagrams from calibration records, "
               "robustness curves from robustness records, OOD histograms from OOD records that store them. The "
               "numbers stay as they are; use it after a jembench upgrade changed how figures look. Sample grids "
               "need the images and OOD records written before the histograms were stored need the scores: "
               "those are left as they are (re-run `jembench eval` to draw them).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files (or folders of them, searched "
                                                                "recursively)")


def run(args) -> int:
    from ..figures import redraw

    refs = load_records(args.records)
    drawn = 0
    for ref in refs:
        for name in redraw(ref.record, ref.path.parent):
            print(f"figure: {ref.path.parent / name} (+ .pdf)")
            drawn += 1
    print(f"redrew {drawn} figure(s) of {len(refs)} record(s)")
    return 0
