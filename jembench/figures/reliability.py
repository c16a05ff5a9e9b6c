"""The reliability diagram of a calibration record (JEM Fig. 4 style), with the confidence histogram under it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .files import save
from .labels import axes_width, dataset_label, fit
from .style import COLUMN, OKABE_ITO, TITLE_PT, figure, style

#: figure height (inches): diagram, histogram, two legend rows and up to four title lines
HEIGHT = 3.9


def draw_reliability(bins: Sequence[Mapping[str, float]], *, ece: float, model: str = "", dataset: str = "",
                     dataset_display: str | None = None):
    """The diagram as a :class:`matplotlib.figure.Figure` (:func:`reliability_diagram` saves it).

    ``bins`` is the record's per-bin table (``details["bins"]``: lower, upper, count, accuracy, confidence;
    empty bins NaN); ``ece`` the record's ECE in % (``metrics["ece"]``), shown in the title as computed — not
    recomputed here. Top: accuracy per non-empty bin (bars); the gap to the bin's mean confidence, coloured by
    its sign — over-confident (confidence > accuracy) or under-confident — with the share of inputs in such bins
    in the legend; the diagonal. Bottom: inputs per bin (count), so sparse bins are visible as such (as netcal's
    ReliabilityDiagram draws it). The title names ``model`` and ``dataset`` (its display label;
    ``dataset_display``, e.g. a record's ``dataset_label``, overrides it), wrapped to the diagram's width."""
    rows = [b for b in bins if b.get("count")]
    n = int(sum(b["count"] for b in rows))
    with style():
        fig = figure(COLUMN, HEIGHT)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.15])
        lefts = np.array([b["lower"] for b in rows], dtype=float)
        widths = np.array([b["upper"] - b["lower"] for b in rows], dtype=float)
        acc = np.array([b["accuracy"] for b in rows], dtype=float)
        conf = np.array([b["confidence"] for b in rows], dtype=float)
        counts = np.array([b["count"] for b in rows], dtype=float)
        top.bar(lefts, acc, width=widths, align="edge", color=OKABE_ITO["blue"], edgecolor="white",
                linewidth=0.4, label="accuracy")
        top.plot([0, 1], [0, 1], ls="--", color=OKABE_ITO["black"], lw=0.8, label="perfect calibration")
        gaps = conf - acc
        for sign, name, colour, hatch in ((1, "over-confident", OKABE_ITO["vermillion"], "////"),
                                          (-1, "under-confident", OKABE_ITO["orange"], "\\\\\\\\")):
            pick = np.sign(gaps) == sign
            share = 100.0 * counts[pick].sum() / n if n else 0.0
            top.bar(lefts[pick], gaps[pick], bottom=acc[pick], width=widths[pick], align="edge",
                    facecolor="none", edgecolor=colour, hatch=hatch, linewidth=0.6,
                    label=f"{name} gap ({share:.0f}% of inputs)")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", ncols=2, handlelength=1.4,
                   columnspacing=0.8, handletextpad=0.4)
        bottom.bar(lefts, counts, width=widths, align="edge", color=OKABE_ITO["sky blue"], edgecolor="white",
                   linewidth=0.4)
        bottom.set_ylabel("inputs per bin")
        bottom.set_xlabel(r"confidence  max$_y$ p(y|x)")
        bottom.set_ylim(0, max(counts.max() if len(counts) else 1.0, 1.0) * 1.08)
        fig.draw_without_rendering()  # lay out, so the title can be wrapped to the diagram's width
        ece_text = "nan" if ece is None or math.isnan(ece) else f"{ece:.2f}%"
        width = axes_width(top)
        names = fit([model, dataset_label(dataset, dataset_display) if dataset else ""], width, TITLE_PT, 3)
        numbers = fit([f"ECE = {ece_text} ({len(bins)} bins, n = {n})"], width, TITLE_PT, 1)
        top.set_title("\n".join(t for t in (names, numbers) if t))
    return fig


def reliability_diagram(bins: Sequence[Mapping[str, float]], path: str | Path, *, ece: float, model: str = "",
                        dataset: str = "", dataset_display: str | None = None) -> Path:
    """:func:`draw_reliability` written to ``path`` (PNG + PDF); returns the PNG path."""
    return save(draw_reliability(bins, ece=ece, model=model, dataset=dataset, dataset_display=dataset_display),
                path)
