"""The documentation's result tables and paper figures, written from the committed records and the published numbers.

    python tools/docs_tables.py            # rewrite every generated region (make doc-tables)
    python tools/docs_tables.py --check    # rewrite nothing; exit 1 naming each region that is out of date

A page of docs/ (or the README) marks what is generated, a table as a block

    <!-- BEGIN generated: demo-table -->
    (the table)
    <!-- END generated: demo-table -->

and a paper's number inline, named by its row in results/published (paper | table | row | metric [| dataset]):

    <!-- published: jem-grathwohl-2020 | Table 3 | JEM (Ours) | auroc/svhn/log_px -->…<!-- /published -->

whose text becomes ``0.67 (JEM'20 Table 3)``: the number as the paper printed it, then its paper and table; and a
figure of the prose measured by committed records (runs | suite | metric | methods | decimals):

    <!-- records: cifar10-cpu | ood | auroc/svhn10k/log_px | all | 2 -->…<!-- /records -->

whose text becomes ``0.32–0.56``: the range over the five methods' records (one method: its number).

Tables (:data:`TABLES`): ``demo-table`` — the demo's summary of the committed ``results/runs/demo`` records (what
``make results`` writes), one row per method, rendered by :mod:`jembench.summary_table` exactly as ``jembench demo``
prints it; ``cifar10-table`` — the CIFAR-10 reference runs of ``results/runs/cifar10-cpu`` (iterations and training
wall time from each run's ``train/events.jsonl``, accuracy, ECE, the AUROCs on the real OOD sets, FID, evaluation
wall time from the records), cells by the same formatter. Published numbers come from
:func:`jembench.published.load_published` and are cited with :func:`jembench.published.cite`, printed with the
decimals the paper printed.

Why here: ``tools/`` holds what maintains the repository itself and is not shipped in the wheel (the citation checker,
the site's build hooks); what these tables show is drawn by jembench's own code. ``make doc-tables`` runs it, and
``make leaderboards`` (so ``make results``, ``make reference-eval`` and ``make resummarize``) runs that;
``tests/test_docs_tables.py`` fails when a committed page differs from what this writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python tools/docs_tables.py` from a checkout without an installed jembench
    sys.path.insert(0, str(ROOT))

from jembench import atomic, metric_keys, summary_table  # noqa: E402
from jembench.commands.demo import METHODS  # noqa: E402
from jembench.errors import JembenchError  # noqa: E402
from jembench.published import cite, load_published  # noqa: E402
from jembench.records import load_records  # noqa: E402
from jembench.suites import available_suites  # noqa: E402

#: the command that rewrites the regions (named by every failure)
COMMAND = "make doc-tables"
#: a generated block: its markers on lines of their own (a marker quoted in a code span is text)
BLOCK = re.compile(r"^(?P<head><!-- BEGIN generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"^(?P<tail><!-- END generated: (?P=name) -->)$", re.S | re.M)
BEGIN = re.compile(r"^<!-- BEGIN generated:", re.M)
#: an inline published figure (not one quoted in a code span)
INLINE = re.compile(r"(?<!`)(?P<head><!-- published: (?P<key>[^>]*?) -->)(?P<body>.*?)(?P<tail><!-- /published -->)")
#: an inline figure of committed records: one method's number or the range over several
RECORDS = re.compile(r"(?<!`)(?P<head><!-- records: (?P<key>[^>]*?) -->)(?P<body>.*?)(?P<tail><!-- /records -->)")
#: the OOD sets of the cpu protocol shown in the CIFAR-10 table: record key → column text
CIFAR_SETS = {"svhn10k": "SVHN", "tinyimagenet32": "TinyIN32", "celeba6k": "CelebA"}
CIFAR_SCORES = ("log_px", "max_py")
#: the symbol of a method's SGLD steps in its paper (JEM++ writes M)
STEPS_SYMBOL = {"jempp": "M", "sada_jem": "K"}


def pages(root: Path = ROOT) -> list[Path]:
    """The pages that may hold generated regions: the README and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ----------------------------------------------------------------------------------------------- tables
