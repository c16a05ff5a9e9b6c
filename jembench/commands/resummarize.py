"""``jembench resummarize``: bring robustness records' derived numbers up to date from their own details."""

from __future__ import annotations

import argparse

from .. import atomic
from ..records import load_records

NAME = "resummarize"
ORDER = 54
HELP = "recompute robustness records' medians, errors and sanity checks from their per-input details (no re-run)"
DESCRIPTION = ("Recompute what a robustness record derives from its per-input details — the decision-based "
               "attacks' median distances over the inputs they attacked (records written before these counted every "
               "input: 0 when misclassified, inf when never attacked; their old keys boundary/median_l2/k<K> and "
               "pointwise/median_l0/k<K> become boundary/attacked_median_l2/k<K> and "
               "pointwise/attacked_median_l0/k<K>), the accuracies' standard errors and the attack sanity checks "
               "(details.sanity) — and rewrite the record in place (atomically). Nothing is re-run and no measured "
               "number changes; records of other suites are left as they are.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="+", metavar="RECORD", help="record files (or folders of them, searched "
                                                                "recursively)")


def run(args: argparse.Namespace) -> int:
    from ..suites.robustness.summary import resummarize

    refs = load_records(args.records)
    changed = 0
    for ref in refs:
        if resummarize(ref.record):
            atomic.write_json(ref.path, ref.record)
            print(f"resummarized: {ref.path}")
            changed += 1
    robustness = sum(ref.record["suite"] == "robustness" for ref in refs)
    print(f"{changed} of {robustness} robustness record(s) changed ({len(refs)} record(s) read)")
    return 0
