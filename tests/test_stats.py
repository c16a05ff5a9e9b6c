"""jembench.stats against independent computations: brute-force structural components, the pROC package's
documented DeLong example, binomial sums by hand, scikit-learn's weighted metrics, statsmodels' independent-sample
intervals and descriptive statistics, and simulated coverage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from statsmodels.stats.proportion import confint_proportions_2indep
from statsmodels.stats.weightstats import DescrStatsW

from jembench.metrics.calibration import bin_indices, expected_calibration_error, reliability_bins
from jembench.metrics.detection import detection_metrics, fpr_at_tpr
from jembench.stats import bootstrap, delong, multiple, proportions

ASAH = Path(__file__).parent / "data" / "asah.csv"


# ------------------------------------------------------------------------------------------------- DeLong
def _brute_force(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and DeLong covariance from the O(mn) structural components of DeLong et al. (1988), eq. for
    V10, V01 with psi = 1, 1/2, 0."""
    k, m, n = pos.shape[0], pos.shape[1], neg.shape[1]
    v10, v01 = np.zeros((k, m)), np.zeros((k, n))
    for r in range(k):
        psi = (pos[r][:, None] > neg[r][None, :]) + 0.5 * (pos[r][:, None] == neg[r][None, :])
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
    aucs = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return aucs, s10 / m + s01 / n


@pytest.mark.parametrize("ties", [False, True])
def test_delong_fast_equals_brute_force_structural_components(ties):
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(1, 1, (3, 57)), rng.normal(0, 1, (3, 83))
    if ties:
        pos, neg = np.round(pos), np.round(neg)
    aucs, cov = delong.delong_covariance(pos, neg)
    ref_aucs, ref_cov = _brute_force(pos, neg)
    np.testing.assert_allclose(aucs, ref_aucs, rtol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10)
    labels = np.r_[np.ones(57), np.zeros(83)]
    for r in range(3):
        assert aucs[r] == pytest.approx(roc_auc_score(labels, np.r_[pos[r], neg[r]]), abs=1e-12)


def test_delong_matches_proc_documented_example():
    """pROC's roc.test(roc(aSAH$outcome, aSAH$wfns), roc(aSAH$outcome, aSAH$s100b)) — the example of its
    manual, with the values its own test suite pins (tests/testthat/test-roc.test.R): Z = 2.20898359144091,
    p = 0.0271757822291882, 95 % CI of AUC_wfns − AUC_s100b (0.0104061769564846, 0.174214419249478); unpaired
    (paired = FALSE) D = 1.43490640926908. Data: aSAH (Turck et al. 2010, Intensive Care Med 36:107) as shipped
    with pROC; cases = "Poor" outcome."""
    data = pd.read_csv(ASAH)
    pos, neg = data[data.outcome == "Poor"], data[data.outcome == "Good"]
    d = delong.paired(pos.s100b, neg.s100b, pos.wfns, neg.wfns)
    assert (d.a, d.b) == (pytest.approx(0.7313686, abs=1e-7), pytest.approx(0.8236789, abs=1e-7))
    assert d.p == pytest.approx(0.0271757822291882, rel=1e-9)
    assert d.ci == (pytest.approx(0.0104061769564846, rel=1e-9), pytest.approx(0.174214419249478, rel=1e-9))
    assert d.p_greater == pytest.approx(d.p / 2, rel=1e-12) and d.paired
    u = delong.unpaired(pos.s100b, neg.s100b, pos.wfns, neg.wfns)
    se = (u.ci[1] - u.ci[0]) / (2 * 1.959963984540054)
    assert u.diff / se == pytest.approx(1.43490640926908, rel=1e-9)
    assert not u.paired and "unpaired" in u.test


def test_delong_identical_scores_give_zero_difference_and_p_one():
    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, 40), rng.normal(0, 1, 60)
    d = delong.paired(pos, neg, pos, neg)
    assert d.diff == 0 and d.p == 1 and d.ci == (0.0, 0.0) and d.p_less == 1 and d.p_greater == 1
    # a monotone transform keeps every ranking: also no difference
    assert delong.paired(pos, neg, np.exp(pos), np.exp(neg)).p == 1


def test_hanley_mcneil_fallback_uses_the_published_standard_error():
    d = delong.hanley_mcneil(0.8, (100, 100), 0.7, (100, 100))
    from jembench.sampling_error import auroc_standard_error
    se = math.hypot(auroc_standard_error(0.8, 100, 100), auroc_standard_error(0.7, 100, 100))
    assert d.p == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(0.1 / se / math.sqrt(2)))), rel=1e-9)
    assert not d.paired


