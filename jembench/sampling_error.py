"""Sampling errors of record metrics under their protocol: what a difference between two numbers must exceed
before ``jembench check`` calls it a regression rather than noise.

Two derived rules (names used in ``suites/check-tolerances.toml`` and printed per row by ``jembench check``):

* ``binomial`` — accuracies and robust accuracies (%) are a proportion of ``n`` inputs. The standard error is
  Wilson's score-interval half-width divided by z (Wilson 1927, JASA 22:209; the interval
  ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")`` returns):
  ``SE_W = 100 · √(p(1−p)/n + z²/(4n²)) / (1 + z²/n)``. Unlike the normal (Wald) ``√(p(1−p)/n)`` it does not
  vanish at 0 % or 100 % (an attack that breaks every input on 20 inputs is not exact), and it tends to the Wald
  error for large n. Hand-written (four lines) because scipy returns an interval, not an error at a given p.
  ``n``: ``metrics["n"]`` of accuracy / calibration records, ``details["n"]`` of robustness records (the
  length of the per-input lists ``details["clean"]``).
* ``hanley-mcneil`` — AUROC: the Hanley & McNeil (1982) standard error from the AUROC and the two set sizes
  (:func:`auroc_standard_error`, here so that ``jembench check`` imports no torch). A record's own value uses
  the ``auroc_se`` the OOD suite stored in ``details["sets"][SET]["scores"][SCORE]``; a reference value
  (published, or a record without it) is computed from the sizes ``details["n_in"]`` and ``details["sets"][SET]["n"]``.

A published number is taken to be measured under the same protocol as the record it is compared with (check
compares only then), hence on the same n: its error is the rule's error at the published value and the record's n.
"""

from __future__ import annotations

import math


def auroc_standard_error(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley–McNeil standard error of an AUROC A from ``n_pos`` positives and ``n_neg`` negatives:
    SE² = [A(1−A) + (n_pos−1)(Q1−A²) + (n_neg−1)(Q2−A²)] / (n_pos·n_neg), Q1 = A/(2−A), Q2 = 2A²/(1+A)."""
    if math.isnan(auroc) or n_pos < 1 or n_neg < 1:
        return math.nan
    q1, q2 = auroc / (2 - auroc), 2 * auroc ** 2 / (1 + auroc)
    var = (auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc ** 2) + (n_neg - 1) * (q2 - auroc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


RULES = ("fixed", "binomial", "hanley-mcneil")


def wilson_se(percent: float, n: int, z: float) -> float:
    """Wilson score-interval half-width / z, in percentage points, of ``percent`` % of ``n`` inputs."""
    if not n or n < 1 or not math.isfinite(percent):
        return math.nan
    p = min(max(percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)


def binomial_n(record: dict, metric: str) -> int | None:
    """How many inputs an accuracy-like ``metric`` of ``record`` was measured on, or None if it does not say."""
    metrics, details = record.get("metrics", {}), record.get("details") or {}
    if metric.startswith(("clean_acc/", "robust_acc/")):
        n = details.get("n") if isinstance(details, dict) else None
    else:
        n = metrics.get("n")
        if n is None and isinstance(details, dict):
            n = details.get("n")
    if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 1:
        return None
    return int(n)


def _ood_entry(record: dict, metric: str) -> tuple[dict, dict] | None:
    parts = metric.split("/")
    details = record.get("details") or {}
    if len(parts) != 3 or not isinstance(details, dict):
        return None
    entry = (details.get("sets") or {}).get(parts[1])
    if not isinstance(entry, dict):
        return None
    score = (entry.get("scores") or {}).get(parts[2])
    return entry, score if isinstance(score, dict) else {}


def auroc_sizes(record: dict, metric: str) -> tuple[int, int] | None:
    """(in-distribution, OOD) set sizes behind ``auroc/SET/SCORE`` of an OOD record, or None."""
    found = _ood_entry(record, metric)
    n_in = (record.get("details") or {}).get("n_in") if found else None
    n_out = found[0].get("n") if found else None
    sizes = (n_in, n_out)
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) or s < 1 for s in sizes):
        return None
    return int(n_in), int(n_out)


def standard_error(rule: str, record: dict, metric: str, value: float, z: float, own: bool = True
                   ) -> float | None:
    """The sampling error of ``value`` for ``metric`` under ``rule`` at the sizes ``record`` was measured on;
    None when the record does not carry them (the caller then falls back to the fixed rule).

    ``own``: ``value`` is the record's own number (an AUROC may then use its stored ``auroc_se``)."""
    if rule == "binomial":
        n = binomial_n(record, metric)
        return None if n is None else wilson_se(value, n, z)
    if rule == "hanley-mcneil":
        found = _ood_entry(record, metric)
        stored = found[1].get("auroc_se") if found else None
        if own and isinstance(stored, (int, float)) and math.isfinite(stored):
            return float(stored)
        sizes = auroc_sizes(record, metric)
        return None if sizes is None else auroc_standard_error(value, *sizes)
    return None
