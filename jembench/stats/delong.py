"""AUROCs: DeLong's test for correlated AUROCs, and unpaired fallbacks.

The AUROC of scores X (positives, m of them) against Y (negatives, n) is the Mann–Whitney statistic
θ = 1/(mn) Σ_i Σ_j ψ(X_i, Y_j), ψ = 1 if X > Y, ½ if equal, 0 otherwise. DeLong, DeLong & Clarke-Pearson (1988,
Biometrics 44:837) estimate its variance from the structural components V10(X_i) = 1/n Σ_j ψ(X_i, Y_j) and
V01(Y_j) = 1/m Σ_i ψ(X_i, Y_j):  S = S10/m + S01/n, S10 and S01 the (co)variance matrices of the components over
the positives and the negatives. For two scores of the *same* inputs, the difference θ_B − θ_A has variance
S_AA + S_BB − 2 S_AB, and z = (θ_B − θ_A)/√· is asymptotically normal (DeLong's test).

Computed in O((m + n) log(m + n)) per score with midranks (Sun & Xu 2014, IEEE Signal Process. Lett. 21:1389):
V10(X_i) = (T_Z(X_i) − T_X(X_i))/n and V01(Y_j) = 1 − (T_Z(Y_j) − T_Y(Y_j))/m, where T_X, T_Y, T_Z are the
midranks of a value within X, within Y and within X ∪ Y (``scipy.stats.rankdata(method="average")``, so ties
count ½ exactly as ψ does). Hand-written because neither scipy, statsmodels nor scikit-learn has DeLong's test;
``tests/test_stats.py`` checks it against the brute-force O(mn) structural components and against the pROC
package's documented example (``roc.test`` on its ``aSAH`` data: Z = 2.209, p = 0.0272).

Unpaired (other inputs): θ_B − θ_A with variance S_A + S_B from each sample's own DeLong variance
(:func:`unpaired`), or — when a record carries no per-input scores — the Hanley & McNeil (1982) variance from the
AUROC and the set sizes (:func:`hanley_mcneil`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _stats

from ..sampling_error import auroc_standard_error
from . import CONFIDENCE, Difference, z_test


def _components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs (k,), V10 (k, m) and V01 (k, n) of k scores (rows of ``pos`` (k, m) and ``neg`` (k, n))."""
    m, n = pos.shape[1], neg.shape[1]
    t_x = _stats.rankdata(pos, axis=1)
    t_y = _stats.rankdata(neg, axis=1)
    t_z = _stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (t_z[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (t_z[:, :m] - t_x) / n
    v01 = 1.0 - (t_z[:, m:] - t_y) / m
    return aucs, v10, v01


def _matrix(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x


def delong_covariance(pos, neg) -> tuple[np.ndarray, np.ndarray]:
    """(AUROCs (k,), covariance matrix (k, k)) of k scores of the same m positives and n negatives
    (``pos``: (k, m) or (m,), ``neg``: (k, n) or (n,))."""
    pos, neg = _matrix(pos), _matrix(neg)
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"DeLong's variance needs at least 2 positives and 2 negatives, got {m} and {n}")
    aucs, v10, v01 = _components(pos, neg)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def paired(pos_a, neg_a, pos_b, neg_b, confidence: float = CONFIDENCE) -> Difference:
    """DeLong's test of AUROC_B − AUROC_A, both scoring the same positives and negatives in the same order."""
    pos_a, pos_b, neg_a, neg_b = (np.asarray(v, dtype=np.float64) for v in (pos_a, pos_b, neg_a, neg_b))
    if pos_a.shape != pos_b.shape or neg_a.shape != neg_b.shape:
        raise ValueError("paired AUROCs need the scores of the same inputs: shapes differ")
    aucs, cov = delong_covariance(np.stack([pos_a, pos_b]), np.stack([neg_a, neg_b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    se = math.sqrt(max(var, 0.0))
    if se < 1e-12 * max(1.0, math.sqrt(abs(cov[0, 0]) + abs(cov[1, 1]))):
        se = 0.0  # identical rankings: the difference is exactly 0 with no variance
    return z_test(float(aucs[0]), float(aucs[1]), se, None, "DeLong", True, f"{len(pos_a)} + {len(neg_a)}",
                  confidence)


def unpaired(pos_a, neg_a, pos_b, neg_b, confidence: float = CONFIDENCE) -> Difference:
    """AUROC_B − AUROC_A from independent samples: z with variance S_A + S_B, each sample's DeLong variance."""
    (auc_a,), cov_a = delong_covariance(pos_a, neg_a)
    (auc_b,), cov_b = delong_covariance(pos_b, neg_b)
    se = math.sqrt(max(cov_a[0, 0] + cov_b[0, 0], 0.0))
    n = f"{np.size(pos_a)} + {np.size(neg_a)} vs {np.size(pos_b)} + {np.size(neg_b)}"
    return z_test(float(auc_a), float(auc_b), se, None, "DeLong variances (unpaired)", False, n, confidence)


def hanley_mcneil(auc_a: float, sizes_a: tuple[int, int], auc_b: float, sizes_b: tuple[int, int],
                  confidence: float = CONFIDENCE) -> Difference:
    """AUROC_B − AUROC_A from the AUROCs and set sizes only (records without per-input scores): z with the
    Hanley & McNeil (1982) variances of independent samples."""
    se = math.hypot(auroc_standard_error(auc_a, *sizes_a), auroc_standard_error(auc_b, *sizes_b))
    n = f"{sizes_a[0]} + {sizes_a[1]} vs {sizes_b[0]} + {sizes_b[1]}"
    return z_test(auc_a, auc_b, se, None, "Hanley-McNeil (unpaired)", False, n, confidence)
