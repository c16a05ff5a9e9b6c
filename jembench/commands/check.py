"""``jembench check``: CI regression check of records against published numbers or a baseline folder."""

from __future__ import annotations

import argparse

from ..check import compare_baseline, compare_published, exit_code, format_table, load_rules
from ..errors import JembenchError
from ..published import load_published
from ..recipe import stale_lines
from ..records import load_records
from ..resources import tolerance_files
from ..suites.robustness import sanity

NAME = "check"
ORDER = 55
HELP = ("regression check: records vs published numbers or a baseline (exit 0 ok, 1 regression, 2 bad input, "
        "4 baseline unusable or stale)")
DESCRIPTION = ("Compare every metric of the given records with its reference — the published number of the same "
               "method, dataset and metric measured under the protocol that number needs (default; results/published's "
               "protocol column: same name and the shipped file's hash), or the baseline record of the same model, "
               "suite, dataset and protocol hash (--baseline DIR) — using per-metric directions and tolerance rules "
               "(defaults in suites/check-tolerances.toml, shipped with jembench; override with --tolerances FILE, or "
               "name a shipped file: --tolerances check-tolerances-tiny). Accuracies and robust accuracies may differ "
               "by z times the combined binomial (Wilson) standard error of the two numbers at their n, AUROCs by z "
               "times the combined Hanley–McNeil error (binomial over the in-distribution inputs when every OOD input "
               "is the same image or every OOD score ties), each at least a floor; other metrics by a fixed max(abs, "
               "rel × |reference|). Two CI patterns. A fixed checkpoint re-evaluated: a baseline of one record with "
               "per-input evidence, where the paired rule decides — a regression is a drop that is significant "
               "(one-sided McNemar / DeLong / paired bootstrap p, Holm-adjusted, at most --alpha) and larger than the "
               "metric's margin (--paired demands it). A model retrained in the job: a baseline of k runs with "
               "different seeds (e.g. results/runs/demo-seeds/jem, `make baseline-seeds`), where the allowed drop from "
               "their mean is the prediction bound of one new run, t(k-1) x s x sqrt(1 + 1/k) from their spread s, or "
               "the sampling rule's if larger; each row says which set it. Prints the failing rows (--all: every row) "
               "with the rule used, then a one-line summary. Exit status: 0 when every metric holds; 1 on a regression "
               "beyond tolerance; 2 on unusable input (malformed record or tolerance file, nothing to compare); 4 when "
               "the baseline cannot judge the records — measured under another protocol, no baseline record for a "
               "model / suite / dataset, per-input evidence missing for --paired, or stale: trained by the same "
               "deterministic recipe (settings, seed, torch, CPU, threads) into other weights (a regression found "
               "anyway is exit 1). Other commands' codes: 3 = `train` stopped at a divergence.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("records", nargs="+", metavar="RECORDS", help="record files or folders of records")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="compare against the records in DIR instead of the published numbers")
    p.add_argument("--published-model", default=None, metavar="NAME",
                   help="the published row to compare against, e.g. 'SADA-JEM (K=5)' (needed when a method has "
                        "several published numbers for a metric)")
    p.add_argument("--published", default=None, metavar="DIR",
                   help="folder of published-number CSVs (default: the ones shipped with jembench)")
    p.add_argument("--tolerances", default=None, metavar="FILE|NAME",
                   help="TOML file whose [metrics.\"PATTERN\"] entries (direction, rule, abs, rel, z, floor, margin) "
                        "override the default tolerances, or the name of a file shipped with jembench (no folder, "
                        f"no .toml; works from any folder and from the wheel): {', '.join(tolerance_files())}. "
                        "check-tolerances-tiny leaves unchecked the metrics without a derived error, whose sampling "
                        "error at the tiny protocols' n exceeds the default fixed tolerances. A path is used when "
                        "it exists")
    p.add_argument("--all", dest="show_all", action="store_true",
                   help="print every compared metric, not only the regressions")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --baseline: skip records that have no baseline counterpart instead of failing")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="with --baseline: significance level of the paired rule (one-sided, Holm-adjusted over "
                        "the metrics it decides)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--paired", action="store_true",
                     help="with --baseline: the fixed-checkpoint pattern — every metric with a paired test must be "
                          "decided by it; a baseline that cannot pair (no per-input evidence, other inputs) is exit 4")
    how.add_argument("--unpaired", action="store_true",
                     help="with --baseline: never use the paired rule (e.g. against a retrained model's baseline, "
                          "whose differences include training variance)")


def run(args) -> int:
    if args.baseline and args.published_model:
        raise JembenchError("--published-model applies to published numbers; drop it when using --baseline")
    rules = load_rules(args.tolerances)
    refs = load_records(args.records)
    if not refs:
        raise JembenchError(f"no records found in {', '.join(args.records)}; pass files written by `jembench eval`")
    stale: list[str] = []
    if args.baseline:
        baseline = load_records([args.baseline])
        if not baseline:
            raise JembenchError(f"no records found in baseline {args.baseline}; pass a folder of records")
        if not 0 < args.alpha < 1:
            raise JembenchError(f"--alpha {args.alpha} must be between 0 and 1 (e.g. 0.05)")
        comparisons, notes = compare_baseline(refs, baseline, rules, allow_missing=args.allow_missing,
                                              alpha=args.alpha, paired=not args.unpaired,
                                              require_paired=args.paired)
        stale = stale_lines(refs, baseline)
        against = f"baseline {args.baseline}"
    else:
        if args.paired or args.unpaired:
            raise JembenchError("--paired / --unpaired apply to --baseline checks; drop them or pass --baseline DIR")
        comparisons, skipped = compare_published(refs, load_published(args.published), rules, args.published_model)
        notes = [f"no published counterpart: {', '.join(skipped)}"] if skipped else []
        against = "published numbers"
    if not comparisons:
        raise JembenchError(f"no metric of the {len(refs)} record(s) has a reference in the {against} "
                            f"({'; '.join(notes) or 'nothing matched'}); check the records' method/dataset, pass "
                            f"--published-model NAME, or use --baseline DIR")
    table = format_table(comparisons, show_all=args.show_all)
    if table:
        print(table)
    for note in notes:
        print(f"note: {note}")
    for ref in refs:  # the checked numbers' own caveats: a robust accuracy that passes may still be an upper bound
        failed = sanity.caveats(ref.record)
        if failed:
            where = sanity.listing(failed)
            print(f"note: {sanity.MARK} {ref.path}: attack sanity checks failed ({where}); its robust accuracies "
                  f"are upper bounds the attack may not have reached")
    for line in stale:
        print(f"stale: {line}")
    code = exit_code(comparisons)
    n_bad = sum(c.regression for c in comparisons)
    n_better = sum(c.status == "better" for c in comparisons)
    n_paired = sum(c.paired is not None for c in comparisons)
    if n_paired:
        against += f" ({n_paired} decided by the paired rule)"
    by = {k: sum(c.decided_by == k for c in comparisons) for k in ("seeds", "sampling", "both")}
    if any(by.values()):
        both = f", both added for {by['both']}" if by["both"] else ""
        against += (f" (baseline of several runs: tolerance set by the between-seed spread for {by['seeds']}, by the "
                    f"metric's own rule for {by['sampling']}{both})")
    verdict = "FAIL" if code else "pass"
    if not code and stale:
        code, verdict = 4, "STALE BASELINE (regenerate it)"
    print(f"check: {len(comparisons)} metric(s) compared against {against}: {n_bad} regression(s), "
          f"{n_better} better beyond tolerance -> {verdict}")
    return code
