"""Metrics without a closed-form test — ECE, MCE, NLL, Brier, AUPR, FPR@95 — compared by a bootstrap over the inputs.

``scipy.stats.bootstrap`` resamples *indices* (one array per stratum: the test split; or the in-distribution and
the OOD set, resampled separately so each keeps its size, as the metric's definition fixes them) and a
vectorised metric evaluates every resample at once. **Paired**: one resample of the shared inputs feeds both
models, so the difference keeps only the noise that differs between them (Efron & Tibshirani 1993, §11).
**Unpaired**: each model's inputs are resampled on their own (the fallback when the inputs differ).

The interval is the percentile interval of the bootstrapped differences; the p-values are from the normal
approximation z = (b − a)/SE_boot (SE_boot = their standard deviation), which, unlike counting resamples beyond
0, can go below 1/n_resamples when several metrics are Holm-adjusted. Two identical evaluations give a zero
difference with zero spread: p = 1. Seeded: the same inputs and seed give the same numbers.

Metric builders (``ece``, ``mean``, ``fpr_at_tpr``, ``average_precision``) return functions of resampled index
arrays of shape (R, n) → (R,) metric values; with the identity resample they equal the suites' numbers
(:mod:`jembench.metrics.calibration`, :mod:`jembench.metrics.detection`), which ``tests/test_stats.py`` checks,
and a resample equals scikit-learn's weighted metric with the resample's multiplicities as sample weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _stats

from . import CONFIDENCE, Difference, z_test

Metric = Callable[..., np.ndarray]  # metric(*index_arrays (R, n_s)) -> (R,)
RESAMPLES = 1000
_BATCH = 50  # resamples evaluated at once (memory: 50 × inputs × 8 bytes per array)


# ------------------------------------------------------------------------------------------- metric builders
def mean(values) -> Metric:
    """The mean of a per-input quantity (NLL)."""
    v = np.asarray(values, dtype=np.float64)
    return lambda idx: v[idx].mean(axis=-1)


def ece(confidence, correct, bins, n_bins: int, maximum: bool = False) -> Metric:
    """Expected calibration error Σ_b |Σ_{i∈b} (conf_i − correct_i)| / n (fractions) with each input's bin
    fixed (``bins``: its bin index, as the calibration suite assigned it); ``maximum``: the maximum calibration
    error max_b |mean_{i∈b} (conf_i − correct_i)| over non-empty bins instead."""
    gap = np.asarray(confidence, dtype=np.float64) - np.asarray(correct, dtype=np.float64)
    b = np.asarray(bins, dtype=np.int64)

    def metric(idx: np.ndarray) -> np.ndarray:
        idx = np.atleast_2d(idx)
        rows, n = idx.shape
        flat = (np.arange(rows)[:, None] * n_bins + b[idx]).ravel()
        sums = np.bincount(flat, weights=gap[idx].ravel(), minlength=rows * n_bins).reshape(rows, n_bins)
        if not maximum:
            return np.abs(sums).sum(axis=1) / n
        counts = np.bincount(flat, minlength=rows * n_bins).reshape(rows, n_bins)
        means = np.divide(np.abs(sums), counts, out=np.zeros(sums.shape), where=counts > 0)
        return means.max(axis=1)

    return metric


def _tpr_rank(m: int, level: float) -> int:
    """The smallest k with k/m ≥ ``level`` in floating point (scikit-learn's ``searchsorted(tpr, level)``)."""
    return int(np.searchsorted(np.arange(1, m + 1) / m, level, side="left")) + 1


def fpr_at_tpr(score_in, score_out, level: float = 0.95) -> Metric:
    """The share of OOD inputs scoring at or above the highest threshold that keeps ≥ ``level`` of the
    in-distribution inputs (:func:`jembench.metrics.detection.fpr_at_tpr`): the threshold is the k-th largest
    in-distribution score, k = ⌈level·m⌉."""
    s_in, s_out = np.asarray(score_in, dtype=np.float64), np.asarray(score_out, dtype=np.float64)

    def metric(idx_in: np.ndarray, idx_out: np.ndarray) -> np.ndarray:
        idx_in, idx_out = np.atleast_2d(idx_in), np.atleast_2d(idx_out)
        m = idx_in.shape[1]
        k = _tpr_rank(m, level)
        threshold = np.partition(s_in[idx_in], m - k, axis=1)[:, m - k]
        return (s_out[idx_out] >= threshold[:, None]).mean(axis=1)

    return metric


def average_precision(score_in, score_out) -> Metric:
    """Average precision with in-distribution positive (AUPR-In; scikit-learn's ``average_precision_score``):
    Σ over distinct thresholds (descending) of ΔRecall · Precision. A resample is a vector of multiplicities
    over the inputs, so every resample reuses one sort of the scores: cumulative sums of the multiplicities in
    score order give TP and FP at each distinct threshold."""
    s_in, s_out = np.asarray(score_in, dtype=np.float64), np.asarray(score_out, dtype=np.float64)
    m, n = len(s_in), len(s_out)
    scores = np.concatenate([s_in, s_out])
    order = np.argsort(-scores, kind="stable")
    ends = np.flatnonzero(np.r_[np.diff(scores[order]) != 0, True])  # last position of each tie group
    positive = order < m
    rank = np.empty(m + n, dtype=np.int64)
    rank[order] = np.arange(m + n)

    def metric(idx_in: np.ndarray, idx_out: np.ndarray) -> np.ndarray:
        idx_in, idx_out = np.atleast_2d(idx_in), np.atleast_2d(idx_out)
        rows = idx_in.shape[0]
        flat = np.concatenate([rank[idx_in], rank[idx_out + m]], axis=1) + (np.arange(rows) * (m + n))[:, None]
        weights = np.bincount(flat.ravel(), minlength=rows * (m + n)).reshape(rows, m + n)
        tp = np.cumsum(weights * positive, axis=1)[:, ends]
        fp = np.cumsum(weights * ~positive, axis=1)[:, ends]
        total = tp[:, -1:]
        precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape), where=(tp + fp) > 0)
        gained = np.diff(tp, axis=1, prepend=0)
        return (gained * precision).sum(axis=1) / np.maximum(total[:, 0], 1)

    return metric


