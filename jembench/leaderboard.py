"""Leaderboards: published numbers and our records side by side, in the shape of the papers' tables.

Data flow: published CSV rows (:mod:`jembench.published`) and JSON records → pandas (pivot to one row per model,
one column per table column) → :class:`Section` objects → tabulate (``md``, ``latex``, ``csv``, ``html``).

Rules that make the numbers honest:

* one section per published table (paper, table, dataset), rows in the paper's order, the paper's column
  headers, arrows and footnote symbols; each published row's source names the protocol its numbers need
  (``results/published``'s ``protocol`` column);
* our numbers appear beside a published table's only when the record was measured under the protocol that
  column's published numbers need — same protocol name and the hash of the packaged protocol file
  (:func:`jembench.published.measured_under`); our rows are marked ``(ours)`` with the protocol name and hash.
  Numbers that match no published table go into sections of their own whose titles name their protocols;
* our records are averaged only when model, dataset, suite **and protocol hash** agree. When a model has
  records of one suite under several protocols, every (suite, protocol) group is its own row and a note under
  the table says so — numbers from different protocols are never silently mixed;
* our rows whose model's training recovered from divergence (rolled back and retried where the official code
  stops: the records' ``model.training``, :mod:`jembench.training_block`) carry the ``recovered`` flag;
* best value per column (per score block for OOD) in bold, second best underlined (LaTeX/HTML), following the
  direction of the column (↑ higher is better, ↓ lower is better) — and only where the difference to the next
  value is significant (:func:`jembench.leaderboard_significance.settle_emphasis`): a tie is never emphasized;
* our numbers carry their sampling error (``± s.e.`` at z = 1, derived from the record's sizes by
  :mod:`jembench.sampling_error`) and the source column names the sizes (``n = 360``);
* robustness rows whose numbers fail an attack sanity check (:mod:`jembench.suites.robustness.sanity`: robust
  accuracy above clean, rising with ε, not ~0 at a large ε, beaten by the gradient-free attacks) are marked ``⚠``
  and each failure is spelled out under the table.

Labels, arrows, directions and decimals of metrics come from the metric table (:data:`jembench.metric_keys.SPECS`);
the dataset's and OOD sets' labels from the records (:func:`jembench.records.dataset_label`, ``set_label``).
This module builds sections; :mod:`jembench.render` draws them (it imports nothing from here at run time).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from . import catalog, metric_keys, training_block
from .errors import JembenchError
from .metric_keys import NORM_LABELS
from .metrics.ood_scores import SCORES
from .published import FLAGS, PAPERS, cite, flag_list, measured_under, needs_label
from .leaderboard_significance import mark_indistinguishable, settle_emphasis
from .records import Record, RecordRef, dataset_label, model_labels, set_label
from .sampling_error import sizes, standard_error
from .sections import Cell, Column, Row, Section
from .suites.robustness import sanity

TABLES = ("hybrid", "ood", "calibration", "robustness", "ablation")

TITLES = {"hybrid": "Hybrid modelling", "ood": "OOD detection (AUROC)", "calibration": "Calibration",
          "robustness": "Adversarial robustness", "ablation": "Ablation"}
# dataset / OOD-set labels and order: jembench.catalog; score labels: jembench.metrics.ood_scores; norm labels and
# metric keys: jembench.metric_keys
VERSUS_LABELS = {"jem": "JEM", "adv_training": "adversarial training"}
#: which suites feed which table (a calibration record's accuracy is not a hybrid-table accuracy).
SUITES = {"hybrid": ("accuracy", "generation"), "ablation": ("accuracy", "generation"),
          "calibration": ("calibration",), "ood": ("ood",), "robustness": ("robustness",)}
#: preferred sample source for IS/FID cells; others are marked with "°".
SOURCE_ORDER = ("buffer", "ensemble", "conditional", "fresh")
OTHER_SOURCE = "°"


# ----------------------------------------------------------------------------------------------- records
def records_frame(refs: list[RecordRef]) -> pd.DataFrame:
    """Long table of our numbers: one row per (record, metric) with model, suite and protocol columns, and the
    labels the record stores: its dataset's (``dataset_label``) and, for an OOD metric, its set's (``set_label``)."""
    rows = []
    labels = model_labels(refs)  # different weights under one name: separate rows (name@sha8), never averaged
    for ref in refs:
        r = ref.record
        model = r["model"]
        proto = r["protocol"]
        label = dataset_label(r)
        sized = _sizes_text(r)
        for metric, value in r["metrics"].items():
            key = metric_keys.parse(metric)
            ood_set = key.ood_set if key is not None and key.ood_set is not None else None
            se = standard_error(r, metric, float(value))
            rows.append({"model": labels[ref.path], "method": model.get("method", ""), "dataset": r["dataset"],
                         "dataset_label": label, "suite": r["suite"], "protocol": proto.get("name", r["suite"]),
                         "hash": proto["hash"], "metric": metric, "value": float(value), "path": str(ref.path),
                         "set_label": set_label(r, ood_set) if ood_set is not None else "",
                         "recovered": training_block.recovered(model),
                         "se": math.nan if se is None else se, "sizes": sized})
    cols = ["model", "method", "dataset", "dataset_label", "suite", "protocol", "hash", "metric", "value", "path",
            "set_label", "recovered", "se", "sizes"]
    return pd.DataFrame(rows, columns=cols)


def _span(values: set[int]) -> str:
    return f"{min(values)}" if len(values) == 1 else f"{min(values)}–{max(values)}"


def _sizes_text(record: Record) -> str:
    """The sample sizes a record's standard errors rest on, for people: ``n = 360`` (accuracies), ``n_in = 360,
    n_out = 120–360`` (AUROCs: the in-distribution set and the OOD sets); "" when no metric has a derived error."""
    found = [s for m in record["metrics"] if (s := sizes(record, m)) is not None]
    parts = []
    if ns := {s[0] for s in found if len(s) == 1}:
        parts.append(f"n = {_span(ns)}")
    if pairs := [s for s in found if len(s) == 2]:
        parts.append(f"n_in = {_span({s[0] for s in pairs})}, n_out = {_span({s[1] for s in pairs})}")
    return ", ".join(parts)


def _dataset_labels(recs: pd.DataFrame) -> dict[str, str]:
    """dataset name → the label its records store (several different ones joined with " / ")."""
    return {ds: " / ".join(sorted(set(g))) for ds, g in recs.groupby("dataset")["dataset_label"]}


@dataclass(frozen=True)
class _Place:
    section: str  # extra section key (robustness norm / crossover), "" otherwise
    block: str
    suffix: str  # appended to the model label (robustness K)
    column: str


def _place(kind: str, metric: str) -> list[_Place]:
    """Where a metric goes in a table of ``kind`` (nothing if it is not part of that table)."""
    key = metric_keys.parse(metric)
    if key is None:
        return []
    if kind in ("hybrid", "ablation"):
        if metric == "accuracy":
            return [_Place("", "", "", "accuracy")]
        wanted = ("is", "fid") if kind == "hybrid" else ("fid",)
        if key.family == "fidelity" and key.metric in wanted:
            return [_Place("", "", "", key.metric)]
        return []
    if kind == "calibration":
        return [_Place("", "", "", metric)] if metric in ("accuracy", "ece") else []
    if kind == "ood":
        if key.family == "ood" and key.metric == "auroc" and key.score and key.ood_set:
            return [_Place("", key.score, "", key.ood_set)]
        return []
    if kind == "robustness":
        if key.family == "robust_acc" and key.norm:
            return [_Place(key.norm, "", f"K={key.k}", f"eps={key.eps}")]
        if key.family == "clean_acc":
            return [_Place(norm, "", f"K={key.k}", "clean") for norm in metric_keys.NORMS]
        if key.family == "crossover" and key.norm and key.versus:
            return [_Place("crossover", "", f"vs {VERSUS_LABELS.get(key.versus, key.versus)}", key.norm)]
    return []


def _column(kind: str, key: str, printed: str | None = None) -> Column:
    """A table column: label and direction from the metric table (:data:`jembench.metric_keys.SPECS`), an OOD
    set's label, or a robustness ε / crossover column; ``printed``: the paper's own header."""
    spec = metric_keys.SPECS
    if kind in ("hybrid", "ablation", "calibration"):
        label, direction = spec[key].column, spec[key].direction
    elif kind == "ood":
        label, direction = catalog.label(key), spec["auroc"].direction
    elif key in NORM_LABELS:  # crossover table
        unit = "(/255)" if key == "linf" else "(0–255 scale)"
        label, direction = f"{NORM_LABELS[key]} {spec['crossover_eps255'].label} {unit}", "none"
    elif key == "clean":
        label, direction = spec["clean_acc"].column, spec["clean_acc"].direction
    else:  # eps=<ε>: L2 grids are short decimals (0.5), which the formatter keeps as they are in either norm
        label, direction = f"ε={metric_keys.eps_label(float(key[4:]))} {spec['robust_acc'].arrow}", "higher"
    return Column(key, printed or label, direction)


def _block_order(kind: str, block: str) -> int:
    order = list(SCORES) if kind == "ood" else []
    return order.index(block) if block in order else len(order)


def _column_order(kind: str, key: str) -> tuple[int, float, str]:
    """Sort key of a table column: the paper's OOD-set order, robustness ε ascending, the metric table's order."""
    if kind == "ood":
        order = catalog.PAPER_OOD_SETS
        return (order.index(key) if key in order else len(order), 0.0, key)
    if kind == "robustness":
        if key == "clean":
            return (0, 0.0, key)
        try:
            return (1, float(key[4:]), key)
        except ValueError:
            return (2, 0.0, key)
    canonical = list(metric_keys.SPECS)  # the metric table's order: accuracy, ece, ..., is, fid
    return (canonical.index(key) if key in canonical else len(canonical), 0.0, key)


def _published_sections(kind: str, pub: pd.DataFrame) -> list[tuple[Section, str]]:
    """One section per (paper, table, dataset[, robustness norm]) from the published rows, in file order."""
    out: list[tuple[Section, str]] = []
    sub = pub[pub["leaderboard"] == kind].sort_values("order")
    if sub.empty:
        return out
    placed = []
    for rec in sub.itertuples(index=False):
        for pl in _place(kind, rec.metric):
            placed.append({**rec._asdict(), "psection": pl.section, "pblock": pl.block, "psuffix": pl.suffix,
                           "pcolumn": pl.column})
    df = pd.DataFrame(placed)
    # numbers quoted in running text (column "text") of one paper form one section, not one per paragraph
    df["ptable"] = df["table"].where(df["column"] != "text", "text")
    for (paper, ptable, dataset, psection), g in df.groupby(["paper", "ptable", "dataset", "psection"], sort=False):
        table = ptable if ptable != "text" else "text (" + ", ".join(dict.fromkeys(g["table"])) + ")"
        # a wide view: one row per (block, printed row), one column per table column
        wide = g.pivot_table(index=["pblock", "row"], columns="pcolumn", values="order", aggfunc="first",
                             sort=False)
        wide = wide.loc[wide.min(axis=1).sort_values(kind="stable").index]  # the paper's row order
        keys = list(wide.columns) + (["ece"] if kind == "calibration" and "ece" not in wide.columns else [])
        keys = sorted(keys, key=lambda k: _column_order(kind, k))
        printed = {c: (g.loc[g["pcolumn"] == c, "column"].tolist() or ["text"])[0] for c in keys}
        columns = [_column(kind, c, None if printed[c] == "text" else printed[c]) for c in keys]
        if kind == "robustness":
            columns = [_column(kind, c.key) for c in columns]
        rows = []
        for (block, printed), orders in wide.iterrows():
            cells_src = g[g["order"].isin([int(o) for o in orders.dropna()])]
            first = cells_src.iloc[0]
            flags: list[str] = []
            cells = {}
            needs: dict[str, list[str]] = {}  # protocol label -> printed columns that need it
            for c in cells_src.itertuples(index=False):
                for f in flag_list(c.flags) + ([c.provenance] if c.provenance != "reproduced" else []):
                    if f not in flags:
                        flags.append(f)
                mark = _source_mark(c.metric)
                cells[c.pcolumn] = Cell(c.value, int(c.decimals), c.metric, mark, needs=c.protocol)
                needs.setdefault(needs_label(c.protocol, c.note, c.provenance, c.produced_by), []).append(c.column)
            model = first["model"] + _suffix(first["psuffix"])
            rows.append(Row(block=_block_name(kind, block, first["group"]), model=model, ours=False,
                            source=f"{cite(paper, first['table'])} · {_needs_text(needs)}", flags=flags,
                            cells=cells))
        block_label = {"ood": "Score"}.get(kind)
        if kind in ("hybrid", "ablation") and (g["group"] != "").any():
            block_label = "Group"
        title = f"{TITLES[kind]} — {PAPERS.get(paper, paper)}, {table} · {catalog.label(dataset)}"
        if kind == "robustness" and psection == "crossover":
            title += " · ε above which the model is more robust than the comparator"
        section = Section(kind, title, dataset, paper, table, block_label, columns, rows)
        if kind == "calibration" and "ece" not in set(g["pcolumn"]):
            section.notes.append("the paper gives ECE only in its figures (JEM Figs. 4, 9), which the text "
                                 "extraction lacks; accuracies are from the text")
        out.append((section, psection))
    return out


def _needs_text(needs: dict[str, list[str]]) -> str:
    """``protocol ood-jem-official`` or, when the row's columns differ, ``protocol SVHN, ...: ood-jem-official;
    Uniform, Constant: none (closest ood-jem-official)``."""
    if len(needs) == 1:
        return f"protocol {next(iter(needs))}"
    plain = {label: dict.fromkeys(col.rstrip(" ↑↓") for col in cols) for label, cols in needs.items()}
    return "protocol " + "; ".join(f"{', '.join(cols)}: {label}" for label, cols in plain.items())


def _suffix(suffix: str) -> str:
    if not suffix:
        return ""
    return f" {suffix}" if suffix.startswith("vs ") else f" ({suffix})"


def _block_name(kind: str, block: str, group: str) -> str:
    if kind == "ood":
        return block
    return group or ""


def _our_rows(kind: str, recs: pd.DataFrame, caveats: dict[str, dict[tuple[str, int], list[sanity.Caveat]]]
              ) -> tuple[dict[tuple[str, str], list[Row]], dict[tuple[str, str], list[str]]]:
    """Our rows per (dataset, section key), and notes about protocol mismatches per (dataset, section key);
    ``caveats``: the failed attack sanity checks of each robustness record (by path), per (norm, K)."""
    rows: dict[tuple[str, str], list[Row]] = {}
    notes: dict[tuple[str, str], list[str]] = {}
    recs = recs[recs["suite"].isin(SUITES[kind])]
    if recs.empty:
        return rows, notes
    for (dataset, model), g in recs.groupby(["dataset", "model"], sort=True):
        hashes = g.groupby("suite")["hash"].nunique()
        if (hashes <= 1).all():
            units = [g]
        else:
            units = [u for _, u in g.groupby(["suite", "hash"], sort=True)]
            for suite, n in hashes[hashes > 1].items():
                protos = sorted({f"{p}@{h[:8]}" for p, h in g[g["suite"] == suite][["protocol", "hash"]]
                                 .itertuples(index=False)})
                msg = (f"{model} (ours): {suite} records under {n} different protocols ({', '.join(protos)}) are "
                       f"shown as separate rows, not averaged")
                for where in {(dataset, pl.section) for m in g["metric"] for pl in _place(kind, m)}:
                    notes.setdefault(where, []).append(msg)
        for unit in units:
            protocols, labels, names_of, counts = {}, {}, {}, []
            for (suite, h), pg in unit.groupby(["suite", "hash"], sort=True):
                n = pg["path"].nunique()
                names = "/".join(sorted(set(pg["protocol"])))  # files with identical tables share a hash
                protocols[suite], labels[suite], names_of[suite] = h, f"{names}@{h[:8]}", names
                sized = " / ".join(dict.fromkeys(t for t in pg["sizes"] if t))
                extra = [t for t in (sized, f"mean of {n}" if n > 1 else "") if t]
                counts.append(labels[suite] + (f" ({'; '.join(extra)})" if extra else ""))
            groups = unit.groupby(["suite", "metric"], sort=True)
            means, values, paths = groups["value"].mean(), groups["value"].agg(tuple), groups["path"].agg(tuple)
            ses = groups["se"].agg(tuple)
            set_labels = {m: lab for m, lab in zip(unit["metric"], unit["set_label"]) if lab}
            by_row: dict[tuple[str, str, str], Row] = {}
            for (suite, metric), value in means.items():
                for pl in _place(kind, metric):
                    row_key = (pl.section, pl.block, pl.suffix)
                    row = by_row.get(row_key)
                    if row is None:
                        label = f"{model}{_suffix(pl.suffix)} (ours)"
                        row = by_row[row_key] = Row(block=pl.block, model=label, ours=True,
                                                source="ours: " + ", ".join(counts), protocols=dict(protocols),
                                                protocol_labels=dict(labels), protocol_names=dict(names_of))
                    one = ses[(suite, metric)]
                    cell = Cell(float(value), _our_decimals(metric), metric, protocol=protocols[suite],
                                suite=suite, values=values[(suite, metric)], paths=paths[(suite, metric)],
                                se=one[0] if len(one) == 1 and math.isfinite(one[0]) else None)
                    key = metric_keys.parse(metric)
                    if kind == "robustness" and key is not None and key.k is not None:
                        for path in paths[(suite, metric)]:
                            for c in caveats.get(path, {}).get((pl.section, key.k), []):
                                if c.text not in row.caveats:
                                    row.caveats.append(c.text)
                    old = row.cells.get(pl.column)
                    if old is None or _source_rank(metric) < _source_rank(old.metric):
                        cell.mark = _source_mark(metric)
                        row.cells[pl.column] = cell
                    if metric in set_labels:  # an OOD set's column: the label its records store
                        row.column_labels.setdefault(pl.column, set_labels[metric])
            recovered = int(unit["recovered"].max())
            for (psection, _, _), row in by_row.items():
                if set(row.cells) == {"clean"}:
                    continue  # clean accuracy alone does not make a robustness row
                if recovered:  # its training rolled back and retried where the official code stops
                    row.flags.append("recovered")
                    row.source += f"; training recovered from {recovered} divergence{'s' if recovered > 1 else ''}"
                rows.setdefault((dataset, psection), []).append(row)
    return rows, notes


def _source(metric: str) -> str | None:
    """The sample source of a generation metric (``fid/fresh`` → ``fresh``), None for other metrics."""
    key = metric_keys.parse(metric)
    return key.source if key is not None else None


def _source_mark(metric: str) -> str:
    """``°`` for a number measured on other samples than the replay buffer."""
    source = _source(metric)
    return OTHER_SOURCE if source is not None and source != "buffer" else ""


def _source_rank(metric: str) -> int:
    source = _source(metric)
    return SOURCE_ORDER.index(source) if source in SOURCE_ORDER else len(SOURCE_ORDER)


def _our_decimals(metric: str) -> int:
    spec = metric_keys.spec(metric)
    return spec.decimals if spec is not None else 2


def build(kind: str, published: pd.DataFrame | None, refs: list[RecordRef], dataset: str | None = None,
          paper: str | None = None) -> list[Section]:
    """The sections of leaderboard ``kind``: published tables (optionally of one paper) with our rows added
    where their protocols match (:func:`_matching`), then sections of our remaining numbers, one per dataset,
    table part and set of protocols."""
    if kind not in TABLES:
        raise JembenchError(f"unknown table {kind!r}; use one of {', '.join(TABLES)}")
    pub = published if published is not None else pd.DataFrame(columns=["leaderboard", "dataset", "paper"])
    if dataset:
        pub = pub[pub["dataset"] == dataset]
    if paper:
        pub = pub[pub["paper"] == paper]
    recs = records_frame(refs)
    if dataset:
        recs = recs[recs["dataset"] == dataset]
    ds_labels = _dataset_labels(recs)
    caveats = {str(ref.path): sanity.by_row(ref.record) for ref in refs if kind == "robustness"}
    ours, notes = _our_rows(kind, recs, caveats)
    sections: list[Section] = []
    placed: set[tuple[int, str]] = set()  # (id of our row, column) shown beside a published number
    for section, psection in (_published_sections(kind, pub) if len(pub) else []):
        key = (section.dataset, psection)
        extra, why = [], []
        for row in ours.get(key, []):
            match = _matching(section, row)
            if match is not None and set(match.cells) != {"clean"}:
                extra.append(match)
                placed.update((id(row), c) for c in match.cells)
            unplaced = [c for c in row.cells if match is None or c not in match.cells]
            if unplaced and set(unplaced) != {"clean"}:
                why.append(_mismatch_note(section, row, unplaced))
        if extra:
            _append_ours(section, extra, notes.get(key, []))
        section.notes.extend(why)
        sections.append(section)
    rest: dict[tuple[str, str, tuple[str, ...]], list[Row]] = {}
    for key, rows in ours.items():
        for row in rows:
            left = {c: cell for c, cell in row.cells.items() if (id(row), c) not in placed}
            if not left or set(left) == {"clean"}:
                continue
            used = sorted({cell.suite for cell in left.values()})
            unit = copy.copy(row)
            unit.cells = left
            rest.setdefault((*key, tuple(row.protocol_labels[s] for s in used)), []).append(unit)
    order = ("", "linf", "l2")
    for ds, psection, labels in sorted(rest, key=lambda k: (k[0], order.index(k[1]) if k[1] in order else 9, k)):
        title = f"{TITLES[kind]} — jembench runs · {ds_labels.get(ds) or catalog.label(ds)}"
        if kind == "robustness":
            title += f" · {NORM_LABELS.get(psection, psection)} PGD, robust accuracy %"
        title += " · protocol " + ", ".join(labels)
        block_label = "Score" if kind == "ood" else None
        section = Section(kind, title, ds, None, None, block_label, [], [])
        _append_ours(section, rest[(ds, psection, labels)], notes.get((ds, psection), []))
        sections.append(section)
    for section in sections:
        _protocol_notes(section)
        _legend(section)
        mark_indistinguishable(section)
        settle_emphasis(section)
    return sections


def _matching(section: Section, row: Row) -> Row | None:
    """``row`` (ours) restricted to the cells measured under the protocol that the published numbers of the same
    column need (:func:`jembench.published.measured_under`), or None when no cell is."""
    needs: dict[str, set[str]] = {}
    for r in section.rows:
        for col, cell in r.cells.items():
            if cell.needs:
                needs.setdefault(col, set()).add(cell.needs)
    cells = {}
    for col, cell in row.cells.items():
        record = {"name": row.protocol_names.get(cell.suite, ""), "hash": cell.protocol}
        if any(measured_under(record, need) for need in sorted(needs.get(col, ()))):
            cells[col] = cell
    if not cells:
        return None
    match = copy.copy(row)
    match.cells = cells
    return match


def _mismatch_note(section: Section, row: Row, columns: list[str]) -> str:
    """Why some of our numbers are not in a published table: the protocol they were measured under and the one
    the table's numbers in those columns need."""
    needs = sorted({c.needs for r in section.rows for col, c in r.cells.items()
                    if col in columns and c.needs})  # quoted / unreleased numbers need no protocol
    measured = sorted({row.protocol_labels[row.cells[c].suite] for c in columns})
    keys = [c.key for c in section.columns]
    columns = sorted(columns, key=lambda col: (keys.index(col) if col in keys else len(keys), col))
    labels = [section.columns[keys.index(col)].label if col in keys else col for col in columns]
    needed = (f"this table needs {', '.join(needs)}" if needs else
              "no jembench protocol reproduces this table's numbers there")
    return (f"{row.model}: {', '.join(labels)} measured under {', '.join(measured)}; {needed} — shown in a "
            f"jembench-runs section instead")


