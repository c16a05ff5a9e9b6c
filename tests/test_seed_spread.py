"""A baseline of k seeds (jembench/seed_spread.py): the prediction bound of one new run, checked against statsmodels'
prediction interval of an intercept-only OLS fit and by simulation (a new run from the same distribution falls below
it at the stated rate; the t-interval of the mean would cry wolf far more often); and ``check`` against such a
baseline, row by row, naming which of the seeds' spread and the sampling error set the tolerance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import norm
from scipy.stats import t as student_t

from test_eval_helpers import write_record_json as write

from jembench.check import compare_baseline, load_rules
from jembench.cli import main
from jembench.protocols import load_protocol
from jembench.records import load_records, make_record
from jembench.sampling_error import wilson_se
from jembench.seed_spread import prediction_bound

MODEL = {"name": "jem-digits", "method": "jem", "dataset": "digits"}


def statsmodels_bound(values: list[float], z: float) -> float:
    """Half-width of statsmodels' prediction interval for one new observation (intercept-only OLS), two-sided at
    2·Φ(−z) — i.e. one-sided at Φ(−z)."""
    fit = sm.OLS(np.asarray(values), np.ones((len(values), 1))).fit()
    frame = fit.get_prediction(np.ones((1, 1))).summary_frame(alpha=2 * norm.sf(z))
    return float(frame["obs_ci_upper"].iloc[0] - frame["mean"].iloc[0])


@pytest.mark.parametrize("values,z", [([96.1, 97.5, 95.8, 96.9, 97.2], 3.0), ([0.93, 0.97, 0.95], 2.0),
                                      (list(np.linspace(0.5, 0.9, 10)), 3.0), ([1.0, 2.0], 1.0)])
def test_prediction_bound_equals_statsmodels(values, z):
    got = prediction_bound(values, z)
    assert got.k == len(values) and got.mean == pytest.approx(np.mean(values))
    assert got.sd == pytest.approx(np.std(values, ddof=1))
    assert got.half_width == pytest.approx(statsmodels_bound(values, z), rel=1e-9)
    assert got.t == pytest.approx(student_t.ppf(norm.cdf(z), len(values) - 1), rel=1e-9)


def test_no_spread_from_fewer_than_two_values():
    assert prediction_bound([97.0], 3.0) is None and prediction_bound([97.0, math.nan], 3.0) is None
    assert prediction_bound([], 3.0) is None


def test_a_new_run_falls_below_the_bound_at_the_stated_rate_and_the_mean_interval_would_not():
    rng = np.random.default_rng(1)
    z, k, trials = 2.0, 6, 40_000  # one-sided 2.3 %
    draws = rng.normal(90.0, 1.5, (trials, k + 1))
    below_pi = below_ci = 0
    for row in draws:
        b = prediction_bound(row[:k], z)
        below_pi += row[k] < b.mean - b.half_width
        below_ci += row[k] < b.mean - b.t * b.sd / math.sqrt(k)  # the t-interval of the seed mean
    assert below_pi / trials == pytest.approx(norm.sf(z), abs=0.003)
    assert below_ci / trials > 4 * norm.sf(z)  # the wrong interval: a false alarm several times as often


def acc(value: float, seed: int = 0, sha: str = "") -> dict:
    return make_record(suite="accuracy", model={**MODEL, "sha256": sha}, dataset="digits",
                       protocol=load_protocol("accuracy-tiny"), metrics={"accuracy": value, "nll": 0.3, "n": 360.0},
                       seed=seed)


def seeds_baseline(folder, values):
    for i, v in enumerate(values):
        write(folder / f"seed-{i}", "acc.json", acc(v, sha=f"{i:064x}"))
    return load_records([folder])


def test_check_against_seeds_uses_the_larger_of_spread_and_sampling_error(tmp_path):
    spread = [96.9, 93.1, 97.5, 92.2, 95.8, 96.1, 91.9, 97.2]  # sd 2.2 points: above the sampling error at n = 360
    base = seeds_baseline(tmp_path / "wide", spread)
    b = prediction_bound(spread, 3.0)
    mean = float(np.mean(spread))
    sampling = 3 * math.hypot(wilson_se(88.0, 360, 3), wilson_se(mean, 360, 3))
    assert b.half_width > sampling
    write(tmp_path / "new", "acc.json", acc(mean - b.half_width + 0.05))
    write(tmp_path / "bad", "acc.json", acc(mean - b.half_width - 0.05))
    ok = next(c for c in compare_baseline(load_records([tmp_path / "new"]), base, load_rules())[0]
              if c.metric == "accuracy")
    bad = next(c for c in compare_baseline(load_records([tmp_path / "bad"]), base, load_rules())[0]
               if c.metric == "accuracy")
    assert (ok.status, bad.status) == ("ok", "REGRESSION")
    assert ok.allowed == pytest.approx(b.half_width) and ok.decided_by == "seeds"
    assert ok.rule == f"seeds k=8 t={b.t:.3g} > binomial z=3" and ok.reference == pytest.approx(mean)
    # seeds that agree closely: the sampling error is the floor, and the row says so
    tight = seeds_baseline(tmp_path / "tight", [95.0, 95.1, 94.9, 95.0, 95.2, 94.8, 95.0, 95.1])
    row = next(c for c in compare_baseline(load_records([tmp_path / "new"]), tight, load_rules())[0]
               if c.metric == "accuracy")
    value = row.value
    mean = 95.0125
    assert row.decided_by == "sampling" and row.rule.startswith("binomial z=3 ≥ seeds k=8")
    # k runs on the same inputs share one sampling error: the mean's error is one evaluation's, not / k
    assert row.allowed == pytest.approx(3 * math.hypot(wilson_se(value, 360, 3), wilson_se(mean, 360, 3)), rel=1e-9)


def test_check_against_seeds_on_other_inputs_adds_both_variances(tmp_path):
    spread = [96.9, 93.1, 97.5, 92.2, 95.8, 96.1, 91.9, 97.2]
    base = seeds_baseline(tmp_path / "base", spread)
    write(tmp_path / "other", "acc.json", acc(95.0, seed=7))  # another evaluation seed: other inputs
    row = next(c for c in compare_baseline(load_records([tmp_path / "other"]), base, load_rules())[0]
               if c.metric == "accuracy")
    b = prediction_bound(spread, 3.0)
    sampling = 3 * math.hypot(wilson_se(95.0, 360, 3), math.sqrt(sum(wilson_se(v, 360, 3) ** 2 for v in spread)) / 8)
    assert row.decided_by == "both" and "(other inputs)" in row.rule
    assert row.allowed == pytest.approx(math.hypot(b.half_width, sampling), rel=1e-9)


def test_cli_summary_says_which_source_set_the_tolerances(tmp_path, capsys):
    seeds_baseline(tmp_path / "base", [96.9, 93.1, 97.5, 92.2, 95.8, 96.1, 91.9, 97.2])
    write(tmp_path / "cur", "acc.json", acc(95.0))
    assert main(["check", str(tmp_path / "cur"), "--baseline", str(tmp_path / "base"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "seeds k=8" in out and "tolerance set by the between-seed spread for 1, by the metric's own rule for 1" \
        in out.splitlines()[-1]
    assert out.splitlines()[-1].endswith("-> pass")
