"""Every figure jembench draws, in one place and one style: PNG for the report, PDF for papers and talks.

Style (:data:`STYLE`, applied by every function here and nowhere else):
  * widths of a two-column paper: :data:`COLUMN` = 3.3 in (single column), :data:`PAGE` = 6.8 in (double column);
  * 8 pt text, 7 pt ticks and legends, 9 pt titles — readable when the PDF is placed at that width unscaled;
  * the Okabe–Ito palette (:data:`OKABE_ITO`; Okabe & Ito 2008, "Color Universal Design"), safe for the common
    colour-vision deficiencies; lines of several records also differ in dash pattern;
  * TrueType fonts embedded in the PDF (``pdf.fonttype`` 42), so text stays text in Illustrator / Inkscape.

Files (:func:`save`): every figure ``<stem>.png`` is written with ``<stem>.pdf`` (vector) beside it, both
atomically (:mod:`jembench.atomic`). A record's ``figures`` lists the PNGs — what ``jembench report`` embeds —
and :func:`vector_path` names each one's PDF. The PNG is exactly width × height inches at :data:`DPI` (the layout
is constrained, never cropped), so its pixel size is known in advance.

Every figure is drawn from plain data — what a record's ``details`` hold — so a committed record can be drawn again.
Text that comes from checkpoints, records or folders (model names, dataset folders, class names) is untrusted:
:func:`plain` shortens it and escapes matplotlib's ``$…$`` mathtext, so a name can neither break nor inject
markup. Datasets are named by their display label (``CIFAR-10``; a ``folder:PATH`` by the folder's name), never by
an absolute path.

matplotlib is imported inside the functions (through :class:`matplotlib.figure.Figure`, without pyplot, so no
global backend or figure registry is touched); importing this module does not import matplotlib or torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, catalog, metric_keys
from .errors import JembenchError
from .records import dataset_label as stored_dataset_label

#: figure widths (inches) of a two-column paper
COLUMN = 3.3
PAGE = 6.8
#: resolution of the PNGs (the report embeds them at their natural size)
DPI = 200
#: the Okabe–Ito colour-blind-safe palette, in its usual order (black last)
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}
#: line colours, in the order series take them (yellow last: it is faint on white)
CYCLE = [OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "orange", "reddish purple", "sky blue",
                                "black", "yellow")]
#: dash patterns that tell records apart when one figure holds several
DASHES = ["-", "--", ":", "-."]
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7,
    "figure.titlesize": 9, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.2,
    "lines.markersize": 3.5, "hatch.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.4,
    "axes.prop_cycle": None,  # set in _style (needs matplotlib's cycler)
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "image.interpolation": "none",
    "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
}
#: tiles of sample grids are enlarged (nearest neighbour, whole multiples) to at least this many pixels
TILE_PX = 64
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


# ----------------------------------------------------------------------------------------------- text
def short(text: Any, limit: int = 48) -> str:
    """Untrusted text as a short label: one line of printable characters, at most ``limit`` of them."""
    s = "".join(c for c in " ".join(str(text).split()) if c.isprintable())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def plain(text: Any, limit: int = 48) -> str:
    """Untrusted text as a safe matplotlib label: :func:`short`, with ``$`` escaped (no mathtext)."""
    return short(text, limit).replace("$", r"\$")


def dataset_label(name: str, label: str | None = None) -> str:
    """How figures and captions name a dataset or OOD set (unescaped: pass it through :func:`plain` to draw it):
    ``label`` when given (a record's ``dataset_label``), else :func:`jembench.catalog.label` (``cifar10`` →
    CIFAR-10, ``uniform`` → Uniform, a ``folder:PATH`` by the folder's name — never the path), shortened."""
    return short(label or catalog.label(name))


def record_dataset_label(record: Mapping[str, Any]) -> str:
    """:func:`jembench.records.dataset_label` of a record, shortened for a figure."""
    return short(stored_dataset_label(dict(record)))


def caption(file_name: str) -> str:
    """What a figure file written by a suite shows (:data:`CAPTIONS`), from its name; '' when unknown."""
    stem = f"_{Path(file_name).stem}"
    for part, text in CAPTIONS.items():  # "x_" matches inside the name, "x" at its end
        if (f"_{part}" in stem) if part.endswith("_") else stem.endswith(f"_{part}"):
            return text
    return ""


# ---------------------------------------------------------------------------------------------- files
def vector_path(png: str | Path) -> Path:
    """The PDF written beside a figure's PNG."""
    return Path(png).with_suffix(".pdf")


def files_of(png: str | Path) -> list[Path]:
    """A figure's files that exist: the PNG and its PDF (what to copy when a record moves)."""
    return [p for p in (Path(png), vector_path(png)) if p.is_file()]


def _pair(target: str | Path) -> tuple[Path, Path]:
    target = Path(target)
    if target.suffix.lower() not in (".png", ".pdf"):
        raise JembenchError(f"figure file {target} must end in .png (its vector copy is written beside it as "
                            f".pdf); e.g. {target.with_suffix('.png')}")
    return target.with_suffix(".png"), target.with_suffix(".pdf")


def save(fig, target: str | Path) -> Path:
    """Write ``fig`` as ``<stem>.png`` (:data:`DPI`) and ``<stem>.pdf``, atomically; returns the PNG path.
    Metadata that changes from run to run (creation date, software version) is left out, so an unchanged figure
    gives unchanged files."""
    png, pdf = _pair(target)
    atomic.write_bytes(pdf, lambda tmp: fig.savefig(tmp, format="pdf", metadata={"CreationDate": None,
                                                                                  "Creator": None,
                                                                                  "Producer": None}))
    atomic.write_bytes(png, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}))
    return png


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib
    from cycler import cycler

    with matplotlib.rc_context({**STYLE, "axes.prop_cycle": cycler(color=CYCLE)}):
        yield


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (imported by the caller, never here)
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------------- reliability diagram
def reliability_diagram(bins: Sequence[Mapping[str, float]], path: str | Path, *, ece: float, model: str = "",
                        dataset: str = "", dataset_display: str | None = None) -> Path:
    """JEM Fig. 4 style, with a confidence histogram under it (as netcal's ReliabilityDiagram draws it).

    ``bins`` is the record's per-bin table (``details["bins"]``: lower, upper, count, accuracy, confidence;
    empty bins NaN); ``ece`` the record's ECE in % (``metrics["ece"]``), shown in the title as computed — not
    recomputed here. Top: accuracy per non-empty bin (bars); the gap to the bin's mean confidence, coloured by
    its sign — over-confident (confidence > accuracy) or under-confident — with the share of inputs in such bins
    in the legend; the diagonal. Bottom: inputs per bin (count), so sparse bins are visible as such. The title
    names ``model`` and ``dataset`` (its display label; ``dataset_display``, e.g. a record's ``dataset_label``,
    overrides it)."""
    rows = [b for b in bins if b.get("count")]
    n = int(sum(b["count"] for b in rows))
    n_bins = len(bins)
    with _style():
        fig = _figure(COLUMN, 3.9)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.15])
        lefts = [b["lower"] for b in rows]
        widths = [b["upper"] - b["lower"] for b in rows]
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
            top.bar(np.array(lefts)[pick], gaps[pick], bottom=acc[pick], width=np.array(widths)[pick],
                    align="edge", facecolor="none", edgecolor=colour, hatch=hatch, linewidth=0.6,
                    label=f"{name} gap ({share:.0f}% of inputs)")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        title = " · ".join(t for t in (plain(model), plain(dataset_label(dataset, dataset_display)) if dataset else "")
                            if t)
        ece_text = "nan" if ece is None or math.isnan(ece) else f"{ece:.2f}%"
        top.set_title((f"{title}\n" if title else "") + f"ECE = {ece_text} ({n_bins} bins, n = {n})")
        fig.legend(*top.get_legend_handles_labels(), loc="outside lower center", ncols=2, handlelength=1.4,
                   columnspacing=0.8, handletextpad=0.4)
        bottom.bar(lefts, counts, width=widths, align="edge", color=OKABE_ITO["sky blue"], edgecolor="white",
                   linewidth=0.4)
        bottom.set_ylabel("inputs per bin")
        bottom.set_xlabel(r"confidence  max$_y$ p(y|x)")
        bottom.set_ylim(0, max(counts.max() if len(counts) else 1.0, 1.0) * 1.08)
        return save(fig, path)


