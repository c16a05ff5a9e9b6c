"""`jembench check`'s derived tolerances: Wilson / Hanley–McNeil standard errors against scipy, scikit-learn and
hand-derived cases; a record pair just inside vs just outside the derived tolerance; failures-only vs --all."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from test_eval_helpers import write_record_json as write

from jembench.check import compare_baseline, load_rules
from jembench.cli import main
from jembench.metrics.detection import auroc_standard_error
from jembench.protocols import load_protocol
from jembench.records import load_records, make_record
from jembench.sampling_error import standard_error, wilson_se

MODEL = {"name": "jem-digits", "method": "jem", "dataset": "digits"}
Z = 3.0


def scipy_wilson_se(k: int, n: int, z: float = Z) -> float:
    """Wilson half-width / z in %-points, from scipy's interval at the confidence z stands for."""
    ci = binomtest(k, n).proportion_ci(confidence_level=2 * norm.cdf(z) - 1, method="wilson")
    return 100 * (ci.high - ci.low) / 2 / z


def test_wilson_se_hand_derived_and_against_scipy():
    # p = 1/2, n = 100, z = 2: √(0.25/100 + 4/40000) / (1 + 4/100) = √0.0026 / 1.04 = 0.0490290
    assert wilson_se(50.0, 100, 2.0) == pytest.approx(4.90290, abs=1e-5)
    for k, n in [(324, 360), (18, 20), (0, 20), (20, 20), (9717, 10000), (1, 7)]:
        assert wilson_se(100 * k / n, n, Z) == pytest.approx(scipy_wilson_se(k, n), rel=1e-9), (k, n)
    assert wilson_se(100.0, 20, Z) > 0  # unlike the Wald error, not zero at 100 %
    assert math.isnan(wilson_se(90.0, 0, Z))


def test_hanley_mcneil_se_hand_derived_and_by_simulation_with_sklearn():
    # A = 0.8, 50 + 50: Q1 = 2/3, Q2 = 1.28/1.8; SE² = [0.16 + 49(Q1 − 0.64) + 49(Q2 − 0.64)] / 2500
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    assert auroc_standard_error(0.8, 50, 50) == pytest.approx(math.sqrt((0.16 + 49 * (q1 - .64) + 49 * (q2 - .64))
                                                                        / 2500), rel=1e-12)
    # the formula is exact for exponential scores: negatives Exp(rate 4), positives Exp(rate 1) give A = 4/5
    rng = np.random.default_rng(0)
    pos, neg = rng.exponential(1.0, (4000, 50)), rng.exponential(0.25, (4000, 50))
    aurocs = (pos[:, :, None] > neg[:, None, :]).mean(axis=(1, 2))  # Mann–Whitney: P(s_in > s_out), no ties
    labels = np.r_[np.ones(50), np.zeros(50)]
    assert [roc_auc_score(labels, np.r_[pos[i], neg[i]]) for i in range(3)] == pytest.approx(aurocs[:3])
    assert np.mean(aurocs) == pytest.approx(0.8, abs=0.005)
    assert np.std(aurocs, ddof=1) == pytest.approx(auroc_standard_error(0.8, 50, 50), rel=0.05)


def acc(value: float, n: int = 360) -> dict:
    return make_record(suite="accuracy", model=MODEL, dataset="digits", protocol=load_protocol("accuracy"),
                       metrics={"accuracy": value, "nll": 0.5, "n": float(n)})


def ood(auroc: float, se: float | None) -> dict:
    scores = {"auroc": auroc, **({} if se is None else {"auroc_se": se})}
    return make_record(suite="ood", model=MODEL, dataset="digits", protocol=load_protocol("ood"),
                       metrics={"auroc/svhn/log_px": auroc},
                       details={"n_in": 360, "sets": {"svhn": {"n": 500, "scores": {"log_px": scores}}}})


def judge(tmp_path, name: str, baseline: dict, current: dict):
    write(tmp_path / name / "base", "r.json", baseline)
    write(tmp_path / name / "cur", "r.json", current)
    comps, _ = compare_baseline(load_records([tmp_path / name / "cur"]), load_records([tmp_path / name / "base"]),
                                load_rules())
    return {c.metric: c for c in comps}


