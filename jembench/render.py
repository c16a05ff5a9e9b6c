"""Rendering of leaderboard sections: Markdown, LaTeX, CSV and HTML (tables via tabulate; pages self-contained).

:mod:`jembench.leaderboard` builds :class:`~jembench.leaderboard.Section` objects (which rows, which cells, which
protocol); this module only draws them, for ``jembench leaderboard`` and the HTML report (:mod:`jembench.report`).
Every piece of text that can come from a record, a checkpoint, a dataset folder or a protocol file — model names,
dataset labels, protocol names, notes, column labels — goes through the format's function in
:mod:`jembench.escape`: nothing a record says can become markup, a formula or a control sequence in an output.
HTML pages also carry a Content-Security-Policy that allows no script but the page's own (by hash), no fetch and
no inline handlers — a second wall should an escape ever be missed.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import TYPE_CHECKING

import pandas as pd
from tabulate import tabulate

from . import escape
from .errors import JembenchError
from .metrics.ood_scores import SCORES
from .published import FLAGS
from .suites.robustness.sanity import MARK as CAVEAT

if TYPE_CHECKING:
    from .sections import Cell, Row, Section

FORMATS = ("md", "latex", "csv", "html")

_ESCAPE = {"md": escape.markdown, "latex": escape.latex, "html": escape.html}


# ----------------------------------------------------------------------------------------------- emphasis
def emphasis(section: Section) -> dict[tuple[int, str], int]:
    """(row index, column) -> 1 for the best value, 2 for the second best: what the formats draw bold /
    underlined. Decided when the section is built (:func:`jembench.leaderboard_significance.settle_emphasis`):
    by the column's direction, per score block, and only where the difference is significant."""
    return {(i, key): cell.emphasis for i, r in enumerate(section.rows) for key, cell in r.cells.items()
            if cell.emphasis}


