"""The text of figures: untrusted labels made inert, long labels wrapped to the room they have, report captions.

Text that comes from checkpoints, records or folders (model names, dataset and OOD-set labels, class names) is
untrusted: :func:`plain` makes it one line of printable characters, replaces the characters the pinned font
(:data:`~jembench.figures.style.FONT`) cannot draw with ``?`` (so matplotlib never reaches for another font, and
never draws a blank box), and escapes matplotlib's ``$…$`` mathtext, so a name can neither break nor inject
markup. Datasets are named by their display label (``CIFAR-10``; a ``folder:PATH`` by the folder's name), never by
an absolute path.

Labels are as long as their owners make them ("Tiny ImageNet 32 (CIFAR-100 stand-in)", a 120-character model
name), while a panel title has about 2 inches. :func:`fit` lays a label out in the width it has, measured with the
font that will draw it: parts joined by " · " while they fit, wrapped at spaces when one does not, and cut with
"…" when more lines than allowed would be needed — so titles never run into each other or off the canvas.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import catalog, records
from .style import FONT

#: longest one-line label kept before :func:`fit` lays it out (longer text is cut with "…")
MAX_LABEL = 160
#: what each figure (by the name suffix the suites give it) shows, for report captions
CAPTIONS = {
    "reliability": "Reliability diagram: accuracy per confidence bin, the gap to the diagonal, and the "
                   "confidence histogram (inputs per bin)",
    "hist_": "OOD score histograms: in-distribution vs each OOD set (share of inputs per bin)",
    "samples_conditional": "Class-conditional samples, one row per predicted class (most confident first)",
    "samples_": "Samples",
    "pgd": "PGD robust accuracy vs ε (JEM Fig. 5)",
    "gradient_free": "Decision-based attacks: accuracy vs distance (JEM Fig. 10)",
}


def short(text: Any, limit: int = 48) -> str:
    """Untrusted text as a short label: one line of printable characters, at most ``limit`` of them."""
    s = "".join(c for c in " ".join(str(text).split()) if c.isprintable())
    return s if len(s) <= limit else s[:limit - 1] + "…"


@functools.lru_cache(maxsize=1)
def _glyphs() -> frozenset[int]:
    """The code points the pinned font draws (its character map)."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(findfont(FontProperties(family=FONT), fallback_to_default=False)).get_charmap())


def drawable(text: Any, limit: int = 48) -> str:
    """:func:`short`, with every character the pinned font has no glyph for replaced by ``?`` (unescaped: for
    :func:`fit`, which escapes after laying out)."""
    glyphs = _glyphs()
    return "".join(c if ord(c) in glyphs else "?" for c in short(text, limit))


def _escape(text: str) -> str:
    return text.replace("$", r"\$")


def plain(text: Any, limit: int = 48) -> str:
    """Untrusted text as a safe one-line matplotlib label: :func:`drawable`, with ``$`` escaped (no mathtext)."""
    return _escape(drawable(text, limit))


# ------------------------------------------------------------------------------------------- layout
@functools.lru_cache(maxsize=1)
def _renderer():
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point


@functools.lru_cache(maxsize=4096)
def text_width(text: str, size: float) -> float:
    """Width in points of one line of ``text`` (as drawn: unescaped, no mathtext) in the pinned font at
    ``size`` pt, measured the way the Agg renderer lays it out."""
    from matplotlib.font_manager import FontProperties

    width, _, _ = _renderer().get_text_width_height_descent(text, FontProperties(family=FONT, size=size),
                                                            ismath=False)
    return float(width)


def _wrap(text: str, width: float, size: float) -> list[str]:
    """``text`` on as few lines no wider than ``width`` as word wrapping allows (textwrap at the widest
    character count whose lines all fit; a word longer than a line is broken)."""
    if text_width(text, size) <= width:
        return [text]
    for chars in range(len(text) - 1, 0, -1):
        lines = textwrap.wrap(text, chars, break_on_hyphens=False)
        if all(text_width(line, size) <= width for line in lines):
            return lines
    return list(text)


def _cut(text: str, width: float, size: float) -> str:
    """``text`` cut with "…" to fit ``width``."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text.rstrip() + "…", size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def fit(parts: Sequence[Any], width: float, size: float, max_lines: int = 2, sep: str = " · ") -> str:
    """Untrusted ``parts`` (e.g. model name, dataset label) as one escaped label of at most ``max_lines`` lines
    no wider than ``width`` points at ``size`` pt: parts share a line (joined by ``sep``) while they fit, a part
    that does not fit on a line of its own is wrapped at spaces, and what would need more lines is cut with "…".
    """
    width *= 0.97  # hinting at the figure's resolution can widen a line by a hair
    lines: list[str] = []
    for part in (drawable(p, MAX_LABEL) for p in parts):
        if not part:
            continue
        if lines and text_width(lines[-1] + sep + part, size) <= width:
            lines[-1] += sep + part
        else:
            lines.extend(_wrap(part, width, size))
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [" ".join(lines[max_lines - 1:])]
    return "\n".join(_escape(_cut(line, width, size)) for line in lines)


def axes_width(ax) -> float:
    """The width of ``ax`` in points, as the figure's layout has placed it (call after a layout pass:
    ``fig.draw_without_rendering()``)."""
    return ax.get_position().width * ax.get_figure().get_figwidth() * 72


# ------------------------------------------------------------------------------------------ datasets
def dataset_label(name: str, label: str | None = None) -> str:
    """How figures and captions name a dataset or OOD set (unescaped: pass it through :func:`plain` or
    :func:`fit` to draw it): ``label`` when given (a record's ``dataset_label``), else the catalog's display
    label (``cifar10`` → CIFAR-10, ``uniform`` → Uniform, a ``folder:PATH`` → the folder's name, never the
    path: :func:`jembench.catalog.label`)."""
    return short(label or catalog.label(name), MAX_LABEL)


def record_dataset_label(record: Mapping[str, Any]) -> str:
    """How figures name a record's dataset: :func:`jembench.records.dataset_label` (the label the record stores,
    in older records where they stored it, else the catalog's), shortened."""
    return short(records.dataset_label(dict(record)), MAX_LABEL)


def caption(file_name: str) -> str:
    """What a figure file written by a suite shows (:data:`CAPTIONS`), from its name; '' when unknown."""
    stem = f"_{Path(file_name).stem}"
    for part, text in CAPTIONS.items():  # "x_" matches inside the name, "x" at its end
        if (f"_{part}" in stem) if part.endswith("_") else stem.endswith(f"_{part}"):
            return text
    return ""
