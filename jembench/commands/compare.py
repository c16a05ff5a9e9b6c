"""``jembench compare A B``: two evaluations metric by metric, each difference with its confidence interval and
the p-value of the right test (paired when the records saw the same inputs)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

from tabulate import tabulate

from .. import escape, metric_keys
from ..comparison import CompareResult, as_dicts, compare
from ..stats.bootstrap import RESAMPLES

NAME = "compare"
ORDER = 52
HELP = "compare two records (or folders of records) metric by metric with paired tests"
FORMATS = ("table", "md", "csv", "json")
DESCRIPTION = ("Print, for every metric two records share, A, B, the difference B - A with its confidence "
               "interval and the p-value of a test: when both records carry per-input evidence of the same inputs "
               "(the same clean images in the same order; input noise may differ), a paired test — McNemar's exact "
               "test for accuracies, DeLong's test for AUROCs, a paired bootstrap for ECE, MCE, NLL, Brier, AUPR and "
               "FPR@95 — else the unpaired test, marked '(unpaired)'. Holm-adjusted p-values cover every tested "
               "metric. Folders are matched record by record (same suite and dataset). Exit 0; 2 on unusable input.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a record file or a folder of records (the reference)")
    p.add_argument("b", metavar="B", help="a record file or a folder of records (compared with A: B - A)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--resamples", type=int, default=RESAMPLES,
                   help="bootstrap resamples (ECE, MCE, NLL, Brier, AUPR, FPR@95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")


def _num(value: float, metric: str) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    spec = metric_keys.spec(metric)
    decimals = 2 if spec is not None and spec.percent else 4  # differences of fractions need more digits
    return f"{value:.{decimals}f}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return "1" if value >= 0.9995 else ("<1e-6" if value < 1e-6 else f"{value:.3g}")


def _rows(result: CompareResult, fmt) -> list[list[str]]:
    rows = []
    for r in result.rows:
        d = r.result
        ci = f"[{_num(d.ci[0], r.metric)}, {_num(d.ci[1], r.metric)}]" if d else "–"
        test = d.test if d else "none"
        sign = "+" if math.isfinite(r.diff) and r.diff >= 0 else ""
        rows.append([fmt(r.metric), _num(r.a, r.metric), _num(r.b, r.metric), f"{sign}{_num(r.diff, r.metric)}", ci,
                     _p(d.p if d else None), _p(r.p_holm), fmt(test),
                     fmt(r.pairing)])
    return rows


def render(result: CompareResult, fmt: str = "table") -> str:
    """The comparison as a terminal table, Markdown, CSV or JSON (untrusted names escaped for each)."""
    if fmt == "json":
        return json.dumps({"a": result.names[0], "b": result.names[1], "rows": as_dicts(result),
                           "notes": result.notes}, indent=2, allow_nan=True)
    if fmt == "csv":
        buffer = io.StringIO()
        rows = as_dicts(result)
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: escape.csv_cell(v) for k, v in row.items()})
        return buffer.getvalue()
    fmt_text = escape.markdown if fmt == "md" else escape.one_line
    headers = ["metric", "A", "B", "B − A", f"{round(100 * _confidence(result))} % CI", "p", "p (Holm)", "test",
               "inputs"]
    lines = [f"A = {fmt_text(result.names[0])}; B = {fmt_text(result.names[1])}"]
    by_pair: dict[tuple[str, str], list] = {}
    for compared, cells in zip(result.rows, _rows(result, fmt_text)):
        by_pair.setdefault((compared.record_a, compared.record_b), []).append(cells)
    for (ra, rb), cells in by_pair.items():
        lines.append(f"\n{fmt_text(ra)} → {fmt_text(rb)}" + ("\n" if fmt == "md" else ""))  # md: a table block
        lines.append(tabulate(cells, headers=headers, tablefmt="github" if fmt == "md" else "simple",
                              disable_numparse=True))
    lines += [f"note: {fmt_text(n)}" for n in result.notes]
    return "\n".join(lines)


def _confidence(result: CompareResult) -> float:
    return next((r.result.confidence for r in result.rows if r.result is not None), 0.95)


def run(args) -> int:
    result = compare(args.a, args.b, resamples=args.resamples, seed=args.seed, confidence=args.confidence)
    print(render(result, args.format))
    return 0
