"""Several metrics at once, and several seeds.

* :func:`holm` — Holm's (1979) step-down adjustment of a family of p-values (statsmodels ``multipletests``):
  rejecting every adjusted p ≤ α keeps the chance of *any* false alarm among the family ≤ α, whatever the
  dependence between the metrics (they are computed on the same inputs, so they are dependent).
* :func:`t_interval` — the mean of k independent runs (seeds) with its Student-t confidence interval
  (``scipy.stats.t``), mean ± t_{k−1} · s/√k: what a multi-seed leaderboard row and a retrained-model baseline
  report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats
from statsmodels.stats.multitest import multipletests

from . import CONFIDENCE


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order; NaN p-values stay NaN and are left out of the family."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        out[finite] = multipletests(p[finite], method="holm")[1]
    return out.tolist()


@dataclass(frozen=True)
class SeedMean:
    """Mean, standard deviation (ddof 1) and t-interval of k runs' values."""

    mean: float
    std: float
    k: int
    ci: tuple[float, float]
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> SeedMean:
    """The mean of ``values`` (one per seed) with its Student-t interval; one value has no interval (NaN)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    k = len(x)
    if k == 0:
        return SeedMean(math.nan, math.nan, 0, (math.nan, math.nan), confidence)
    mean = float(x.mean())
    if k < 2:
        return SeedMean(mean, math.nan, 1, (math.nan, math.nan), confidence)
    std = float(x.std(ddof=1))
    half = float(_stats.t.ppf(0.5 + confidence / 2, k - 1)) * std / math.sqrt(k)
    return SeedMean(mean, std, k, (mean - half, mean + half), confidence)