# ---------------------------------------------------------------------------------------------- McNemar
def _exact_binomial_tail(k: int, n: int) -> float:
    """P(X <= k), X ~ Bin(n, 1/2), from binomial coefficients."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def test_mcnemar_exact_p_values_equal_binomial_sums():
    rng = np.random.default_rng(3)
    a = rng.random(300) < 0.8
    b = a.copy()
    flip = rng.choice(300, 25, replace=False)
    b[flip] = ~b[flip]
    n11, n10, n01, n00 = proportions.paired_table(a, b)
    d = proportions.mcnemar(a, b)
    m = n10 + n01
    assert d.p == pytest.approx(min(1.0, 2 * _exact_binomial_tail(min(n10, n01), m)), rel=1e-12)
    assert d.p_less == pytest.approx(_exact_binomial_tail(n01, m), rel=1e-12)  # B worse: few A-wrong-B-right
    assert d.p_greater == pytest.approx(_exact_binomial_tail(n10, m), rel=1e-12)
    assert d.diff == pytest.approx((n01 - n10) / 300)
    assert d.ci[0] < d.diff < d.ci[1]


def test_mcnemar_of_identical_vectors_is_zero_with_p_one():
    a = np.r_[np.ones(90), np.zeros(10)].astype(bool)
    d = proportions.mcnemar(a, a)
    assert d.diff == 0 and d.p == d.p_less == d.p_greater == 1
    assert d.ci[0] < 0 < d.ci[1]


def test_newcombe_paired_interval_with_zero_correlation_is_the_independent_newcombe_interval():
    """With Newcombe's corrected phi = 0 (n11*n00 - n10*n01 within [0, n/2]) method 10 reduces to the
    independent-samples hybrid score interval, which statsmodels computes independently."""
    n11, n10, n01, n00 = 20, 20, 20, 21  # cross = 420 - 400 = 20 <= n/2 = 40.5: phi = 0
    n = n11 + n10 + n01 + n00
    ours = proportions.newcombe_paired_ci(n11, n10, n01, n00)
    ref = confint_proportions_2indep(n11 + n01, n, n11 + n10, n, method="newcomb", compare="diff")
    assert ours == (pytest.approx(ref[0], rel=1e-12), pytest.approx(ref[1], rel=1e-12))


def test_newcombe_paired_interval_covers_at_its_level():
    """Simulated coverage of the 95 % interval over 3,000 paired samples of 200 correlated inputs."""
    rng = np.random.default_rng(4)
    p_a, p_b_given = 0.85, (0.95, 0.40)  # B right w.p. .95 when A right, .40 when A wrong
    true = p_a * p_b_given[0] + (1 - p_a) * p_b_given[1] - p_a
    hits = 0
    for _ in range(3000):
        a = rng.random(200) < p_a
        b = np.where(a, rng.random(200) < p_b_given[0], rng.random(200) < p_b_given[1])
        lo, hi = proportions.newcombe_paired_ci(*proportions.paired_table(a, b))
        hits += lo <= true <= hi
    assert 0.93 <= hits / 3000 <= 0.975


def test_two_proportions_score_test_equals_pooled_z_by_hand():
    d = proportions.two_proportions(90, 100, 80, 120)
    pooled = 170 / 220
    z = (80 / 120 - 90 / 100) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 120))
    assert d.p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert d.p_less == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), rel=1e-9)
    assert not d.paired and d.ci[0] < d.diff < d.ci[1]
    same = proportions.two_proportions(90, 100, 90, 100)
    assert same.p == 1 and same.diff == 0


# -------------------------------------------------------------------------------------------- bootstrap
def _multiplicities(idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, minlength=n)


def test_bootstrap_detection_metrics_equal_the_suites_and_weighted_sklearn():
    rng = np.random.default_rng(5)
    s_in, s_out = np.round(rng.normal(1, 1, 300), 1), np.round(rng.normal(0, 1, 200), 1)  # many ties
    ref = detection_metrics(torch.tensor(s_in), torch.tensor(s_out))
    full = (np.arange(300)[None], np.arange(200)[None])
    assert bootstrap.average_precision(s_in, s_out)(*full)[0] == pytest.approx(ref["aupr"], abs=1e-12)
    assert bootstrap.fpr_at_tpr(s_in, s_out)(*full)[0] == pytest.approx(ref["fpr95"], abs=1e-12)
    idx_in, idx_out = rng.integers(0, 300, (4, 300)), rng.integers(0, 200, (4, 200))
    aps = bootstrap.average_precision(s_in, s_out)(idx_in, idx_out)
    fprs = bootstrap.fpr_at_tpr(s_in, s_out)(idx_in, idx_out)
    labels = np.r_[np.ones(300), np.zeros(200)]
    for r in range(4):
        weights = np.r_[_multiplicities(idx_in[r], 300), _multiplicities(idx_out[r], 200)]
        assert aps[r] == pytest.approx(average_precision_score(labels, np.r_[s_in, s_out], sample_weight=weights),
                                       abs=1e-12)
        expanded = np.r_[s_in[idx_in[r]], s_out[idx_out[r]]]
        assert fprs[r] == pytest.approx(fpr_at_tpr(labels, expanded), abs=1e-12)


def test_bootstrap_ece_and_mce_equal_the_calibration_metrics_on_every_resample():
    rng = np.random.default_rng(6)
    conf = torch.rand(500, dtype=torch.float32) * 0.6 + 0.4
    correct = torch.rand(500) < conf
    bins = bin_indices(conf, 20, "left").numpy()
    metric = bootstrap.ece(conf.numpy(), correct.numpy(), bins, 20)
    assert metric(np.arange(500)[None])[0] == pytest.approx(expected_calibration_error(conf, correct, 20), abs=1e-12)
    idx = rng.integers(0, 500, (3, 500))
    values = metric(idx)
    mce = bootstrap.ece(conf.numpy(), correct.numpy(), bins, 20, maximum=True)(idx)
    for r in range(3):
        assert values[r] == pytest.approx(expected_calibration_error(conf[idx[r]], correct[idx[r]], 20), abs=1e-12)
        assert mce[r] == pytest.approx(reliability_bins(conf[idx[r]], correct[idx[r]], 20).mce(), abs=1e-12)


def test_paired_bootstrap_identical_inputs_zero_difference_p_one_and_seeded():
    rng = np.random.default_rng(7)
    nll = rng.exponential(1, 1000)
    same = bootstrap.paired(bootstrap.mean(nll), bootstrap.mean(nll), [1000], n_resamples=200)
    assert same.diff == 0 and same.p == 1 and same.ci == (0.0, 0.0)
    other = nll + rng.normal(0.05, 0.1, 1000)
    one = bootstrap.paired(bootstrap.mean(nll), bootstrap.mean(other), [1000], n_resamples=300, seed=3)
    two = bootstrap.paired(bootstrap.mean(nll), bootstrap.mean(other), [1000], n_resamples=300, seed=3)
    assert one == two


def test_paired_bootstrap_standard_error_matches_the_paired_mean_and_beats_unpaired():
    """For a mean, the bootstrap SE of the paired difference is the SE of the mean of the per-input
    differences (statsmodels DescrStatsW); the unpaired bootstrap sees the much larger independent SE."""
    rng = np.random.default_rng(8)
    base = rng.exponential(1, 4000)
    other = base + rng.normal(0.02, 0.05, 4000)
    d = bootstrap.paired(bootstrap.mean(base), bootstrap.mean(other), [4000], n_resamples=2000, seed=1)
    se_boot = (d.ci[1] - d.ci[0]) / (2 * 1.96)
    se_ref = DescrStatsW(other - base).std_mean
    assert se_boot == pytest.approx(se_ref, rel=0.1)
    assert d.p < 1e-6
    u = bootstrap.unpaired(bootstrap.mean(base), [4000], bootstrap.mean(other), [4000], n_resamples=500, seed=1)
    assert u.p > 0.05 and not u.paired


# --------------------------------------------------------------------------------------- Holm, t-interval
def test_holm_equals_the_step_down_rule_by_hand():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    finite = [0.01, 0.04, 0.03, 0.005]
    order = sorted(range(4), key=lambda i: finite[i])
    expected, running = [0.0] * 4, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * finite[i]))
        expected[i] = running
    out = multiple.holm(p)
    assert out[:4] == pytest.approx(expected) and math.isnan(out[4])


def test_t_interval_equals_statsmodels_tconfint():
    values = [71.2, 70.4, 72.9, 69.8, 71.0]
    s = multiple.t_interval(values)
    lo, hi = DescrStatsW(np.array(values)).tconfint_mean(alpha=0.05)
    assert s.ci == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert s.std == pytest.approx(np.std(values, ddof=1)) and s.k == 5
    assert math.isnan(multiple.t_interval([70.0]).half_width)
