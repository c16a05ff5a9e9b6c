"""Every figure jembench draws, one concept per module, in one pinned style: PNG for the report, PDF for papers.

=================================  =====================================================================
:mod:`~jembench.figures.style`     sizes, palette, fonts and ``rcParams``, pinned (same output anywhere)
:mod:`~jembench.figures.files`     ``<stem>.png`` + ``<stem>.pdf``, atomic, without dates or versions
:mod:`~jembench.figures.labels`    untrusted text made inert; long labels wrapped to their room; captions
:mod:`~.reliability`               reliability diagram + confidence histogram (calibration suite)
:mod:`~.ood_histograms`            OOD score histograms, drawn from binned data records keep (OOD suite)
:mod:`~.sample_grids`              pixel-exact sample grids, one labelled row per class (generation)
:mod:`~.robustness_curves`         robust accuracy vs ε / distance (robustness suite, robustness-plot)
:mod:`~jembench.figures.redraw`    a record's figures drawn again from its ``details``
=================================  =====================================================================

Every figure is drawn from plain data — what a record's ``details`` hold — by a ``draw_*`` function that returns
the :class:`matplotlib.figure.Figure` (what the tests inspect: the data drawn, the labels, the text extents) and
saved by the function the suites call (:func:`reliability_diagram`, :func:`score_histograms`, :func:`sample_grid`,
:func:`robustness_figure`). matplotlib is imported inside the functions (through
:class:`matplotlib.figure.Figure`, without pyplot, so no global backend or figure registry is touched); importing
this package imports neither matplotlib nor torch.
"""

from .files import files_of, save, vector_path
from .labels import CAPTIONS, caption, dataset_label, fit, plain, record_dataset_label, short
from .ood_histograms import draw_score_histograms, histogram_data, score_histograms
from .redraw import redraw
from .reliability import draw_reliability, reliability_diagram
from .robustness_curves import (PANELS, Curve, accuracy_curve, check_robustness_records, curves, draw_robustness,
                                robustness_figure, robustness_figures)
from .sample_grids import TILE_PX, draw_sample_grid, sample_grid
from .style import COLUMN, CYCLE, DASHES, DPI, FONT, OKABE_ITO, PAGE, STYLE, style

__all__ = ["CAPTIONS", "COLUMN", "CYCLE", "DASHES", "DPI", "FONT", "OKABE_ITO", "PAGE", "PANELS", "STYLE", "TILE_PX",
           "Curve", "accuracy_curve", "caption", "check_robustness_records", "curves", "dataset_label",
           "draw_reliability", "draw_robustness", "draw_sample_grid", "draw_score_histograms", "files_of", "fit",
           "histogram_data", "plain", "record_dataset_label", "redraw", "reliability_diagram", "robustness_figure",
           "robustness_figures", "sample_grid", "save", "score_histograms", "short", "style", "vector_path"]
