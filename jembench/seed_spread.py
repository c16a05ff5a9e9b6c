"""The between-seed spread of a baseline: how far one new training run may fall from the mean of k earlier runs.

A CI job that *retrains* its model gets another model each time: seed, thread count and float reduction order
change the weights, and on the very same test inputs the metrics move by more than their sampling error. A
baseline for such a job is therefore a distribution — k runs of the same recipe with different seeds (``make
baseline-seeds``: ``results/runs/demo-seeds/``) — and the question ``jembench check`` asks is whether the new run
could be one more draw from it.

That is a *prediction* interval, not a confidence interval for the mean: with k baseline values y₁ … y_k (mean
ȳ, sample standard deviation s) and a new run y drawn from the same normal distribution N(μ, σ²), independently,

    (y − ȳ) / (s · √(1 + 1/k))  ~  Student t with k − 1 degrees of freedom,

because Var(y − ȳ) = σ² + σ²/k and (k − 1)s²/σ² ~ χ²_{k−1} is independent of both (e.g. Hahn & Meeker,
*Statistical Intervals*, 1991, §4.7; NIST/SEMATECH e-Handbook §7.2.6.3). The t-interval *of the seed mean*,
t · s / √k, would answer "is the mean of many new runs different", which a job that makes one run cannot ask: it
shrinks to 0 as k grows, while the spread of a single new run never falls below σ. ``check`` uses the one-sided
bound at the tail probability its tolerance's ``z`` stands for (p = Φ(−z), 0.00135 at z = 3), so a rule reads
the same with or without seeds: ``y`` regresses when it is worse than ȳ by more than
``t_{k−1}(1 − p) · s · √(1 + 1/k)``. With few seeds the bound is wide — at z = 3, t · √(1 + 1/k) is 10.3 for
k = 4, 4.8 for k = 8, 4.3 for k = 10 and tends to 3 — the price of estimating σ from k values; k = 2 gives a
useless bound (289 s), as it should.

The spread of runs that were all evaluated on the same inputs (the same protocol and evaluation seed) already
holds the model-by-input part of the sampling noise, and the common part cancels in y − ȳ when the new run is
evaluated on those inputs too. The interval is used alongside the metric's sampling-error rule
(:mod:`jembench.sampling_error`; :func:`jembench.check.compare_baseline` says which of the two set each row's
tolerance): the larger of the two when the inputs are the same (the sampling rule then acts as a floor — s is
itself estimated from k values and is 0 when every seed scored the same, e.g. an AUROC of 1.0), both combined
in quadrature when the new run was evaluated on other inputs (the two variances add).

Torch-free; scipy is imported on first use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SeedSpread:
    """The prediction bound for one new run from ``k`` baseline values (``mean``, ``sd`` with ddof = 1)."""

    k: int
    mean: float
    sd: float
    t: float  # the Student-t quantile t_{k-1}(1 - p)
    half_width: float  # t · sd · √(1 + 1/k)

    def label(self) -> str:
        """How a check row names the rule: ``seeds k=10 t=4.3``."""
        return f"seeds k={self.k} t={self.t:.3g}"


def one_sided_tail(z: float) -> float:
    """The one-sided tail probability a normal quantile ``z`` stands for, Φ(−z)."""
    from scipy.stats import norm

    return float(norm.sf(z))


def prediction_bound(values: Sequence[float], z: float = 3.0) -> SeedSpread | None:
    """The one-sided prediction bound for one new run, at tail probability Φ(−``z``), from the baseline runs'
    ``values`` (see the module docstring); None with fewer than two finite values (no spread to estimate)."""
    from scipy.stats import t as student_t

    finite = [float(v) for v in values if math.isfinite(v)]
    k = len(finite)
    if k < 2 or not z > 0:
        return None
    mean = math.fsum(finite) / k
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (k - 1))
    t = float(student_t.ppf(1.0 - one_sided_tail(z), k - 1))
    return SeedSpread(k, mean, sd, t, t * sd * math.sqrt(1.0 + 1.0 / k))
