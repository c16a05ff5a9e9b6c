"""`jembench check --baseline` decides by the paired rule when baseline and record carry evidence of the same
inputs: a regression is a drop that is significant (one-sided McNemar exact, Holm) and beyond the margin; the
unpaired rule decides otherwise, and every row names its rule. Records here are synthetic (10,000 inputs with
chosen discordant pairs), so each case is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jembench.check import compare_baseline, load_rules
from jembench.cli import main
from jembench.evidence import Evidence, StreamDigest, stream
from jembench.records import load_records

N = 10_000


def _record(folder: Path, correct: np.ndarray, *, inputs: str = "same", name: str = "accuracy.json",
            evidence: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    record = {"schema": "jembench-record/1", "suite": "accuracy", "model": {"name": "m", "method": "softmax"},
              "dataset": "digits", "protocol": {"name": "accuracy", "hash": "h" * 64},
              "metrics": {"accuracy": 100 * correct.mean(), "n": float(len(correct))}, "details": {"n": len(correct)}}
    if evidence:
        ev = Evidence()
        ev.add("test/correct", correct, "bool")
        digest = StreamDigest()
        digest.update(np.full((len(correct), 1), 0.0 if inputs == "same" else 1.0), np.zeros(len(correct)))
        ev.streams["test"] = stream("digits", digest, split="test", split_size=len(correct))
        record["evidence"] = ev.write(path)
    path.write_text(json.dumps(record))
    return path


def _pair(worse: int, better: int, base_correct: int = 9500) -> tuple[np.ndarray, np.ndarray]:
    """Baseline with ``base_correct`` right; the record loses ``worse`` of them and gains ``better`` others."""
    a = np.zeros(N, dtype=bool)
    a[:base_correct] = True
    b = a.copy()
    b[:worse] = False
    b[base_correct:base_correct + better] = True
    return a, b


def _check(tmp_path: Path, worse: int, better: int, base_correct: int = 9500, **kw) -> list:
    a, b = _pair(worse, better, base_correct)
    base, rec = tmp_path / "base", tmp_path / "rec"
    _record(base, a)
    _record(rec, b, **kw)
    comparisons, _ = compare_baseline(load_records([rec]), load_records([base]), load_rules())
    return comparisons


def test_a_significant_drop_beyond_the_margin_is_a_regression_the_unpaired_rule_misses(tmp_path):
    (c,) = _check(tmp_path, worse=80, better=0)  # 95.0 -> 94.2: 0.8 points, every discordant pair against
    assert c.paired is not None and c.rule == "paired McNemar exact α=0.05 Holm" and c.status == "REGRESSION"
    assert c.p_holm < 1e-20 and c.allowed == 0.5
    unpaired, _ = compare_baseline(load_records([tmp_path / "rec"]), load_records([tmp_path / "base"]), load_rules(),
                                   paired=False)
    assert unpaired[0].rule == "binomial z=3" and unpaired[0].status == "ok"  # allowed ±0.94 points


def test_a_significant_drop_within_the_margin_passes(tmp_path):
    (c,) = _check(tmp_path, worse=40, better=0)  # 0.4 points < margin 0.5
    assert c.p_holm < 1e-10 and c.status == "ok"


def test_a_large_but_insignificant_drop_passes(tmp_path):
    (c,) = _check(tmp_path, worse=2080, better=2000, base_correct=5000)  # 0.8 points; z = 80 / sqrt(4080) = 1.25
    assert c.p_holm > 0.05 and c.status == "ok" and c.reference - c.value == pytest.approx(0.8)


def test_other_inputs_or_no_evidence_fall_back_to_the_unpaired_rule(tmp_path):
    (c,) = _check(tmp_path / "other", worse=80, better=0, inputs="other")
    assert c.paired is None and c.rule == "binomial z=3"
    (c,) = _check(tmp_path / "none", worse=80, better=0, evidence=False)
    assert c.paired is None and c.rule == "binomial z=3"


def test_holm_adjusts_over_the_metrics_the_paired_rule_decides(tmp_path):
    a, b = _pair(worse=60, better=0)
    for name in ("r1.json", "r2.json"):
        _record(tmp_path / "base", a, name=name)
    rec = [_record(tmp_path / "rec", b, name=name) for name in ("r1.json", "r2.json")]
    base = load_records([tmp_path / "base"])
    # two records of model "m": each has a baseline group of two records -> several baseline records: unpaired
    comparisons, _ = compare_baseline(load_records(rec), base, load_rules())
    assert all(c.paired is None for c in comparisons)
    single = [load_records([tmp_path / "base" / "r1.json"])[0]]
    comparisons, _ = compare_baseline(load_records(rec), single, load_rules())
    raw = comparisons[0].p_worse
    assert [c.p_holm for c in comparisons] == pytest.approx([min(1, 2 * raw)] * 2)


def test_cli_rows_name_the_rule_and_alpha_is_validated(tmp_path, capsys):
    a, b = _pair(worse=80, better=0)
    _record(tmp_path / "base", a)
    _record(tmp_path / "rec", b)
    assert main(["check", str(tmp_path / "rec"), "--baseline", str(tmp_path / "base")]) == 1
    out = capsys.readouterr().out
    assert "paired McNemar exact α=0.05 Holm" in out and "margin 0.5" in out and "p worse" in out
    assert "(1 decided by the paired rule)" in out
    assert main(["check", str(tmp_path / "rec"), "--baseline", str(tmp_path / "base"), "--unpaired"]) == 0
    assert "binomial z=3" not in capsys.readouterr().out  # nothing failed: no row printed
    assert main(["check", str(tmp_path / "rec"), "--baseline", str(tmp_path / "base"), "--alpha", "1.5"]) == 2
    assert "--alpha" in capsys.readouterr().err