# ------------------------------------------------------------------------------------- OOD histograms
def score_histograms(score_in, scores_out: Mapping[str, Any], path: str | Path, *, label: str, in_name: str,
                     bins: int = 100, aurocs: Mapping[str, float] | None = None,
                     in_display: str | None = None) -> Path:
    """JEM Table 2 figure: one panel per OOD set, the in-distribution scores vs that set's, on shared bins.

    y = share of the set's inputs per bin (each histogram sums to 1, so a set of 500 and one of 10,000 compare,
    and the single-point Constant set is one bar of height 1). Non-finite scores are left out and counted in the
    panel. The legend sits above the panels, never on the data; AUROC is in each panel's title."""
    names = list(scores_out) or ["(no OOD set)"]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    width = COLUMN if cols == 1 else PAGE
    s_in_all = np.asarray(_numpy(score_in), dtype=np.float64).ravel()
    s_in = s_in_all[np.isfinite(s_in_all)]
    in_text = plain(dataset_label(in_name, in_display))
    with _style():
        fig = _figure(width, 0.45 + 1.75 * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        handles = None
        for ax, name in zip(axes, names):
            raw = np.asarray(_numpy(scores_out[name]), dtype=np.float64).ravel() if name in scores_out else \
                np.empty(0)
            s_out = raw[np.isfinite(raw)]
            both = np.concatenate([s_in, s_out])
            edges = np.histogram_bin_edges(both, bins=bins) if len(both) else bins
            h_in = ax.hist(s_in, bins=edges, weights=np.full(len(s_in), 1 / max(1, len(s_in))),
                           histtype="stepfilled", alpha=0.55, color=OKABE_ITO["blue"], linewidth=0)
            h_out = ax.hist(s_out, bins=edges, weights=np.full(len(s_out), 1 / max(1, len(s_out))),
                            histtype="step", color=OKABE_ITO["vermillion"], linewidth=1.0)
            handles = handles or (h_in[2][0], h_out[2][0])
            auroc = (aurocs or {}).get(name)
            title = plain(dataset_label(name)) if name in scores_out else name
            if auroc is not None and not math.isnan(auroc):
                title += f" · AUROC {auroc:.3f}"
            dropped = (len(s_in_all) - len(s_in)) + (len(raw) - len(s_out))
            ax.set_title(f"{title}\nn = {len(raw)}" + (f", {dropped} non-finite left out" if dropped else ""))
            ax.set_xlabel(plain(label, 60))
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("share of inputs")
            ax.margins(y=0.08)
        for ax in axes[len(names):]:
            ax.axis("off")
        if handles:
            fig.legend(handles, [f"in-distribution: {in_text} (n = {len(s_in)})", "OOD: the set in the title"],
                       loc="outside upper center", ncols=2)
        return save(fig, path)


# ---------------------------------------------------------------------------------------- sample grids
def _uint8_images(images) -> np.ndarray:
    """(N, C, H, W) uint8 RGB; float images in [-1, 1] are quantized by the one quantization function
    (:func:`jembench.metrics.fidelity.to_uint8_rgb`)."""
    if hasattr(images, "detach") and images.is_floating_point():  # a float torch tensor
        from .metrics.fidelity import to_uint8_rgb

        images = to_uint8_rgb(images.detach().cpu())
    a = _numpy(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) uint8 images with C in (1, 3), got {a.dtype} {a.shape}")
    return np.repeat(a, 3, axis=1) if a.shape[1] == 1 else a


def _class_rows(labels: np.ndarray, n: int) -> tuple[list[list[int]], list[int]]:
    """Indices per row (one row per class present, in class order, the first — most confident — images of each)
    and each row's class, with at most ``n`` tiles in all (at least 4 per row)."""
    classes = sorted(set(labels.tolist()))
    per_row = max(1, min(10, max(4, n // max(1, len(classes)))))
    classes = classes[:max(1, n // per_row)]
    rows = [[i for i in np.flatnonzero(labels == c)[:per_row].tolist()] for c in classes]
    return rows, classes


def sample_grid(images, path: str | Path, *, n: int = 100, labels=None,
                class_names: Sequence[str] | None = None) -> Path:
    """A grid of up to ``n`` samples, each tile enlarged by a whole factor (nearest neighbour) to at least
    :data:`TILE_PX` pixels. ``images``: (N, C, H, W) uint8 RGB, or float in [-1, 1].

    Without ``labels``: a square grid of the first ``n``. With ``labels`` (class per image, e.g. the predicted
    class of conditional samples): one row per class, labelled with its name (``class_names[c]`` when known, else
    the index), in class order, the first images of each class (pass them most confident first). The PNG maps
    every image pixel to whole device pixels (no resampling); the PDF embeds the same raster."""
    x = _uint8_images(images if labels is not None else images[:n])  # a whole replay buffer: quantize n only
    _, _, h, w = x.shape
    scale = max(1, math.ceil(TILE_PX / max(1, min(h, w))))
    pad = 2
    if labels is not None:
        lab = np.asarray(_numpy(labels)).astype(np.int64).ravel()
        rows, classes = _class_rows(lab, n)
        names = [plain(class_names[c] if class_names is not None and 0 <= c < len(class_names) else c, 16)
                 for c in classes]
        ncols = max(len(r) for r in rows) if rows else 1
    else:
        k = min(n, len(x))
        ncols = max(1, math.ceil(math.sqrt(k)))
        rows = [list(range(i, min(k, i + ncols))) for i in range(0, k, ncols)] or [[]]
        names = []
    th, tw = h * scale, w * scale
    grid = np.full((len(rows) * (th + pad) + pad, ncols * (tw + pad) + pad, 3), 255, dtype=np.uint8)
    for r, idx in enumerate(rows):
        for c, i in enumerate(idx):
            tile = x[i].transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)
            top, left = pad + r * (th + pad), pad + c * (tw + pad)
            grid[top:top + th, left:left + tw] = tile
    gh, gw = grid.shape[:2]
    margin = 0
    if names:  # room for the row labels, in whole pixels: ~0.62 em per character at 8 pt
        margin = int(math.ceil((max(map(len, names)) * 0.62 * 8 + 6) / 72 * DPI))
    with _style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=((gw + margin) / DPI, gh / DPI), dpi=DPI)
        ax = fig.add_axes((margin / (gw + margin), 0, gw / (gw + margin), 1))
        ax.imshow(grid, interpolation="none", aspect="auto", extent=(0, gw, gh, 0))
        ax.set_xticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if names:
            ax.set_yticks([pad + r * (th + pad) + th / 2 for r in range(len(rows))], names)
            ax.tick_params(axis="y", length=0, pad=2)
        else:
            ax.set_yticks([])
        return save(fig, path)


# ---------------------------------------------------------------------------------- robustness curves
#: panel kind -> (details family, norm, per-input field, x-axis label)
PANELS = {
    "linf": ("pgd", "linf", "min_eps", "PGD L∞ ε ([0, 1] pixels)"),
    "l2": ("pgd", "l2", "min_eps", "PGD L2 ε ([0, 1] pixels)"),
    "boundary": ("boundary", None, "l2", "boundary attack: L2 distance ([0, 1] pixels)"),
    "pointwise": ("pointwise", None, "l0", "pointwise attack: L0 distance (changed entries)"),
}


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
    """L∞ ticks in /255, 4–6 of them."""
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


def robustness_figure(records: Sequence[Mapping[str, Any]], target: str | Path, kinds: list[str] | None = None,
                      labels: list[str] | None = None) -> Path:
    """The robustness curves of one or several records (e.g. softmax vs JEM) on one figure, one panel per kind
    (default: every kind present): colour = refinement depth K, dash = record.

    PGD panels: robust accuracy vs ε from each input's minimal ε (markers: the protocol's ε grid, where the
    record's ``robust_acc`` metrics are). Decision-based panels: accuracy vs distance over the inputs that were
    attacked: inputs without a starting point are left out and counted in the legend ("n = 17 (3 without a start
    point left out)") instead of being drawn as robust at every distance."""
    check_robustness_records(records)
    table = [_record_curves(rec) for rec in records]  # per record: {kind: {"k<K>": curve}}
    kinds = kinds or [k for k in PANELS if any(t[k] for t in table)]
    if not kinds:
        raise JembenchError("the records hold no robustness curves; regenerate them with `jembench eval`")
    labels = [plain(x, 24) for x in (labels or [r["model"]["name"] for r in records])]
    several = len(records) > 1
    cols = min(2, len(kinds))
    rows = math.ceil(len(kinds) / cols)
    n_k = max(len(t[kind]) for t in table for kind in kinds)
    legend_cols = {kind: 1 if PANELS[kind][0] != "pgd" else (2 if several else 3) for kind in kinds}
    legend_rows = max(math.ceil(len(records) * n_k / legend_cols[kind]) for kind in kinds)
    with _style():
        fig = _figure(COLUMN if cols == 1 else PAGE, 0.3 + (2.1 + 0.15 * legend_rows) * rows)
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, kind in zip(axes, kinds):
            family = PANELS[kind][0]
            ns = set()
            for r_i, (t, label) in enumerate(zip(table, labels)):
                for k_i, (k, c) in enumerate(_by_k(t[kind])):
                    ns.add(c.n)
                    text = f"{label} K={k}" if several else f"K={k}"
                    if family != "pgd":
                        text += f", n = {c.n}" + (f" ({c.no_start} without a start point left out)" if c.no_start
                                                  else "")
                    line, = ax.plot(c.x, c.accuracy, DASHES[r_i % len(DASHES)], color=CYCLE[k_i % len(CYCLE)],
                                    label=text)
                    if c.grid:
                        at = np.searchsorted(c.x, c.grid)
                        ax.plot(c.x[at], c.accuracy[at], "o", color=line.get_color(), ms=3)
            top = max((c.x[-1] for t in table for c in t[kind].values()), default=1.0)
            if kind == "linf":
                _linf_axis(ax, top)
            ax.set_xlim(0, top)
            ax.set_xlabel(PANELS[kind][3])
            ax.set_ylabel("accuracy %")
            ax.set_ylim(0, 100)
            ax.grid(True)
            name = {"linf": "PGD L∞", "l2": "PGD L2", "boundary": "boundary (L2)", "pointwise": "pointwise (L0)"}[kind]
            ax.set_title(f"{name} · n = {ns.pop()}" if family == "pgd" and len(ns) == 1 else name)
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=legend_cols[kind], handlelength=1.8,
                      columnspacing=1.0)
        for ax in axes[len(kinds):]:
            ax.axis("off")
        datasets = sorted({plain(record_dataset_label(r)) for r in records})
        fig.suptitle(f"{'robustness' if several else labels[0]} · {', '.join(datasets)}")
        return save(fig, target)


def robustness_figures(details: Mapping[str, Any], name: str, dataset: str,
                       figure_path: Callable[[str], Path], dataset_label: str = "") -> list[str]:
    """The robustness suite's figures, beside its record: ``<stem>_pgd.png`` (L∞ | L2, JEM Fig. 5) and
    ``<stem>_gradient_free.png`` (boundary | pointwise, JEM Fig. 10), each with its PDF; the PNG names.
    ``dataset_label``: the dataset's display label (the record's ``dataset_label``)."""
    record = {"suite": "robustness", "model": {"name": name}, "dataset": dataset, "dataset_label": dataset_label,
              "details": details}
    written = []
    for suffix, kinds in (("pgd", ["linf", "l2"]), ("gradient_free", ["boundary", "pointwise"])):
        present = [k for k in kinds if curves(details, k)]
        if present:
            written.append(robustness_figure([record], figure_path(suffix), kinds=present).name)
    return written


# --------------------------------------------------------------------------------------------- redraw
def redraw(record: Mapping[str, Any], folder: str | Path) -> list[str]:
    """Draw the figures of a calibration or robustness record again from its ``details`` into ``folder``, under
    the names its ``figures`` lists — to restyle committed records without re-running them (their numbers stay
    as they are). OOD histograms and sample grids are drawn from per-input scores and images, which records do
    not hold; for those suites nothing is drawn. Returns the PNG names written."""
    folder, names = Path(folder), [str(n) for n in record.get("figures") or []]
    model, dataset = str(record["model"]["name"]), str(record.get("dataset", ""))
    if record.get("suite") == "calibration" and names:
        reliability_diagram(record["details"]["bins"], folder / names[0], ece=record["metrics"]["ece"], model=model,
                            dataset=dataset, dataset_display=stored_dataset_label(dict(record)))
        return names[:1]
    if record.get("suite") == "robustness":
        def path(suffix: str) -> Path:
            return folder / next((n for n in names if n.endswith(f"_{suffix}.png")), f"robustness_{suffix}.png")

        return robustness_figures(record["details"], model, dataset, path, stored_dataset_label(dict(record)))
    return []
