"""Statistical tests for comparing two evaluations of the same benchmark (torch-free: numpy, scipy, statsmodels).

Two numbers measured on the *same* test inputs are paired: most of the sampling noise (which inputs happened to
be in the test set) is common to both, and a paired test sees differences far smaller than an unpaired one at the
same false-alarm rate. Every function here returns a :class:`Difference` — the difference ``b − a`` of a metric
with its 95 % confidence interval (or another level), a two-sided p-value, both one-sided p-values, the name of
the test and whether it was paired:

* :mod:`.proportions` — accuracies: McNemar's exact test on the discordant pairs (statsmodels) with Newcombe's
  paired score interval; unpaired: the two-proportion score test and Newcombe's interval (statsmodels).
* :mod:`.delong` — AUROCs: DeLong's test for correlated AUROCs (the O(n log n) algorithm of Sun & Xu 2014);
  unpaired: DeLong variances of independent samples, or Hanley & McNeil's when only sizes are known.
* :mod:`.bootstrap` — ECE, NLL, AUPR, FPR@95: a seeded, vectorised bootstrap over the inputs
  (``scipy.stats.bootstrap``), paired (the same resampled inputs for both) or independent (unpaired).
* :mod:`.multiple` — Holm's step-down adjustment over several metrics (statsmodels ``multipletests``) and the
  t-interval of a mean over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scipy import stats as _stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """``b − a`` of one metric, with its uncertainty.

    ``ci``: the two-sided confidence interval of ``b − a`` at ``confidence``. ``p``: two-sided p-value of H0
    "no difference"; ``p_less`` / ``p_greater``: one-sided p-values for H1 ``b < a`` / ``b > a``. ``test``: the
    name of the test as printed; ``paired``: whether it used the pairing of the inputs. ``n``: the inputs it
    rests on (text, e.g. ``"10000"`` or ``"10000 + 2000"``)."""

    a: float
    b: float
    ci: tuple[float, float]
    p: float
    p_less: float
    p_greater: float
    test: str
    paired: bool
    n: str = ""
    confidence: float = CONFIDENCE

    @property
    def diff(self) -> float:
        return self.b - self.a

    def scaled(self, factor: float) -> Difference:
        """The same comparison with the metric in other units (fractions → percent: ``factor = 100``)."""
        return replace(self, a=self.a * factor, b=self.b * factor, ci=(self.ci[0] * factor, self.ci[1] * factor))


def z_test(a: float, b: float, se: float, ci: tuple[float, float] | None, test: str, paired: bool, n: str,
           confidence: float = CONFIDENCE) -> Difference:
    """A :class:`Difference` from a normal approximation: z = (b − a) / se. ``ci`` None = b − a ± z·se.
    se = 0 with no difference gives p = 1 (two identical evaluations); se = 0 with a difference p = 0."""
    d = b - a
    if not (math.isfinite(d) and math.isfinite(se)):
        nan = math.nan
        return Difference(a, b, (nan, nan), nan, nan, nan, test, paired, n, confidence)
    if se <= 0:
        p_less = 1.0 if d >= 0 else 0.0
        p_greater = 1.0 if d <= 0 else 0.0
        p = 1.0 if d == 0 else 0.0
        return Difference(a, b, ci or (d, d), p, p_less, p_greater, test, paired, n, confidence)
    z = d / se
    if ci is None:
        half = _stats.norm.ppf(0.5 + confidence / 2) * se
        ci = (d - half, d + half)
    ci = (float(ci[0]), float(ci[1]))
    return Difference(a, b, ci, float(2 * _stats.norm.sf(abs(z))), float(_stats.norm.cdf(z)),
                      float(_stats.norm.sf(z)), test, paired, n, confidence)
