"""An AUROC's error follows how its sample was drawn (issue 26 item 1): Hanley–McNeil counts n_out independent OOD
images, but the Constant set (σ = 0) is one image repeated and a side whose scores all tie is a single point — the
AUROC is then a proportion of the other side's inputs, with the binomial (Wilson) error. Checked against
statsmodels' Wilson interval, a hand-derived case and a simulation scored by scikit-learn."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from jembench.check import compare_baseline, load_rules
from jembench.metrics.detection import detection_metrics
from jembench.records import load_records
from jembench.sampling_error import auroc_error, auroc_rule, auroc_standard_error, standard_error

DEMO_OOD = Path(__file__).resolve().parent.parent / "results" / "runs" / "demo" / "jem" / "ood.json"


def wilson_se(a: float, n: int, z: float = 1.0) -> float:
    """statsmodels' Wilson half-width / z of a proportion ``a`` of ``n`` (a fraction)."""
    low, high = proportion_confint(a * n, n, alpha=2 * norm.sf(z), method="wilson")
    return (high - low) / (2 * z)


def test_one_point_out_side_is_a_proportion_of_the_in_side_hand_derived():
    # in-scores 1..8, every OOD score 4.5: AUROC = P(s_in > 4.5) = 4/8 (no ties with the point)
    s_in, s_out = np.arange(1.0, 9.0), np.full(30, 4.5)
    got = detection_metrics(s_in, s_out)
    assert got["auroc"] == 0.5 and got["out_tied"] and not got["in_tied"]
    # p = 1/2, n = 8, z = 1: Wilson half-width √(0.25/8 + 1/256) / (1 + 1/8) = 0.1875 (hand-derived)
    assert got["auroc_se"] == pytest.approx(math.sqrt(0.25 / 8 + 1 / 256) / (1 + 1 / 8), rel=1e-12)
    assert got["auroc_se"] == pytest.approx(wilson_se(0.5, 8), rel=1e-9)
    # Hanley–McNeil would have counted 30 OOD draws
    assert got["auroc_se"] != pytest.approx(auroc_standard_error(0.5, 8, 30), rel=0.05)
    # the mirror case: one in-distribution point, 20 OOD inputs of which 5 score above it
    mirror = detection_metrics(np.full(12, 0.0), np.r_[np.full(15, -1.0), np.full(5, 1.0)])
    assert mirror["in_tied"] and mirror["auroc"] == 0.75
    assert mirror["auroc_se"] == pytest.approx(wilson_se(0.75, 20), rel=1e-9)


def test_ties_within_float32_rounding_count_as_one_point():
    """Identical inputs scored in batches of different sizes may differ in the last bits."""
    point = np.float32(0.7312)
    s_out = np.r_[np.full(256, point), np.full(244, np.nextafter(point, np.float32(1)))].astype(np.float64)
    assert detection_metrics(np.linspace(0, 1, 50), s_out)["out_tied"]
    assert not detection_metrics(np.linspace(0, 1, 50), np.linspace(0.7, 0.71, 500))["out_tied"]


def test_simulated_constant_set_spread_is_binomial_not_hanley_mcneil():
    """Re-draw the in-distribution side (n = 360) against one OOD point: the AUROC's spread over re-draws, scored by
    scikit-learn, is the binomial one; Hanley–McNeil at n_out = 500 understates it."""
    rng = np.random.default_rng(0)
    n_in, n_out, c = 360, 500, 0.0
    p_above = norm.sf(c, loc=1.5)  # in-scores N(1.5, 1): AUROC = P(s_in > 0) ≈ 0.933
    labels = np.r_[np.ones(n_in), np.zeros(n_out)]
    aurocs = np.array([roc_auc_score(labels, np.r_[rng.normal(1.5, 1.0, n_in), np.full(n_out, c)])
                       for _ in range(3000)])
    assert aurocs.mean() == pytest.approx(p_above, abs=0.002)
    rule = auroc_rule(n_in, 1)
    assert (rule.name, rule.sizes, rule.label) == ("binomial", (n_in,), "binomial (OOD side tied)")
    binomial = wilson_se(p_above, n_in)
    assert aurocs.std(ddof=1) == pytest.approx(binomial, rel=0.06)
    assert auroc_standard_error(p_above, n_in, n_out) < 0.8 * aurocs.std(ddof=1)  # the wrong rule: too narrow


def _older_record() -> dict:
    """The committed demo JEM OOD record as code before the ``distinct`` counts and the ``in_tied`` / ``out_tied``
    flags wrote it (σ = 0 on every set)."""
    record = json.loads(DEMO_OOD.read_text(encoding="utf-8"))
    assert record["details"]["input_noise"] == 0.0
    for found in record["details"]["sets"].values():
        found.pop("distinct", None)
        for score in found.get("scores", {}).values():
            score.pop("in_tied", None)
            score.pop("out_tied", None)
    return record


def test_records_name_the_rule_new_fields_and_older_constant_records():
    record = _older_record()
    n_in = record["details"]["n_in"]
    found = auroc_error(record, "auroc/constant/max_py")
    assert (found.name, found.sizes) == ("binomial", (n_in,))  # σ = 0: the Constant set is one image repeated
    a = record["metrics"]["auroc/constant/max_py"]
    assert standard_error(record, "auroc/constant/max_py", a) == pytest.approx(wilson_se(a, n_in), rel=1e-9)
    assert auroc_error(record, "auroc/uniform/max_py").name == "hanley-mcneil"
    noisy = copy.deepcopy(record)
    noisy["details"]["input_noise"] = 0.03  # noise makes every copy another input: n independent draws again
    assert auroc_error(noisy, "auroc/constant/max_py").sizes == (n_in, 500)
    counted = copy.deepcopy(record)
    counted["details"]["sets"]["interp"]["distinct"] = 1  # a count in the record: duplicates are one draw
    assert auroc_error(counted, "auroc/interp/log_px").label == "binomial (OOD side tied)"
    counted["details"]["sets"]["uniform"]["distinct"] = 50
    assert auroc_error(counted, "auroc/uniform/max_py").sizes == (n_in, 50)


def test_check_rows_say_which_auroc_rule_applied(tmp_path):
    record = _older_record()
    reference = record["metrics"]["auroc/constant/max_py"]
    lower = copy.deepcopy(record)
    lower["metrics"]["auroc/constant/max_py"] = 0.9306  # the case: 0.9306 against 0.9778
    for folder, r in (("base", record), ("cur", lower)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ood.json").write_text(json.dumps(r), encoding="utf-8")
    comps, _ = compare_baseline(load_records([tmp_path / "cur"]), load_records([tmp_path / "base"]), load_rules(),
                                paired=False)
    row = next(c for c in comps if c.metric == "auroc/constant/max_py")
    n_in = record["details"]["n_in"]
    assert row.rule == "binomial (OOD side tied) z=3"
    assert row.allowed == pytest.approx(3 * math.hypot(wilson_se(0.9306, n_in, 3), wilson_se(reference, n_in, 3)),
                                        rel=1e-9)
    assert next(c for c in comps if c.metric == "auroc/interp/max_py").rule == "hanley-mcneil z=3"
