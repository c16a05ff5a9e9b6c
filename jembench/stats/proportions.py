"""Accuracies (proportions of correct inputs): paired and unpaired comparisons.

Paired — both models classified the same n inputs. Only the discordant inputs carry information: n10 (A right,
B wrong) and n01 (A wrong, B right). Under H0 "equal accuracy" each discordant input is a fair coin, so
McNemar's exact test (McNemar 1947; the binomial test of n01 among n10 + n01 at ½; statsmodels
``mcnemar(exact=True)``) gives the two-sided p-value and ``scipy.stats.binomtest`` the one-sided ones. The
confidence interval of the difference p_B − p_A is Newcombe's (1998, Stat. Med. 17:2635) method 10, the paired
hybrid score interval: the Wilson intervals of the two marginal proportions combined with their correlation φ
(with Newcombe's continuity-corrected φ). Hand-written (ten lines) because statsmodels 0.15 has no paired-
proportion interval (``confint_proportions_paired`` is only in its development branch); tested against the
worked example of Altman et al. (2000), *Statistics with Confidence*, Table 6.2, and by simulated coverage.

Unpaired — two independent samples (other inputs, or per-input results unknown): the score test of two
independent proportions and Newcombe's hybrid score interval (statsmodels ``test_proportions_2indep`` /
``confint_proportions_2indep``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _stats
from statsmodels.stats.contingency_tables import mcnemar as _mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, test_proportions_2indep

from . import CONFIDENCE, Difference


def newcombe_paired_ci(n11: int, n10: int, n01: int, n00: int, confidence: float = CONFIDENCE
                       ) -> tuple[float, float]:
    """Newcombe's method 10 interval for p_B − p_A from the paired table (n11: both right, n10: A right and
    B wrong, n01: A wrong and B right, n00: both wrong)."""
    n = n11 + n10 + n01 + n00
    if n == 0:
        return (math.nan, math.nan)
    alpha = 1 - confidence
    k_a, k_b = n11 + n10, n11 + n01
    p_a, p_b = k_a / n, k_b / n
    l_a, u_a = proportion_confint(k_a, n, alpha=alpha, method="wilson")
    l_b, u_b = proportion_confint(k_b, n, alpha=alpha, method="wilson")
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = 0.0
    if margins > 0:
        cross = n11 * n00 - n10 * n01
        corrected = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
        phi = corrected / math.sqrt(margins)
    d = p_b - p_a
    lower = d - math.sqrt(max((p_b - l_b) ** 2 - 2 * phi * (p_b - l_b) * (u_a - p_a) + (u_a - p_a) ** 2, 0.0))
    upper = d + math.sqrt(max((u_b - p_b) ** 2 - 2 * phi * (u_b - p_b) * (p_a - l_a) + (p_a - l_a) ** 2, 0.0))
    return (float(lower), float(upper))


def paired_table(correct_a, correct_b) -> tuple[int, int, int, int]:
    """(n11, n10, n01, n00) of two boolean per-input correctness vectors of equal length."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired correctness vectors must be 1-D of one length, got {a.shape} and {b.shape}")
    return (int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))


def mcnemar(correct_a, correct_b, confidence: float = CONFIDENCE) -> Difference:
    """Paired comparison of two accuracies (fractions) on the same inputs: McNemar's exact test and
    Newcombe's paired interval. Identical vectors give a zero difference and p = 1."""
    n11, n10, n01, n00 = paired_table(correct_a, correct_b)
    n = n11 + n10 + n01 + n00
    a, b = (n11 + n10) / n, (n11 + n01) / n
    ci = newcombe_paired_ci(n11, n10, n01, n00, confidence)
    discordant = n10 + n01
    if discordant == 0:
        p = p_less = p_greater = 1.0
    else:
        p = float(_mcnemar([[n11, n10], [n01, n00]], exact=True).pvalue)
        p_less = float(_stats.binomtest(n01, discordant, 0.5, alternative="less").pvalue)
        p_greater = float(_stats.binomtest(n01, discordant, 0.5, alternative="greater").pvalue)
    return Difference(a, b, ci, min(p, 1.0), p_less, p_greater, "McNemar exact", True, f"{n}",
                      confidence)


def two_proportions(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = CONFIDENCE) -> Difference:
    """Unpaired comparison of k_a / n_a and k_b / n_b (independent samples): the score test and Newcombe's
    hybrid score interval (statsmodels)."""
    a, b = k_a / n_a, k_b / n_b
    ci = confint_proportions_2indep(k_b, n_b, k_a, n_a, method="newcomb", compare="diff", alpha=1 - confidence)
    if k_a == k_b and n_a == n_b:
        p = p_less = p_greater = 1.0
    else:
        def test(alternative: str) -> float:
            res = test_proportions_2indep(k_b, n_b, k_a, n_a, method="score", compare="diff",
                                          alternative=alternative, correction=False)
            return float(res.pvalue)
        p, p_less, p_greater = test("two-sided"), test("smaller"), test("larger")
    return Difference(a, b, (float(ci[0]), float(ci[1])), p, p_less, p_greater, "two-proportion score (unpaired)",
                      False, f"{n_a} vs {n_b}", confidence)
