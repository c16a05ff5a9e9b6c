"""Calibration metrics and suite (JEM §5.2): ECE/MCE against hand computations, Brier/NLL against independent
formulas, and the CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss

from jembench.data import load_dataset, stack_dataset
from jembench.errors import JembenchError
from jembench.metrics.calibration import (CalibrationAccumulator, brier_score, expected_calibration_error,
                                          reliability_bins)
from jembench.models import load_checkpoint
from jembench.suites import EvalContext, calibration
from test_eval_helpers import is_png, make_wrn_checkpoint, protocol, run_cli


def test_ece_equals_hand_computation_on_constructed_example():
    conf = torch.tensor([0.12, 0.14, 0.47, 0.52, 0.93, 0.97, 1.0, 1.0, 0.5], dtype=torch.float64)
    correct = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1])
    bins = reliability_bins(conf, correct, n_bins=10)
    # by hand, bins of width .1: [.1,.2): .12(0) .14(1); [.4,.5): .47(1); [.5,.6): .52(0) .5(1, left-closed);
    # [.9, 1.]: .93(1) .97(1) 1.0(1) 1.0(0)  — confidence 1.0 falls in the last bin
    assert bins.count == (0, 2, 0, 0, 1, 2, 0, 0, 0, 4)
    gaps = {1: (2, abs(0.5 - 0.13)), 4: (1, abs(1.0 - 0.47)), 5: (2, abs(0.5 - 0.51)), 9: (4, abs(0.75 - 0.975))}
    expected_ece = sum(n * g for n, g in gaps.values()) / 9
    assert bins.ece() == pytest.approx(expected_ece, abs=1e-12)
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(expected_ece, abs=1e-12)
    assert bins.mce() == pytest.approx(0.53, abs=1e-12)
    assert math.isnan(bins.accuracy[0]) and math.isnan(bins.confidence[0])  # empty bin
    assert bins.table()[9] == pytest.approx({"lower": 0.9, "upper": 1.0, "count": 4, "accuracy": 0.75,
                                             "confidence": 0.975})


def _calibrated_set(n: int, n_classes: int, seed: int, temperature: float = 1.0):
    """Logits whose softmax is, by construction, the true label distribution (labels drawn from it)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, n_classes, generator=gen, dtype=torch.float64) * 2.5
    labels = torch.multinomial(F.softmax(logits, 1), 1, generator=gen).squeeze(1)
    return logits / temperature, labels


def test_perfectly_calibrated_synthetic_set_has_ece_near_zero():
    logits, labels = _calibrated_set(100_000, 10, seed=0)
    acc = CalibrationAccumulator(20)
    for i in range(0, len(labels), 4096):
        acc.add_logits(logits[i:i + 4096], labels[i:i + 4096])
    assert acc.summary()["ece"] < 0.01
    over = CalibrationAccumulator(20)  # the same labels, sharpened probabilities: over-confident
    over.add_logits(logits * 3, labels)
    assert over.summary()["ece"] > 0.1


def test_brier_nll_accuracy_match_independent_formulas_and_stream_invariance():
    logits, labels = _calibrated_set(3000, 7, seed=1)
    probs = F.softmax(logits, 1).numpy()
    onehot = np.eye(7)[labels.numpy()]
    one_shot = CalibrationAccumulator(15)
    one_shot.add_logits(logits, labels)
    streamed = CalibrationAccumulator(15)
    for i in range(0, 3000, 128):
        streamed.add_logits(logits[i:i + 128].float(), labels[i:i + 128])
    for s in (one_shot.summary(), streamed.summary()):
        assert s["nll"] == pytest.approx(log_loss(labels.numpy(), probs, labels=list(range(7))), rel=1e-5)
        assert s["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-5)
        assert s["accuracy"] == pytest.approx((probs.argmax(1) == labels.numpy()).mean(), abs=1e-12)
        assert s["n"] == 3000
    assert streamed.bins().count == one_shot.bins().count
    assert brier_score(torch.from_numpy(probs), labels) == pytest.approx(((probs - onehot) ** 2).sum(1).mean())


def test_suite_matches_direct_computation_and_records_noise(tmp_path):
    ckpt_path = make_wrn_checkpoint(tmp_path / "wrn.pt")
    ckpt = load_checkpoint(ckpt_path)
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, record_path=tmp_path / "cal.json")
    record = calibration.run(ckpt, protocol("calibration", n=0, n_bins=20, input_noise=0.0), ctx)
    x, y = stack_dataset(load_dataset("digits", "test"))
    with torch.no_grad():
        logits = ckpt.model(x).double()
    m = record["metrics"]
    assert m["nll"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert m["accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item() * 100)
    conf, pred = F.softmax(logits, 1).max(1)
    assert m["ece"] == pytest.approx(expected_calibration_error(conf, pred == y, 20) * 100, abs=1e-6)
    assert len(record["details"]["bins"]) == 20 and sum(b["count"] for b in record["details"]["bins"]) == len(y)
    assert record["figures"] == ["cal_reliability.png"] and is_png(tmp_path / "cal_reliability.png")
    noisy = calibration.run(ckpt, protocol("calibration", n=100, n_bins=20, input_noise=0.5), ctx)
    assert noisy["details"]["input_noise"] == 0.5 and noisy["protocol"]["table"]["input_noise"] == 0.5
    assert noisy["metrics"]["n"] == 100 and noisy["metrics"]["nll"] != pytest.approx(m["nll"])


@pytest.mark.parametrize("field,value", [("n_bins", 0), ("n_bins", 2.5), ("input_noise", -1), ("n", -3)])
def test_bad_protocol_values_are_one_line_errors(tmp_path, field, value):
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=None))
    with pytest.raises(JembenchError, match=field) as info:
        calibration.run(ckpt, protocol("calibration", **{field: value}), EvalContext(dataset="digits",
                                                                                    out_dir=tmp_path))
    assert "\n" not in str(info.value)


def test_cli_end_to_end_writes_record_and_reliability_png(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt")
    out = tmp_path / "out" / "cal.json"
    proc = run_cli("eval", "--suite", "calibration", "--preset", "tiny", ckpt, "--out", out)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["suite"] == "calibration" and record["protocol"]["name"] == "calibration-tiny"
    assert set(record["metrics"]) == {"ece", "mce", "nll", "brier", "accuracy", "n"}
    assert len(record["details"]["bins"]) == record["protocol"]["table"]["n_bins"]
    assert all(is_png(out.parent / f) for f in record["figures"]) and record["figures"]
    assert "ECE % ↓" in proc.stdout and "Reliability bins" in proc.stdout
