"""Sampling errors of record metrics under their protocol: what a difference between two numbers must exceed
before ``jembench check`` calls it a regression rather than noise, and the ``±`` the suites print.

Which rule applies to a metric is a fact of the metric table (:attr:`jembench.metric_keys.MetricSpec.se`):

* ``binomial`` — accuracies and robust accuracies (%) are a proportion of ``n`` inputs. The standard error is
  Wilson's score-interval half-width divided by z (Wilson 1927, JASA 22:209), from statsmodels'
  ``proportion_confint(method="wilson")``: ``SE_W = 100 · √(p(1−p)/n + z²/(4n²)) / (1 + z²/n)``. Unlike the
  normal (Wald) ``√(p(1−p)/n)`` it does not vanish at 0 % or 100 % (an attack that breaks every input on 20
  inputs is not exact), and it tends to the Wald error for large n. ``n``: ``metrics["n"]`` of accuracy /
  calibration records, ``details["n"]`` of robustness records (the length of the per-input lists
  ``details["clean"]``). The suites print ``±`` at z = 1; ``check`` uses its tolerance's z.
* ``hanley-mcneil`` — AUROC: the Hanley & McNeil (1982) standard error from the AUROC and the two set sizes
  ``details["n_in"]`` and ``details["sets"][SET]["n"]`` (:func:`auroc_standard_error`; hand-written: neither
  scikit-learn nor statsmodels has it).

Evidence is recomputed, never trusted: an error is always derived from a value and the sizes it was measured on —
never read from a standard error a record stores (``auroc_se``, robustness ``sampling_error``), which a record
from someone else could set to anything. The sizes themselves are validated when a record is loaded
(:func:`jembench.records.validate_record`: whole numbers in [1, :data:`~jembench.metric_keys.MAX_N`]).
Everything here is torch-free (``jembench check`` imports no torch); statsmodels is imported on first use.
"""

from __future__ import annotations

import math
from typing import Any

from . import metric_keys
from .records import Record

RULES = metric_keys.SE_RULES


def auroc_standard_error(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley–McNeil standard error of an AUROC A from ``n_pos`` positives and ``n_neg`` negatives:
    SE² = [A(1−A) + (n_pos−1)(Q1−A²) + (n_neg−1)(Q2−A²)] / (n_pos·n_neg), Q1 = A/(2−A), Q2 = 2A²/(1+A)."""
    if math.isnan(auroc) or n_pos < 1 or n_neg < 1:
        return math.nan
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc ** 2) + (n_neg - 1) * (q2 - auroc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def wilson_se(percent: float, n: int, z: float = 1.0) -> float:
    """Wilson score-interval half-width / z, in percentage points, of ``percent`` % of ``n`` inputs (statsmodels'
    interval at the two-sided confidence that ``z`` stands for; ``percent`` clamped to [0, 100])."""
    if not n or n < 1 or not math.isfinite(percent) or not z > 0:
        return math.nan
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    p = min(max(percent / 100.0, 0.0), 1.0)
    low, high = proportion_confint(p * n, n, alpha=2 * norm.sf(z), method="wilson")
    return 100.0 * float(high - low) / (2 * z)


def _count(value: Any) -> int | None:
    """A validated size (whole number in [1, MAX_N]) as an int, or None when the record does not give one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if value < 1 or value > metric_keys.MAX_N or value != int(value):
        return None
    return int(value)


def binomial_n(record: Record, metric: str) -> int | None:
    """How many inputs an accuracy-like ``metric`` of ``record`` was measured on, or None if it does not say."""
    metrics, details = record.get("metrics", {}), record.get("details") or {}
    if not isinstance(details, dict):
        details = {}
    key = metric_keys.parse(metric)
    if key is not None and key.family in ("clean_acc", "robust_acc"):
        return _count(details.get("n"))
    n = metrics.get("n")
    return _count(n if n is not None else details.get("n"))


def auroc_sizes(record: Record, metric: str) -> tuple[int, int] | None:
    """(in-distribution, OOD) set sizes behind ``auroc/SET/SCORE`` of an OOD record, or None."""
    key = metric_keys.parse(metric)
    details = record.get("details") or {}
    if key is None or key.family != "ood" or not isinstance(details, dict):
        return None
    sets = details.get("sets")
    entry = sets.get(key.ood_set) if isinstance(sets, dict) else None
    n_in, n_out = _count(details.get("n_in")), _count(entry.get("n") if isinstance(entry, dict) else None)
    return None if n_in is None or n_out is None else (n_in, n_out)


def sizes(record: Record, metric: str) -> tuple[int, ...] | None:
    """The sizes ``metric``'s error depends on in ``record``: ``(n,)`` (binomial), ``(n_in, n_out)``
    (Hanley–McNeil), or None (no derived error, or the record does not say)."""
    spec = metric_keys.spec(metric)
    if spec is None or spec.se == "fixed":
        return None
    if spec.se == "binomial":
        n = binomial_n(record, metric)
        return None if n is None else (n,)
    return auroc_sizes(record, metric)


def standard_error(record: Record, metric: str, value: float, z: float = 1.0) -> float | None:
    """The sampling error of ``value`` for ``metric`` at the sizes ``record`` was measured on, under the metric's
    rule (:attr:`jembench.metric_keys.MetricSpec.se`); None when the metric has no derived error or the record
    does not carry its sizes (``check`` then falls back to its fixed rule). ``value`` need not be the record's own
    number: ``check`` asks for a reference's error at the record's sizes."""
    found = sizes(record, metric)
    if found is None:
        return None
    return wilson_se(value, found[0], z) if len(found) == 1 else auroc_standard_error(value, *found)
