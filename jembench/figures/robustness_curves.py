"""Robustness curves of robustness records: PGD robust accuracy vs ε (JEM Fig. 5) and accuracy vs distance for the
decision-based attacks (JEM Fig. 10), for one record or several on one figure (e.g. softmax vs JEM)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import metric_keys
from ..errors import JembenchError
from .files import save
from .labels import axes_width, drawable, fit, plain, record_dataset_label
from .style import COLUMN, CYCLE, DASHES, PAGE, SMALL_PT, TEXT_PT, TITLE_PT, figure, style

#: panel kind -> (details family, norm, per-input field, x-axis label)
PANELS = {
    "linf": ("pgd", "linf", "min_eps", "PGD L∞ ε ([0, 1] pixels)"),
    "l2": ("pgd", "l2", "min_eps", "PGD L2 ε ([0, 1] pixels)"),
    "boundary": ("boundary", None, "l2", "boundary attack: L2 distance ([0, 1] pixels)"),
    "pointwise": ("pointwise", None, "l0", "pointwise attack: L0 distance (changed entries)"),
}
#: panel titles
TITLES = {"linf": "PGD L∞", "l2": "PGD L2", "boundary": "boundary (L2)", "pointwise": "pointwise (L0)"}
#: characters of a record's legend label
RECORD_LABEL = 24


@dataclass(frozen=True)
class Curve:
    """Accuracy (%) at each distance ``x`` over the ``n`` inputs that count; ``no_start`` inputs were left out
    (gradient-free attacks: no correctly classified top-2-class starting point, so they were never attacked)."""

    x: np.ndarray
    accuracy: np.ndarray
    n: int
    no_start: int
    grid: tuple[float, ...] = ()  # PGD: the ε grid of the protocol (where the record's metrics are)


def _distances(values: Sequence[float | None]) -> np.ndarray:
    return np.array([math.inf if v is None else float(v) for v in values], dtype=np.float64)


def _start_mask(entry: Mapping[str, Any], n: int) -> np.ndarray | None:
    """Per-input "had a starting point" flags when the record holds them (``has_start``, or ``no_start`` as a
    per-input list); None when it only counts them."""
    flags = entry.get("has_start")
    if isinstance(flags, list) and len(flags) == n:
        return np.array([bool(f) for f in flags])
    flags = entry.get("no_start")
    if isinstance(flags, list) and len(flags) == n:
        return ~np.array([bool(f) for f in flags])
    return None


def accuracy_curve(distances: Sequence[float | None], xs: np.ndarray, no_start: int = 0) -> np.ndarray:
    """Accuracy (%) at each distance budget over the inputs that were attacked: the share whose smallest
    adversarial is farther. ``distances``: per input, None = none found. ``no_start`` inputs without a starting
    point (their distance is None: never attacked, not robust) are taken out of numerator and denominator — they
    are all among the Nones, so the count is enough."""
    d = _distances(distances)
    n = len(d) - no_start
    if n <= 0:
        return np.full(len(xs), np.nan)
    return np.array([100.0 * (float(np.sum(d > x)) - no_start) / n for x in xs])


def curves(details: Mapping[str, Any], kind: str) -> dict[str, Curve]:
    """{"k<K>": curve} for one panel kind (linf, l2, boundary, pointwise) of a robustness record's details."""
    family, norm, field, _ = PANELS[kind]
    entries = details.get(family, {}) or {}
    entries = entries.get(norm, {}) if norm else entries
    out = {}
    for k_name, entry in entries.items():
        int(str(k_name)[1:])  # "k<K>"; anything else is a malformed record (ValueError)
        values = list(entry[field])
        mask = _start_mask(entry, len(values))
        if mask is not None:
            no_start = int((~mask).sum())
            values = [v for v, m in zip(values, mask) if m] + [None] * no_start
        else:
            no_start = int(entry.get("no_start", 0) or 0) if family != "pgd" else 0
        finite = [v for v in values if v is not None]
        grid = tuple(entry.get("eps") or ()) if family == "pgd" else ()
        top = max(grid or (0.0,)) if family == "pgd" else max(finite, default=0.0) * 1.05
        xs = np.unique(np.concatenate([np.linspace(0.0, top if top > 0 else 1.0, 401), grid]))
        out[k_name] = Curve(xs, accuracy_curve(values, xs, no_start), len(values) - no_start, no_start, grid)
    return out