def test_accuracy_pair_just_inside_and_just_outside_the_binomial_tolerance(tmp_path):
    """Baseline 324/360 = 90 %. The tolerance from scipy's Wilson intervals, 3 · √(SE(324)² + SE(k)²), decides
    which k is the first regression; check must agree on both sides of that boundary."""
    def tolerance(k):
        return Z * math.hypot(scipy_wilson_se(324, 360), scipy_wilson_se(k, 360))

    k_out = max(k for k in range(270, 324) if 100 * (324 - k) / 360 > tolerance(k))
    k_in = k_out + 1
    assert 100 * (324 - k_in) / 360 <= tolerance(k_in)
    inside = judge(tmp_path, "in", acc(90.0), acc(100 * k_in / 360))["accuracy"]
    outside = judge(tmp_path, "out", acc(90.0), acc(100 * k_out / 360))["accuracy"]
    assert (inside.status, inside.rule) == ("ok", "binomial z=3")
    assert (outside.status, outside.rule) == ("REGRESSION", "binomial z=3")
    assert inside.allowed == pytest.approx(tolerance(k_in), rel=1e-9)
    assert 7.0 < outside.allowed < 8.0  # ≈ 7.7 points at n = 360 near 82 %: a 10-point drop is caught
    # the same numbers on 10× the inputs: a tighter tolerance, so the "inside" value is now a regression
    assert judge(tmp_path, "big", acc(90.0, 3600), acc(100 * k_in / 360, 3600))["accuracy"].regression
    # no n in the record: the fixed abs rule, and the row says so
    no_n = {**acc(90.0), "metrics": {"accuracy": 90.0}}
    fallback = judge(tmp_path, "non", no_n, {**no_n, "metrics": {"accuracy": 88.5}})["accuracy"]
    assert (fallback.rule, fallback.allowed, fallback.status) == ("fixed (no n)", 1.0, "REGRESSION")


def test_auroc_pair_inside_and_outside_the_hanley_mcneil_tolerance(tmp_path):
    base_se = auroc_standard_error(0.90, 360, 500)
    rules = load_rules()

    def tol(a):
        return Z * math.hypot(base_se, auroc_standard_error(a, 360, 500))

    lo = 0.90 - tol(0.85)
    inside, outside = lo + 0.002, lo - 0.002
    ins = judge(tmp_path, "ai", ood(0.90, base_se), ood(inside, auroc_standard_error(inside, 360, 500)))
    out = judge(tmp_path, "ao", ood(0.90, base_se), ood(outside, None))  # no auroc_se: from the set sizes
    assert ins["auroc/svhn/log_px"].status == "ok" and out["auroc/svhn/log_px"].status == "REGRESSION"
    assert ins["auroc/svhn/log_px"].rule == "hanley-mcneil z=3"
    assert next(r for r in rules if r.pattern == "auroc/*").rule == "hanley-mcneil"
    assert standard_error(ood(0.9, None), "auroc/svhn/log_px", 0.9, Z) == pytest.approx(base_se)


def test_default_output_lists_only_failures_and_all_lists_every_row(tmp_path, capsys):
    write(tmp_path / "base", "acc.json", acc(90.0))
    write(tmp_path / "cur", "acc.json", {**acc(75.0), "metrics": {"accuracy": 75.0, "nll": 0.5, "n": 360.0}})
    args = ["check", str(tmp_path / "cur"), "--baseline", str(tmp_path / "base")]
    assert main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split("|")[2].strip() for line in out if line.startswith("| acc.json")] == ["accuracy ↑"]
    assert out[-1] == (f"check: 2 metric(s) compared against baseline {tmp_path / 'base'}: 1 regression(s), 0 "
                       f"better beyond tolerance -> FAIL")
    assert main([*args, "--all"]) == 1
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.startswith("| acc.json")]
    assert [(r[2].strip(), r[7].strip(), r[8].strip()) for r in rows] == [
        ("accuracy ↑", "binomial z=3", "REGRESSION"), ("nll ↓", "fixed", "ok")]
