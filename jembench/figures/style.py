"""The one style of jembench's figures, pinned so that a figure comes out the same on every machine.

  * widths of a two-column paper: :data:`COLUMN` = 3.3 in (single column), :data:`PAGE` = 6.8 in (double column);
  * 8 pt text, 7 pt ticks and legends, 9 pt titles — readable when the PDF is placed at that width unscaled;
  * the Okabe–Ito palette (:data:`OKABE_ITO`; Okabe & Ito 2008, "Color Universal Design"), safe for the common
    colour-vision deficiencies; lines of several records also differ in dash pattern;
  * TrueType fonts embedded in the PDF (``pdf.fonttype`` 42), so text stays text in Illustrator / Inkscape.

Determinism (what jembench controls; matplotlib's own version still shows in the pixels): :func:`style` starts
from matplotlib's built-in defaults, not from the user's ``matplotlibrc`` or an earlier ``rcParams`` change (a
``savefig.bbox: tight`` there would crop the figures, a ``text.usetex`` would need LaTeX), and pins every font to
:data:`FONT` — the DejaVu Sans that ships inside matplotlib, for text and mathtext, with no fallback family — so
fonts installed on the system (Liberation, Noto, …) are never picked, not even for a glyph DejaVu lacks
(:func:`jembench.figures.labels.plain` replaces such glyphs). ``svg.hashsalt`` is fixed so SVG ids do not change
from run to run; :mod:`jembench.figures.files` leaves dates and software versions out of the PNG and PDF.

matplotlib is imported inside the functions (through :class:`matplotlib.figure.Figure`, without pyplot, so no
global backend or figure registry is touched).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

#: figure widths (inches) of a two-column paper
COLUMN = 3.3
PAGE = 6.8
#: resolution of the PNGs (the report embeds them at their natural size)
DPI = 200
#: the one font family of every text, the copy bundled with matplotlib (resolved by matplotlib before any
#: system font of the same name, which it lists after its own)
FONT = "DejaVu Sans"
#: the Okabe–Ito colour-blind-safe palette, in its usual order (black last)
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}
#: line colours, in the order series take them (yellow last: it is faint on white)
CYCLE = [OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "orange", "reddish purple", "sky blue",
                                "black", "yellow")]
#: dash patterns that tell records apart when one figure holds several
DASHES = ["-", "--", ":", "-."]
#: point sizes of titles, body text and small text (ticks, legends)
TITLE_PT, TEXT_PT, SMALL_PT = 9, 8, 7
STYLE: dict[str, Any] = {
    # fonts: one family, no fallback list to reach the system's fonts; mathtext in the same bundled family
    "font.family": [FONT], "font.sans-serif": [FONT], "mathtext.fontset": "dejavusans", "mathtext.fallback": None,
    "text.usetex": False,
    "font.size": TEXT_PT, "axes.titlesize": TITLE_PT, "axes.labelsize": TEXT_PT, "xtick.labelsize": SMALL_PT,
    "ytick.labelsize": SMALL_PT, "legend.fontsize": SMALL_PT, "legend.title_fontsize": SMALL_PT,
    "figure.titlesize": TITLE_PT, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "lines.linewidth": 1.2,
    "lines.markersize": 3.5, "hatch.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.4,
    "axes.prop_cycle": None,  # set in style() (needs matplotlib's cycler)
    "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "svg.hashsalt": "jembench",
    "image.interpolation": "none",
    "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """matplotlib's built-in defaults (whatever the user's matplotlibrc says), then :data:`STYLE`; restored on
    exit. Drawing and saving happen inside it (mathtext and hinting read ``rcParams`` at draw time)."""
    import matplotlib.style
    from cycler import cycler

    with matplotlib.style.context(["default", {**STYLE, "axes.prop_cycle": cycler(color=CYCLE)}]):
        yield


def figure(width: float, height: float):
    """A constrained-layout figure of exactly ``width`` × ``height`` inches at :data:`DPI` (never cropped)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def as_numpy(x):
    """An array from a numpy array, a list or a torch tensor (never imports torch)."""
    import numpy as np

    if hasattr(x, "detach"):  # a torch tensor (imported by the caller, never here)
        x = x.detach().cpu().numpy()
    return np.asarray(x)