def _record_curves(record: Mapping[str, Any]) -> dict[str, dict[str, Curve]]:
    """Every panel kind's curves of one record; a malformed ``details`` is one clear error naming the record."""
    try:
        return {kind: curves(record.get("details") or {}, kind) for kind in PANELS}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        name = plain((record.get("model") or {}).get("name", "?"))
        raise JembenchError(f"robustness record of {name} has malformed details ({type(exc).__name__}: "
                            f"{plain(exc, 80)}); regenerate it with `jembench eval --suite robustness`") from None


def _by_k(items: Mapping[str, Curve]) -> list[tuple[int, Curve]]:
    return sorted(((int(name[1:]), c) for name, c in items.items()), key=lambda kv: kv[0])


def _linf_axis(ax, top: float) -> None:
    """L∞ ticks in /255 (as tables print ε: :func:`jembench.metric_keys.eps_label`), 4–6 of them."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    span = max(top * 255, 1.0)
    step = next((s for s in (1, 2, 4, 8, 16, 32, 64, 128) if span / s <= 5), 255)
    ax.xaxis.set_major_locator(MultipleLocator(step / 255))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: metric_keys.eps_label(v)))


def check_robustness_records(records: Sequence[Mapping[str, Any]]) -> None:
    """Refuse what cannot be drawn as robustness curves: no records, or a record of another suite."""
    if not records:
        raise JembenchError("no robustness records to plot; pass record files written by `jembench eval "
                            "--suite robustness`")
    for rec in records:
        if rec.get("suite") != "robustness":
            raise JembenchError(f"record of {plain(rec.get('model', {}).get('name', '?'))} is a "
                                f"{plain(rec.get('suite'))!r} record; pass robustness records")


def _legend_texts(table, labels: list[str], kind: str, room: float) -> list[str]:
    """One legend entry per record and K, each fitted to ``room`` points (two lines at most)."""
    several = len(labels) > 1
    texts = []
    for t, label in zip(table, labels):
        for k, c in _by_k(t[kind]):
            parts = [f"{label} K={k}" if several else f"K={k}"]
            if PANELS[kind][0] != "pgd":
                parts.append(f"n = {c.n}" + (f" ({c.no_start} without a start point left out)" if c.no_start
                                             else ""))
            texts.append(fit(parts, room, SMALL_PT, 2, sep=", "))
    return texts


def draw_robustness(records: Sequence[Mapping[str, Any]], kinds: list[str] | None = None,
                    labels: list[str] | None = None):
    """The curves as a :class:`matplotlib.figure.Figure` (:func:`robustness_figure` saves it); see there."""
    check_robustness_records(records)
    table = [_record_curves(rec) for rec in records]  # per record: {kind: {"k<K>": curve}}
    kinds = kinds or [k for k in PANELS if any(t[k] for t in table)]
    if not kinds:
        raise JembenchError("the records hold no robustness curves; regenerate them with `jembench eval`")
    labels = [drawable(x, RECORD_LABEL) for x in (labels or [r["model"]["name"] for r in records])]
    several = len(records) > 1
    cols = min(2, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    width = COLUMN if cols == 1 else PAGE
    legend_cols = {kind: 1 if PANELS[kind][0] != "pgd" else (2 if several else 3) for kind in kinds}
    with style():
        # a legend is centred under its panel and must stay within the panel's share of the width
        share = width * 72 / cols - 0.45 * 72
        legends = {kind: _legend_texts(table, labels, kind, share / legend_cols[kind] - 4.0 * SMALL_PT)
                   for kind in kinds}
        legend_rows = max(math.ceil(sum(t.count("\n") + 1 for t in legends[kind]) / legend_cols[kind])
                          for kind in kinds)
        datasets = sorted({record_dataset_label(r) for r in records})
        suptitle = fit(["robustness" if several else labels[0], *datasets], width * 72 - 12, TITLE_PT, 2)
        fig = figure(width, 0.3 + 0.16 * suptitle.count("\n") + (2.1 + 0.15 * legend_rows) * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, kind in zip(axes, kinds):
            family = PANELS[kind][0]
            ns = set()
            entries = iter(legends[kind])
            for r_i, t in enumerate(table):
                for k_i, (k, c) in enumerate(_by_k(t[kind])):
                    ns.add(c.n)
                    line, = ax.plot(c.x, c.accuracy, DASHES[r_i % len(DASHES)], color=CYCLE[k_i % len(CYCLE)],
                                    label=next(entries))
                    if c.grid:
                        at = np.searchsorted(c.x, c.grid)
                        ax.plot(c.x[at], c.accuracy[at], "o", color=line.get_color(), ms=3)
            top = max((c.x[-1] for t in table for c in t[kind].values()), default=1.0)
            if kind == "linf":
                _linf_axis(ax, top)
            ax.set_xlim(0, top)
            ax.set_ylabel("accuracy %")
            ax.set_ylim(0, 100)
            ax.grid(True)
            ax.set_title(f"{TITLES[kind]} · n = {ns.pop()}" if family == "pgd" and len(ns) == 1 else TITLES[kind])
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=legend_cols[kind], handlelength=1.8,
                      columnspacing=1.0)
        for ax in axes[len(kinds):]:
            ax.axis("off")
        fig.suptitle(suptitle)
        fig.draw_without_rendering()  # lay out, so the axis labels can be wrapped to their panels
        for ax, kind in zip(axes, kinds):
            ax.set_xlabel(fit([PANELS[kind][3]], axes_width(ax), TEXT_PT, 2))
    return fig


def robustness_figure(records: Sequence[Mapping[str, Any]], target: str | Path, kinds: list[str] | None = None,
                      labels: list[str] | None = None) -> Path:
    """The robustness curves of one or several records (e.g. softmax vs JEM) on one figure, one panel per kind
    (default: every kind present): colour = refinement depth K, dash = record; written to ``target`` (PNG + PDF).

    PGD panels: robust accuracy vs ε from each input's minimal ε (markers: the protocol's ε grid, where the
    record's ``robust_acc`` metrics are). Decision-based panels: accuracy vs distance over the inputs that were
    attacked: inputs without a starting point are left out and counted in the legend ("n = 17 (3 without a start
    point left out)") instead of being drawn as robust at every distance. The title names the model (one record)
    and the datasets by their labels; legend labels are cut at :data:`RECORD_LABEL` characters."""
    return save(draw_robustness(records, kinds, labels), target)


def robustness_figures(details: Mapping[str, Any], name: str, dataset: str, figure_path: Callable[[str], Path],
                       dataset_display: str | None = None) -> list[str]:
    """The robustness suite's figures, beside its record: ``<stem>_pgd.png`` (L∞ | L2, JEM Fig. 5) and
    ``<stem>_gradient_free.png`` (boundary | pointwise, JEM Fig. 10), each with its PDF; the PNG names. The
    dataset is named by ``dataset_display`` (a record's ``dataset_label``) when given, else by its catalog label."""
    record = {"suite": "robustness", "model": {"name": name}, "dataset": dataset,
              "dataset_label": dataset_display or "", "details": details}
    written = []
    for suffix, kinds in (("pgd", ["linf", "l2"]), ("gradient_free", ["boundary", "pointwise"])):
        present = [k for k in kinds if curves(details, k)]
        if present:
            written.append(robustness_figure([record], figure_path(suffix), kinds=present).name)
    return written