# ------------------------------------------------------------------------------------------------- tests
def _run(statistic: Callable[..., np.ndarray], sizes: Sequence[int], n_resamples: int, seed: int,
         confidence: float) -> tuple[np.ndarray, tuple[float, float]]:
    data = tuple(np.arange(s) for s in sizes)
    res = _stats.bootstrap(data, lambda *idx, axis=-1: statistic(*idx), n_resamples=n_resamples, batch=_BATCH,
                           vectorized=True, paired=False, method="percentile", confidence_level=confidence,
                           rng=np.random.default_rng(seed))
    return res.bootstrap_distribution, (float(res.confidence_interval.low), float(res.confidence_interval.high))


def _difference(a: float, b: float, dist: np.ndarray, ci: tuple[float, float], test: str, paired: bool, n: str,
                confidence: float) -> Difference:
    se = float(np.std(dist, ddof=1)) if len(dist) > 1 else math.nan
    if se < 1e-15:
        se, ci = 0.0, (b - a, b - a)
    if not all(map(math.isfinite, ci)):
        ci = (math.nan, math.nan)
    return z_test(a, b, se, ci, test, paired, n, confidence)


def paired(metric_a: Metric, metric_b: Metric, sizes: Sequence[int], *, n_resamples: int = RESAMPLES,
           seed: int = 0, confidence: float = CONFIDENCE) -> Difference:
    """Paired bootstrap of metric_b − metric_a over shared inputs; ``sizes``: the inputs of each stratum
    (``[n]``, or ``[n_in, n_out]`` for OOD metrics)."""
    full = [np.arange(s)[None, :] for s in sizes]
    a, b = float(metric_a(*full)[0]), float(metric_b(*full)[0])
    dist, ci = _run(lambda *idx: metric_b(*idx) - metric_a(*idx), sizes, n_resamples, seed, confidence)
    n = " + ".join(str(s) for s in sizes)
    return _difference(a, b, dist, ci, "paired bootstrap", True, n, confidence)


def unpaired(metric_a: Metric, sizes_a: Sequence[int], metric_b: Metric, sizes_b: Sequence[int], *,
             n_resamples: int = RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> Difference:
    """Bootstrap of metric_b − metric_a when the two were measured on different inputs: each side's strata
    are resampled independently."""
    k = len(sizes_a)
    full_a = [np.arange(s)[None, :] for s in sizes_a]
    full_b = [np.arange(s)[None, :] for s in sizes_b]
    a, b = float(metric_a(*full_a)[0]), float(metric_b(*full_b)[0])
    dist, ci = _run(lambda *idx: metric_b(*idx[k:]) - metric_a(*idx[:k]), [*sizes_a, *sizes_b], n_resamples,
                    seed, confidence)
    n = f"{' + '.join(map(str, sizes_a))} vs {' + '.join(map(str, sizes_b))}"
    return _difference(a, b, dist, ci, "bootstrap (unpaired)", False, n, confidence)
