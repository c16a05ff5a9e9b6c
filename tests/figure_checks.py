"""What a drawn figure says, read back from matplotlib's artists: every text it draws with its rendered extent,
the fonts those texts resolve to, and the longest labels the repository holds (to test layouts against)."""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.font_manager import findfont
from matplotlib.text import Text

from jembench import figures

REPO = Path(__file__).resolve().parent.parent
BUNDLED_FONTS = Path(matplotlib.get_data_path()).resolve() / "fonts"


def _in_view(axis, loc) -> bool:
    """Whether a tick at ``loc`` is drawn: inside the axis' view interval (up to rounding, as matplotlib decides)."""
    lo, hi = sorted(axis.get_view_interval())
    eps = 1e-10 * max(hi - lo, 1e-300)
    return loc is not None and lo - eps <= loc <= hi + eps


def _drawn_texts(fig) -> Iterator[Text]:
    """The Text artists a draw of ``fig`` puts on the canvas: visible, non-empty, and — for tick labels — only
    those of ticks inside the view (matplotlib keeps spare ticks whose labels are never drawn), nothing of an
    axis that is switched off."""
    tick_texts = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for tick in axis.majorTicks + axis.minorTicks for t in (tick.label1, tick.label2)}
    shown = {id(t) for ax in fig.axes if ax.axison for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks() if _in_view(axis, tick.get_loc())
             for t in (tick.label1, tick.label2)}
    axis_texts = {id(t): ax for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
                  for t in (axis.label, axis.get_offset_text())}
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip():
            continue
        if id(t) in tick_texts and id(t) not in shown:
            continue
        if id(t) in axis_texts and not axis_texts[id(t)].axison:
            continue
        yield t


def text_boxes(fig) -> list[tuple[str, object]]:
    """(text, rendered extent in pixels) of every text of ``fig``, after a draw in the figures' style at their
    resolution (so the layout — constrained, wrapped — is the one the PNG gets)."""
    with figures.style():
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        return [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]


def layout_problems(fig, slack: float = 0.5) -> list[str]:
    """Texts outside the canvas and pairs of texts whose boxes overlap (by more than ``slack`` pixels each way):
    [] for a clean layout."""
    boxes = text_boxes(fig)
    width, height = fig.bbox.width, fig.bbox.height
    problems = [f"{text!r} outside the canvas: {box.bounds}" for text, box in boxes
                if box.x0 < -slack or box.y0 < -slack or box.x1 > width + slack or box.y1 > height + slack]
    for (t1, b1), (t2, b2) in itertools.combinations(boxes, 2):
        dx = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        dy = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if dx > slack and dy > slack:
            problems.append(f"{t1!r} overlaps {t2!r}")
    return problems


def texts(fig) -> list[str]:
    """Every text ``fig`` draws (titles, labels, legends, ticks), as drawn."""
    return [text for text, _ in text_boxes(fig)]


def foreign_fonts(fig) -> list[str]:
    """Fonts of ``fig``'s texts that do not resolve to the copy bundled with matplotlib (the pinned one)."""
    with figures.style():
        out = []
        for t in _drawn_texts(fig):
            prop = t.get_fontproperties()
            path = Path(findfont(prop, fallback_to_default=False)).resolve()
            if not path.is_relative_to(BUNDLED_FONTS) or prop.get_family() != [figures.FONT]:
                out.append(f"{t.get_text()!r}: {prop.get_family()} -> {path}")
        return out


def _strings(obj, keys: set[str]) -> Iterator[str]:
    """Every string under a key in ``keys`` (or in a mapping under such a key) of a JSON/TOML tree."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                yield v
            elif k in keys and isinstance(v, dict):
                yield from (x for x in v.values() if isinstance(x, str))
            else:
                yield from _strings(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, keys)


def repository_labels() -> list[str]:
    """Every dataset / OOD-set label and model name in suites/*.toml and results/**/*.json, longest first."""
    keys = {"label", "dataset_label", "set_labels"}
    found = set()
    for path in sorted((REPO / "suites").glob("*.toml")):
        found.update(_strings(tomllib.loads(path.read_text(encoding="utf-8")), keys))
    for path in sorted((REPO / "results").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        found.update(_strings(record, keys))
        if isinstance(record, dict) and isinstance(record.get("model"), dict):
            found.add(str(record["model"].get("name", "")))
    return sorted(found, key=lambda s: (-len(s), s))