def _suite_records(folder: Path) -> dict[str, dict]:
    """suite → record of the records directly in ``folder`` (one per suite; a second one of a suite is an error)."""
    found: dict[str, dict] = {}
    for ref in load_records([folder]):
        if ref.path.parent != folder:
            continue
        suite = ref.record["suite"]
        if suite in found:
            raise JembenchError(f"{folder} holds two {suite} records; keep one per suite")
        found[suite] = ref.record
    return found


def demo_table(root: Path) -> str:
    """The demo's table from ``results/runs/demo/<method>/`` (``make results``)."""
    rows = []
    for method, label in METHODS.items():
        folder = root / "results" / "runs" / "demo" / method
        if not folder.is_dir():
            raise JembenchError(f"{folder} does not exist; run make results")
        records = _suite_records(folder)
        row: dict = {"Model": label}
        for suite in available_suites():
            if suite in records:
                summary_table.add_record(row, records[suite])
        rows.append(row)
    return summary_table.markdown(rows)


def training_wall_s(events: Path) -> float:
    """Wall seconds of a training run summed over its segments in ``events.jsonl``: each ``start`` / ``resume`` to
    its ``interrupted`` / ``finish``, or — a segment killed without an event — to its last event."""
    total, began, last = 0.0, None, None
    for line in events.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event["event"] in ("start", "resume"):
            if began is not None:
                total += last - began
            began = event["time"]
        elif event["event"] in ("interrupted", "finish") and began is not None:
            total += event["time"] - began
            began = None
        last = event["time"]
    return total


def _iterations(events: Path) -> int:
    finished = [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()
                if json.loads(line)["event"] == "finish"]
    if not finished:
        raise JembenchError(f"{events} has no finish event: the run did not end; finish it (make reference-train)")
    return int(finished[-1]["iteration"])


def cifar10_table(root: Path) -> str:
    """The CIFAR-10 reference runs of ``results/runs/cifar10-cpu/<method>/`` (``make reference-runs``)."""
    auroc = metric_keys.SPECS["auroc"].label
    rows = []
    for method, label in METHODS.items():
        folder = root / "results" / "runs" / "cifar10-cpu" / method
        records = _suite_records(folder)
        config = json.loads((folder / "train" / "config.json").read_text(encoding="utf-8"))
        events = folder / "train" / "events.jsonl"
        if method in STEPS_SYMBOL:
            label = f"{label} ({STEPS_SYMBOL[method]} = {config['sgld_steps']})"
        acc, ood, gen = records["accuracy"], records["ood"]["metrics"], records["generation"]["metrics"]
        scores = records["ood"]["details"]["scores"]
        row = {"Model": label, "iterations": f"{_iterations(events):,}",
               "train wall (min)": f"{training_wall_s(events) / 60:,.0f}",
               f"{metric_keys.SPECS['accuracy'].column} (n = {acc['metrics']['n']:,.0f})": acc["metrics"]["accuracy"],
               metric_keys.SPECS["ece"].column: records["calibration"]["metrics"]["ece"]}
        for score in CIFAR_SCORES:
            header = f"{auroc} {scores[score]} {' / '.join(CIFAR_SETS.values())}"
            row[header] = " / ".join(summary_table.cell(ood[metric_keys.ood("auroc", s, score)]) for s in CIFAR_SETS)
        buffer, fresh = metric_keys.fidelity("fid", "buffer"), metric_keys.fidelity("fid", "fresh")
        row["buffer FID (tiny features)"] = (
            gen[buffer] if buffer in gen else f"– (fresh chains {summary_table.cell(gen[fresh])})")
        row["eval wall, all suites (s)"] = f"{sum(r['wall_time_s'] for r in records.values()):,.0f}"
        rows.append(row)
    return summary_table.markdown(rows)


#: region name → what writes it from the repository root
TABLES: dict[str, Callable[[Path], str]] = {"demo-table": demo_table, "cifar10-table": cifar10_table}


