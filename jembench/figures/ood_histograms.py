"""OOD score histograms (JEM Table 2 figure): per OOD set, the in-distribution scores against that set's.

The figure is drawn from binned data (:func:`histogram_data`), which the OOD suite also stores in its record
(``details["histograms"][score]``), so a committed record's histograms can be drawn again (restyled, relabelled)
without the per-input scores, which records do not hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .files import save
from .labels import axes_width, dataset_label, fit
from .style import COLUMN, OKABE_ITO, PAGE, SMALL_PT, TEXT_PT, TITLE_PT, as_numpy, figure, style

#: the panel drawn when a record has no OOD set
NO_SET = "(no OOD set)"


def _finite(scores) -> tuple[np.ndarray, int]:
    """The finite scores and how many were not finite."""
    raw = np.asarray(as_numpy(scores), dtype=np.float64).ravel()
    keep = raw[np.isfinite(raw)]
    return keep, len(raw) - len(keep)


def histogram_data(score_in, scores_out: Mapping[str, Any], bins: int) -> dict[str, Any]:
    """The histograms one figure draws, as JSON-able data: per OOD set, ``bins`` equal bins spanning the finite
    scores of both sides (``range`` = [first edge, last edge], as :func:`numpy.histogram_bin_edges` puts them),
    the in-distribution and OOD counts per bin, and how many scores of each side were not finite (left out).

    ``{"bins": B, "n_in": …, "in_nonfinite": …, "sets": {name: {"range": [lo, hi], "in": [B counts],
    "out": [B counts], "n": …, "nonfinite": …}}}``"""
    s_in, in_bad = _finite(score_in)
    sets = {}
    for name, scores in scores_out.items():
        s_out, out_bad = _finite(scores)
        edges = np.histogram_bin_edges(np.concatenate([s_in, s_out]), bins=bins)
        sets[str(name)] = {"range": [float(edges[0]), float(edges[-1])],
                           "in": np.histogram(s_in, bins=edges)[0].tolist(),
                           "out": np.histogram(s_out, bins=edges)[0].tolist(),
                           "n": len(s_out) + out_bad, "nonfinite": out_bad}
    return {"bins": int(bins), "n_in": len(s_in) + in_bad, "in_nonfinite": in_bad, "sets": sets}


def _title(panel: Mapping[str, Any], in_bad: int, label: str, auroc: float | None, width: float) -> str:
    """Set label (up to two lines), then AUROC, n and what was left out (up to two lines), fitted to ``width``."""
    numbers = [f"AUROC {auroc:.3f}" if auroc is not None and not math.isnan(auroc) else "",
               f"n = {panel['n']}"]
    dropped = in_bad + panel["nonfinite"]
    if dropped:
        numbers.append(f"{dropped} non-finite left out")
    return fit([label], width, TITLE_PT, 2) + "\n" + fit(numbers, width, TITLE_PT, 2)


def draw_score_histograms(data: Mapping[str, Any], *, label: str, in_name: str,
                          aurocs: Mapping[str, float] | None = None, in_display: str | None = None,
                          set_labels: Mapping[str, str] | None = None):
    """The histograms of :func:`histogram_data` as a :class:`matplotlib.figure.Figure`: one panel per OOD set
    (three per row), each titled with the set's label (``set_labels[name]``, else its catalog label), its AUROC
    (``aurocs[name]``, as the record holds it) and n; x = the score (``label``), y = share of the side's finite
    inputs per bin (each histogram sums to 1, so a set of 500 and one of 10,000 compare, and the single-point
    Constant set is one bar of height 1). The legend sits above the panels, never on the data; it names the
    in-distribution set (``in_display``, else ``in_name``'s label). Every label is wrapped to its room."""
    sets = dict(data["sets"]) or {NO_SET: {"range": [0.0, 1.0], "in": [], "out": [], "n": 0, "nonfinite": 0}}
    names = list(sets)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    width = COLUMN if cols == 1 else PAGE
    n_in, in_bad = int(data["n_in"]), int(data["in_nonfinite"])
    with style():
        fig = figure(width, 0.5 + 1.8 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        handles: list[Any] = []
        for ax, name in zip(axes, names):
            panel = sets[name]
            low, high = panel["range"]
            edges = np.linspace(low, high, len(panel["in"]) + 1)
            share_in = np.asarray(panel["in"], dtype=float) / max(1, n_in - in_bad)
            share_out = np.asarray(panel["out"], dtype=float) / max(1, panel["n"] - panel["nonfinite"])
            drawn = [ax.stairs(share_in, edges, fill=True, alpha=0.55, color=OKABE_ITO["blue"], linewidth=0),
                     ax.stairs(share_out, edges, color=OKABE_ITO["vermillion"], linewidth=1.0)]
            handles = handles or drawn
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("share of inputs")
            ax.margins(y=0.08)
        for ax in axes[len(names):]:
            ax.axis("off")
        in_text = dataset_label(in_name, in_display)
        legend_room = width * 72 / (1 if cols == 1 else 2) - 5.0 * SMALL_PT
        fig.legend(handles, [fit([f"in-distribution: {in_text} (n = {n_in})"], legend_room, SMALL_PT, 3),
                             "OOD: the set in the title"], loc="outside upper center", ncols=1 if cols == 1 else 2)
        fig.draw_without_rendering()  # lay out, so titles and axis labels can be wrapped to their panels
        for ax, name in zip(axes, names):
            room = axes_width(ax)
            shown = NO_SET if name == NO_SET else (set_labels or {}).get(name) or dataset_label(name)
            ax.set_title(_title(sets[name], in_bad, shown, (aurocs or {}).get(name), room))
            ax.set_xlabel(fit([label], room, TEXT_PT, 2))
    return fig


def score_histograms(data: Mapping[str, Any], path: str | Path, *, label: str, in_name: str,
                     aurocs: Mapping[str, float] | None = None, in_display: str | None = None,
                     set_labels: Mapping[str, str] | None = None) -> Path:
    """:func:`draw_score_histograms` written to ``path`` (PNG + PDF); returns the PNG path."""
    return save(draw_score_histograms(data, label=label, in_name=in_name, aurocs=aurocs, in_display=in_display,
                                      set_labels=set_labels), path)