def _append_ours(section: Section, rows: list[Row], notes: list[str]) -> None:
    rows = [copy.deepcopy(r) for r in rows]  # the same rows go into several sections; each gets its own
    known = {c.key for c in section.columns}
    extra = sorted({k for r in rows for k in r.cells} - known, key=lambda k: _column_order(section.kind, k))
    stored = {k: lab for r in reversed(rows) for k, lab in r.column_labels.items()}  # the first row's label wins
    section.columns.extend(_column(section.kind, k, stored.get(k)) for k in extra)
    if not section.columns:
        return
    if section.kind == "ood":  # ours go to the end of their score block
        blocks = sorted({r.block for r in section.rows + rows}, key=lambda b: (_block_order("ood", b), b))
        merged = []
        for b in blocks:
            merged += [r for r in section.rows if r.block == b] + [r for r in rows if r.block == b]
        section.rows = merged
    else:
        for r in rows:
            r.block = "jembench" if section.block_label else ""
        section.rows = section.rows + rows
    section.notes.extend(n for n in notes if n not in section.notes)


def _protocol_notes(section: Section) -> None:
    per_suite: dict[str, dict[str, str]] = {}
    for r in section.rows:
        for suite, h in r.protocols.items():
            per_suite.setdefault(suite, {})[h] = r.protocol_labels[suite]
    for suite, protos in sorted(per_suite.items()):
        if len(protos) > 1:
            section.notes.append(f"our rows use {len(protos)} different {suite} protocols "
                                 f"({', '.join(sorted(protos.values()))}): compare only rows measured under the "
                                 f"same one")


