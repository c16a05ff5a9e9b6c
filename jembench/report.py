"""The HTML report of a run: one self-contained page with the leaderboard tables and the suites' figures.

Why self-contained: a report is attached to a CI run or mailed around; it must open anywhere, offline, years
later. So CSS is inline and every PNG a record lists in ``figures`` (written beside the record file) is embedded
as a base64 ``data:`` URI, at its natural size, captioned with what it shows and the name of its vector copy
(the PDF beside it, :mod:`jembench.figures`). A small script marks the page once every image has decoded
(``<body data-report-ready="yes">``), which is what the browser test checks.

The record list names each robustness record's failed attack sanity checks (⚠, recomputed from its numbers by
:mod:`jembench.suites.robustness.sanity`), and the leaderboards carry the marks and notes of :mod:`jembench.render`.

What a record says is untrusted (a record may come from anyone's CI run): every text in the page goes through
:func:`jembench.escape.html`, the page's Content-Security-Policy runs no script but its own, and a figure is
embedded only when it is a PNG file *inside the folder being reported* (after resolving ``..`` and symlinks), so
a record cannot pull ``/home/someone/secret.png`` into a report that is then published as a CI artifact.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from . import escape, untrusted
from .errors import JembenchError
from .figures import caption as figure_caption
from .figures import vector_path
from .leaderboard import TABLES, build_all
from .records import Record, RecordRef, dataset_label, load_records
from .render import html_fragment, html_page
from .suites.robustness import sanity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_FIGURE_BYTES = untrusted.KINDS["figure"].max_bytes  # a suite's PNGs are ~100 KiB; a larger one is not theirs

READY_SCRIPT = """window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok.length));
  document.body.setAttribute('data-report-ready', ok.length === imgs.length ? 'yes' : 'broken');
});"""


def figure_paths(ref: RecordRef, root: Path | None = None) -> list[Path]:
    """The PNG files a record lists in ``figures``, resolved beside the record. A missing or non-PNG file, or
    one that lies outside ``root`` (default: the record's folder) once ``..`` and symlinks are resolved, is an
    error naming the record and the entry."""
    names = ref.record.get("figures", []) or []
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise JembenchError(f"{ref.path}: 'figures' must be a list of file names; regenerate the record")
    inside = Path(root if root is not None else ref.path.parent).resolve()
    paths = []
    for name in names:
        shown = escape.one_line(repr(name))
        if "\x00" in name:
            raise JembenchError(f"{ref.path} lists figure {shown}, whose name holds a NUL byte, so it names no "
                                f"file; remove the entry or regenerate the record")
        path = ref.path.parent / name
        if not untrusted.lies_inside(path, inside):
            raise JembenchError(f"{ref.path} lists figure {shown}, which lies outside the reported folder "
                                f"{inside}; a report embeds only files inside it: remove the entry or keep the "
                                f"figure beside the record")
        if not os.path.lexists(path):
            raise JembenchError(f"{ref.path} lists figure {shown} but {path} does not exist; keep the figures "
                                f"beside the record (re-run `jembench eval`) or remove the entry")
        label = f"figure {path} (listed by {ref.path})"
        with untrusted.open_binary(path, "figure", label=label) as fh:
            magic = fh.read(8)
        if magic != PNG_MAGIC:
            raise JembenchError(f"{path} (listed by {ref.path}) is not a PNG file; figures must be PNG")
        paths.append(path)
    return paths


def _img(path: Path, alt: str) -> str:
    """The PNG inline, at its natural pixel size (width / height from its IHDR chunk; CSS caps it at the page)."""
    raw = untrusted.read_bytes(path, "figure")
    if raw[:8] != PNG_MAGIC:
        raise JembenchError(f"{path} is not a PNG file (it changed while the report was built); run it again")
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    size = f' width="{width}" height="{height}"' if raw[12:16] == b"IHDR" and width and height else ""
    data = base64.b64encode(raw).decode("ascii")
    return f'<img src="data:image/png;base64,{data}"{size} alt="{escape.html(alt)}">'


def _figcaption(path: Path) -> str:
    """What the figure shows, its file, and its vector copy (PDF beside it) when there is one."""
    what = figure_caption(path.name)
    pdf = vector_path(path)
    return ((f"{escape.html(what)} — " if what else "") + f"<code>{escape.html(path.name)}</code>"
            + (f" (vector: <code>{escape.html(pdf.name)}</code>)" if pdf.is_file() else ""))


def _label(ref: RecordRef, root: Path) -> str:
    try:
        return str(ref.path.relative_to(root))
    except ValueError:
        return str(ref.path)


def _caveats(record: Record) -> str:
    """The record's failed attack sanity checks (recomputed from its numbers), one line each, escaped."""
    return "<br>".join(escape.html(f"{sanity.MARK} {c.where}: {c.text}") for c in sanity.caveats(record))


def build_report(run_dir: str | Path, published: pd.DataFrame | None = None, title: str | None = None) -> str:
    """The report page of every record under ``run_dir`` (with published rows when ``published`` is given)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise JembenchError(f"run folder {root} does not exist or is not a folder; pass the folder holding the "
                            f"records (e.g. runs/jem/eval)")
    refs = load_records([root])
    if not refs:
        raise JembenchError(f"no jembench records (*.json) under {root}; run `jembench eval` first")
    figures = {id(ref): figure_paths(ref, root) for ref in refs}

    overview = []
    for ref in refs:
        r = ref.record
        proto = r["protocol"]
        overview.append([escape.html(r["model"]["name"]), escape.html(r["model"].get("method", "")),
                         escape.html(dataset_label(r)), escape.html(r["suite"]),
                         escape.html(f"{proto.get('name', r['suite'])}@{str(proto['hash'])[:8]}"),
                         escape.html(r.get("seed", "")), escape.html(r.get("created", "")),
                         f"<code>{escape.html(_label(ref, root))}</code>", _caveats(r)])
    overview_table = tabulate(overview, headers=["Model", "Method", "Dataset", "Suite", "Protocol", "Seed",
                                                 "Created", "Record", "Caveats"], tablefmt="unsafehtml",
                              disable_numparse=True)

    sections = [s for s in build_all(TABLES, published, refs) if any(r.ours for r in s.rows) and s.columns]
    boards = html_fragment(sections) if sections else "<p>No leaderboard rows: the records hold no table metrics.</p>"

    blocks = []
    for ref in refs:
        paths = figures[id(ref)]
        if not paths:
            continue
        r = ref.record
        caption = f"{r['model']['name']} · {r['suite']} · {dataset_label(r)}"
        figs = "\n".join(f"<figure>{_img(p, f'{caption}: {p.name}')}<figcaption>{_figcaption(p)}"
                         f"</figcaption></figure>" for p in paths)
        blocks.append(f'<section class="figures">\n<h3>{escape.html(caption)}</h3>\n'
                      f"<p><code>{escape.html(_label(ref, root))}</code></p>\n{figs}\n</section>")
    figures_html = "\n".join(blocks) if blocks else "<p>The records list no figures.</p>"

    n_figs = sum(len(p) for p in figures.values())
    body = (f"<p>{len(refs)} record(s) under <code>{escape.html(root)}</code>, {n_figs} figure(s).</p>\n"
            f"<h2>Records</h2>\n{overview_table}\n<h2>Leaderboards</h2>\n{boards}\n"
            f"<h2>Figures</h2>\n{figures_html}")
    return html_page(title or f"jembench report — {root.name or root}", body, READY_SCRIPT)