# ----------------------------------------------------------------------------------------------- tables
def _fmt_value(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if not math.isfinite(cell.value):
        return "NaN"
    if len(cell.values) > 1:  # ours, averaged over several records (seeds): mean ± standard deviation
        import statistics

        return f"{cell.value:.{cell.decimals}f} ± {statistics.stdev(cell.values):.{cell.decimals}f}"
    if cell.se is not None and math.isfinite(cell.se):  # ours, one record: ± its standard error
        return f"{cell.value:.{cell.decimals}f} ± {cell.se:.{cell.decimals}f}"
    return f"{cell.value:.{cell.decimals}f}"


def _marks(row: Row) -> str:
    """The row's footnote marks: published flags (†, ‡, ...) and ⚠ for failed attack sanity checks."""
    return "".join(FLAGS[f][0] for f in row.flags if f in FLAGS) + (CAVEAT if row.caveats else "")


def _table_rows(section: Section, fmt: str) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body and column alignment of one section in ``fmt`` (md, latex or html), every text escaped."""
    ranks = emphasis(section)
    esc = _ESCAPE[fmt]
    headers = []
    if section.block_label:
        headers.append(section.block_label)
    headers += ["Model"] + [c.label for c in section.columns] + ["Source"]
    headers = [esc(h) for h in headers]
    align = (["left"] if section.block_label else []) + ["left"] + ["right"] * len(section.columns) + ["left"]
    body = []
    previous_block = None
    for i, r in enumerate(section.rows):
        line = []
        if section.block_label:
            block = r.block if r.block != previous_block else ""
            previous_block = r.block
            score = SCORES.get(block) if section.kind == "ood" and block else None
            if score is not None:
                block = score.latex if fmt == "latex" else esc(score.label)
            else:
                block = esc(block)
            line.append(block)
        model = esc(r.model) + esc(_marks(r))
        if r.ours and fmt == "html":
            model = f'<span class="ours">{model}</span>'
        elif r.ours and fmt == "md":
            model = f"*{model}*"
        line.append(model)
        for c in section.columns:
            cell = r.cells.get(c.key)
            text = esc(_fmt_value(cell)) + (esc(cell.mark) if cell and cell.mark else "")
            rank = ranks.get((i, c.key))
            if rank == 1:
                text = {"md": f"**{text}**", "latex": rf"\textbf{{{text}}}", "html": f"<strong>{text}</strong>"}[fmt]
            elif rank == 2 and fmt != "md":
                text = {"latex": rf"\underline{{{text}}}", "html": f"<u>{text}</u>"}[fmt]
            line.append(text)
        line.append(esc(r.source))
        body.append(line)
    return headers, body, align


def render(sections: list[Section], fmt: str = "md", title: str | None = None) -> str:
    """All sections as one document in ``fmt`` (md, latex, csv or html)."""
    if fmt not in FORMATS:
        raise JembenchError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return csv_text(to_frame(sections))
    if fmt == "html":
        return html_page(title or "jembench leaderboard", html_fragment(sections))
    parts = []
    for s in sections:
        if not s.columns:
            continue
        headers, body, align = _table_rows(s, fmt)
        if fmt == "md":
            table = tabulate(body, headers=headers, tablefmt="github", colalign=align, disable_numparse=True)
            notes = "".join(f"\n- {escape.markdown(n)}" for n in s.notes)
            parts.append(f"### {escape.markdown(s.title)}\n\n{table}\n{notes}\n".rstrip() + "\n")
        else:
            table = tabulate(body, headers=headers, tablefmt="latex_raw", colalign=align, disable_numparse=True)
            notes = " ".join(escape.latex(n) + "." for n in s.notes)
            parts.append("\\begin{table}[t]\n\\centering\n\\small\n"
                         f"\\caption{{{escape.latex(s.title)}}}\n{table}\n"
                         + (f"\\par\\footnotesize {notes}\n" if notes else "")
                         + "\\end{table}\n")
    if not parts:
        return "(no rows: no published numbers or records match the filters)\n"
    return "\n".join(parts)


def csv_text(frame: pd.DataFrame) -> str:
    """A DataFrame as CSV whose text cells and headers cannot turn into spreadsheet formulas
    (:func:`jembench.escape.csv_cell`); numbers are written as numbers."""
    safe = frame.rename(columns=lambda c: escape.csv_cell(str(c)))
    for col in safe.columns:
        if safe[col].dtype == object or pd.api.types.is_string_dtype(safe[col]):
            safe[col] = safe[col].map(escape.csv_cell)
    return str(safe.to_csv(index=False))


def html_fragment(sections: list[Section]) -> str:
    """The sections as ``<section>`` elements (tables + notes), for a page or the HTML report."""
    out = []
    for s in sections:
        if not s.columns:
            continue
        headers, body, align = _table_rows(s, "html")
        table = tabulate(body, headers=headers, tablefmt="unsafehtml", colalign=align, disable_numparse=True)
        table = table.replace("<table>", f'<table class="leaderboard" data-kind="{escape.html(s.kind)}">', 1)
        notes = "".join(f"<li>{escape.html(n)}</li>" for n in s.notes)
        out.append(f'<section class="board">\n<h3>{escape.html(s.title)}</h3>\n{table}\n'
                   + (f'<ul class="notes">{notes}</ul>\n' if notes else "") + "</section>")
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem auto;max-width:72rem;
padding:0 1rem;color:#222}table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{padding:.2rem .6rem;
border-bottom:1px solid #ddd}th{border-bottom:2px solid #444}.ours{background:#fff3c4;font-style:italic}
.notes{font-size:.85rem;color:#555}figure{display:block;margin:.75rem 0 1.25rem}
figure img{display:block;max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85rem;color:#555}code{font-size:.85rem}"""


def content_security_policy(script: str = "") -> str:
    """The page's policy: images only as ``data:`` URIs, inline CSS, and no script but ``script`` (by its
    SHA-256), so injected ``<script>`` or ``onerror=`` could not run even if it got past the escaping."""
    scripts = "'none'"
    if script:
        digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
        scripts = f"'sha256-{digest}'"
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {scripts}; "
            f"base-uri 'none'; form-action 'none'")


def html_page(title: str, body: str, script: str = "") -> str:
    """A complete, self-contained HTML document (inline CSS; no external resources). ``title`` is text (escaped
    here); ``body`` and ``script`` are markup the caller built from escaped parts."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(script)}">\n'
            f"<title>{escape.html(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{escape.html(title)}</h1>\n{body}\n"
            + (f"<script>{script}</script>\n" if script else "") + "</body>\n</html>\n")


def to_frame(sections: list[Section]) -> pd.DataFrame:
    """All sections as one wide DataFrame with raw numbers (the ``csv`` format; text is raw here, neutralised
    by :func:`csv_text` when written)."""
    frames = []
    for s in sections:
        recs = []
        for r in s.rows:
            d = {"table": s.kind, "section": s.title, "dataset": s.dataset, "block": r.block, "model": r.model,
                 "ours": r.ours, "source": r.source, "flags": ";".join(r.flags + (["attack_sanity"] if r.caveats
                                                                                  else [])),
                 "caveats": " | ".join(r.caveats)}
            for c in s.columns:
                cell = r.cells.get(c.key)
                d[c.key] = cell.value if cell is not None else float("nan")
                if any(other.cells.get(c.key) is not None and other.cells[c.key].se is not None for other in s.rows):
                    d[f"{c.key} se"] = cell.se if cell is not None and cell.se is not None else float("nan")
            recs.append(d)
        if recs:
            frames.append(pd.DataFrame(recs))
    if not frames:
        return pd.DataFrame(columns=["table", "section", "dataset", "block", "model", "ours", "source", "flags",
                                     "caveats"])
    return pd.concat(frames, ignore_index=True)
