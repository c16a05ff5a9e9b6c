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
* ``hanley-mcneil`` — AUROC, the rule of two samples of independent inputs: the Hanley & McNeil (1982) standard
  error from the AUROC and the two sides' numbers of independent inputs (:func:`auroc_standard_error`;
  hand-written: neither scikit-learn nor statsmodels has it). What an OOD set's AUROC error is depends on how its
  sample was drawn (:func:`auroc_error`): Hanley–McNeil counts ``n_out`` independent OOD images, but every image
  of the Constant set is the same image (all pixels 0, σ = 0), and a score can tie a whole side (a saturated
  score). When one side is a single point c — all its inputs identical, or all its scores equal — the AUROC is
  P(s(x) > c) + ½ P(s(x) = c) over the *other* side only: a proportion of that side's inputs, whose error is the
  binomial one (Wilson, as above; ψ ∈ {0, ½, 1} per input has variance ≤ A(1 − A), equality without ties). The
  sizes are ``details["n_in"]`` and ``details["sets"][SET]["n"]``, or the numbers of distinct inputs when the
  record counts them (``details["n_in_distinct"]``, ``details["sets"][SET]["distinct"]``: duplicates are one
  draw); whether a side's scores are all tied is ``details["sets"][SET]["scores"][SCORE]["in_tied"]`` /
  ``["out_tied"]``. Records written before those fields existed: the Constant set without input noise is one
  point by construction.

Evidence is recomputed, never trusted: an error is always derived from a value and the sizes it was measured on —
never read from a standard error a record stores (``auroc_se``, robustness ``sampling_error``), which a record
from someone else could set to anything. The sizes themselves are validated when a record is loaded
(:func:`jembench.records.validate_record`: whole numbers in [1, :data:`~jembench.metric_keys.MAX_N`]).
Everything here is torch-free (``jembench check`` imports no torch); statsmodels is imported on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


def _details(record: Record) -> dict[str, Any]:
    details = record.get("details") or {}
    return details if isinstance(details, dict) else {}


@dataclass(frozen=True)
class ErrorRule:
    """Which error rule applies to one metric of one record, at which sizes, and how a row names it."""

    name: str  # binomial | hanley-mcneil
    sizes: tuple[int, ...]  # (n,) | (n_in, n_out)
    label: str  # e.g. "binomial (OOD side tied)"


def auroc_error(record: Record, metric: str) -> ErrorRule | None:
    """How the error of ``auroc/SET/SCORE`` of an OOD record is derived, from how its sample was drawn (see the
    module docstring): Hanley–McNeil at (n_in, n_out) independent inputs, or binomial over the side that is not a
    single point; None when the record does not give the sizes."""
    key = metric_keys.parse(metric)
    details = _details(record)
    if key is None or key.family != "ood":
        return None
    sets = details.get("sets")
    entry = sets.get(key.ood_set) if isinstance(sets, dict) else None
    entry = entry if isinstance(entry, dict) else {}
    n_in, n_out = _count(details.get("n_in")), _count(entry.get("n"))
    if n_in is None or n_out is None:
        return None
    n_in = min(n_in, _count(details.get("n_in_distinct")) or n_in)  # duplicates are one draw
    distinct = _count(entry.get("distinct"))
    if distinct is None and entry.get("source") == "constant" and details.get("input_noise") == 0:
        distinct = 1  # records written before the count: the Constant set without noise is one image repeated
    n_out = min(n_out, distinct or n_out)
    scores = entry.get("scores")
    tied = scores.get(key.score) if isinstance(scores, dict) else None
    tied = tied if isinstance(tied, dict) else {}
    return auroc_rule(n_in, n_out, in_tied=tied.get("in_tied") is True, out_tied=tied.get("out_tied") is True)


def auroc_rule(n_in: int, n_out: int, in_tied: bool = False, out_tied: bool = False) -> ErrorRule:
    """The AUROC's error rule for ``n_in`` and ``n_out`` independent inputs (distinct inputs: duplicates are one
    draw), ``*_tied`` when every score of that side is the same number: binomial over the other side when one
    side is a single point (module docstring), else Hanley–McNeil."""
    out_point, in_point = n_out == 1 or out_tied, n_in == 1 or in_tied
    if out_point and in_point:  # the AUROC is 0, ½ or 1: one input's worth of evidence
        return ErrorRule("binomial", (1,), "binomial (both sides tied)")
    if out_point:
        return ErrorRule("binomial", (n_in,), "binomial (OOD side tied)")
    if in_point:
        return ErrorRule("binomial", (n_out,), "binomial (in-dist. side tied)")
    return ErrorRule("hanley-mcneil", (n_in, n_out), "hanley-mcneil")


def rule_error(rule: ErrorRule, value: float, percent: bool, z: float = 1.0) -> float:
    """The standard error of ``value`` under ``rule`` (``percent``: the value is in %, else a fraction)."""
    if rule.name == "hanley-mcneil":
        return auroc_standard_error(value, *rule.sizes)
    scale = 1.0 if percent else 100.0  # Wilson in %-points
    return wilson_se(value * scale, rule.sizes[0], z) / scale


def error_rule(record: Record, metric: str) -> ErrorRule | None:
    """The error rule of ``metric`` in ``record`` (the metric table's, :attr:`~jembench.metric_keys.MetricSpec.se`;
    for an AUROC, :func:`auroc_error`), or None when no error is derived or the record does not carry its sizes."""
    spec = metric_keys.spec(metric)
    if spec is None or spec.se == "fixed":
        return None
    if spec.se == "binomial":
        n = binomial_n(record, metric)
        return None if n is None else ErrorRule("binomial", (n,), "binomial")
    return auroc_error(record, metric)


def auroc_sizes(record: Record, metric: str) -> tuple[int, int] | None:
    """(in-distribution, OOD) numbers of independent inputs behind ``auroc/SET/SCORE`` when its error is the
    Hanley–McNeil one; None otherwise (one side a single point, or no sizes)."""
    found = auroc_error(record, metric)
    return (found.sizes[0], found.sizes[1]) if found is not None and found.name == "hanley-mcneil" else None


def sizes(record: Record, metric: str) -> tuple[int, ...] | None:
    """The sizes ``metric``'s error depends on in ``record``: ``(n,)`` (binomial; for an AUROC with one side a
    single point, the other side's n), ``(n_in, n_out)`` (Hanley–McNeil), or None (no derived error, or the record
    does not say)."""
    found = error_rule(record, metric)
    return None if found is None else found.sizes


def standard_error(record: Record, metric: str, value: float, z: float = 1.0) -> float | None:
    """The sampling error of ``value`` for ``metric`` at the sizes ``record`` was measured on, under the metric's
    rule (:attr:`jembench.metric_keys.MetricSpec.se`; for an AUROC, :func:`auroc_error`); None when the metric has
    no derived error or the record does not carry its sizes (``check`` then falls back to its fixed rule).
    ``value`` need not be the record's own number: ``check`` asks for a reference's error at the record's sizes."""
    found = error_rule(record, metric)
    if found is None:
        return None
    spec = metric_keys.spec(metric)
    return rule_error(found, value, spec is not None and spec.percent, z)