def _legend(section: Section) -> None:
    flags = [f for f in FLAGS if any(f in r.flags for r in section.rows)]
    for f in flags:
        section.notes.append(f"{FLAGS[f][0]} {FLAGS[f][1]}")
    others = sorted({c.metric for r in section.rows for c in r.cells.values() if c.mark == OTHER_SOURCE})
    if others:
        section.notes.append(f"{OTHER_SOURCE} measured on other samples than the replay buffer: {', '.join(others)}")
    if section.paper is not None and any(r.ours for r in section.rows):
        section.notes.append("(ours): measured by jembench; its source column names the protocol and hash")
    if any(c.se is not None for r in section.rows for c in r.cells.values()):
        section.notes.append("± after one record's number: its standard error (z = 1) — Wilson for accuracies over "
                             "the n in its source, Hanley–McNeil for AUROCs over n_in and n_out; after a mean over "
                             "several records: their standard deviation")
    flagged = [r for r in section.rows if r.caveats]
    if flagged:
        section.notes.append(f"{sanity.MARK} attack sanity checks failed ({sanity.REFERENCE}): the marked rows' "
                             f"robust accuracies are upper bounds the attack may not have reached")
        section.notes.extend(f"{sanity.MARK} {r.model}: {text}" for r in flagged for text in r.caveats)


def build_all(kinds: Iterable[str], published: pd.DataFrame | None, refs: list[RecordRef],
              dataset: str | None = None, paper: str | None = None) -> list[Section]:
    """Sections of several tables, in the given order."""
    sections: list[Section] = []
    for kind in kinds:
        sections += build(kind, published, refs, dataset=dataset, paper=paper)
    return sections