# ----------------------------------------------------------------------------------------------- published
def published_figure(key: str, published=None) -> str:
    """``0.67 (JEM'20 Table 3)`` for ``jem-grathwohl-2020 | Table 3 | JEM (Ours) | auroc/svhn/log_px`` (a fifth
    field names the dataset when the row's number exists for several)."""
    fields = [f.strip() for f in key.split("|")]
    if len(fields) not in (4, 5):
        raise JembenchError(f"published figure {key!r}: write paper | table | row | metric [| dataset]")
    df = load_published() if published is None else published
    hit = df[(df["paper"] == fields[0]) & (df["table"] == fields[1]) & (df["row"] == fields[2])
             & (df["metric"] == fields[3])]
    if len(fields) == 5:
        hit = hit[hit["dataset"] == fields[4]]
    if len(hit) != 1:
        raise JembenchError(f"published figure {key!r} matches {len(hit)} rows of results/published; name one "
                            f"(paper | table | row | metric [| dataset], as in the CSV)")
    row = hit.iloc[0]
    return f"{row['value']:.{int(row['decimals'])}f} ({cite(row['paper'], row['table'])})"


def records_figure(key: str, root: Path) -> str:
    """``0.32–0.56`` for ``cifar10-cpu | ood | auroc/svhn10k/log_px | all | 2``: the metric of the named methods'
    records under ``results/runs/<runs>/<method>/`` (``all``: the five, or a comma list), with that many decimals —
    one number when they agree to them, else the range."""
    fields = [f.strip() for f in key.split("|")]
    if len(fields) != 5 or not fields[4].isdigit():
        raise JembenchError(f"records figure {key!r}: write runs | suite | metric | methods (all or a,b) | decimals")
    runs, suite, metric, methods, decimals = fields[0], fields[1], fields[2], fields[3], int(fields[4])
    names = list(METHODS) if methods == "all" else [m.strip() for m in methods.split(",")]
    values = []
    for method in names:
        record = _suite_records(root / "results" / "runs" / runs / method).get(suite)
        if record is None or metric not in record["metrics"]:
            raise JembenchError(f"records figure {key!r}: results/runs/{runs}/{method} has no {suite} record "
                                f"with {metric}")
        values.append(float(record["metrics"][metric]))
    low, high = f"{min(values):.{decimals}f}", f"{max(values):.{decimals}f}"
    return low if low == high else f"{low}–{high}"


# ----------------------------------------------------------------------------------------------- pages
def rewrite(text: str, root: Path, published=None) -> str:
    """``text`` with every generated region written anew."""
    def block(m: re.Match) -> str:
        name = m["name"]
        if name not in TABLES:
            raise JembenchError(f"unknown generated region {name!r}; known: {', '.join(TABLES)}")
        return f"{m['head']}\n{TABLES[name](root)}\n\n{m['tail']}"

    def inline(m: re.Match) -> str:
        return f"{m['head']}{published_figure(m['key'], published)}{m['tail']}"

    def measured(m: re.Match) -> str:
        return f"{m['head']}{records_figure(m['key'], root)}{m['tail']}"

    starts = len(BEGIN.findall(text))
    if starts != len(BLOCK.findall(text)):
        raise JembenchError("a <!-- BEGIN generated: NAME --> has no matching <!-- END generated: NAME --> line")
    return RECORDS.sub(measured, INLINE.sub(inline, BLOCK.sub(block, text)))


def outdated(root: Path = ROOT) -> list[str]:
    """The pages whose generated regions differ from what :func:`rewrite` writes (paths relative to ``root``)."""
    published = load_published()
    found = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        if rewrite(text, root, published) != text:
            found.append(str(page.relative_to(root)))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/docs_tables.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page is out of date")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout (default: this one)")
    args = p.parse_args(argv)
    try:
        if args.check:
            stale = outdated(args.root)
            for page in stale:
                print(f"{page}: generated tables or figures are out of date; run {COMMAND}", file=sys.stderr)
            return 1 if stale else 0
        published = load_published()
        for page in pages(args.root):
            text = page.read_text(encoding="utf-8")
            new = rewrite(text, args.root, published)
            if new != text:
                atomic.write_text(page, new)
                print(f"wrote {page.relative_to(args.root)}")
    except JembenchError as exc:
        print(f"docs_tables: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
