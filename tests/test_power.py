"""The power benchmark's logic on digits (benchmarks/power.py): re-evaluations of an unchanged model under input
noise are checked by both rules of `jembench check --baseline` without a false alarm, a badly degraded model is
flagged by both, and the summary is what the rows say. No timing is asserted."""

from __future__ import annotations

import json

from benchmarks.power import Decision, main, smallest_detected


def test_power_benchmark_on_digits(tiny_softmax_checkpoint, tmp_path):
    out = tmp_path / "power.json"
    assert main(["--checkpoint", str(tiny_softmax_checkpoint), "--dataset", "digits", "--sigma", "0.1",
                 "--reevals", "3", "--levels", "0.02", "1.5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    unchanged, degraded = rows[:3], rows[3:]
    assert [r["label"] for r in unchanged] == ["unchanged, seed 1", "unchanged, seed 2", "unchanged, seed 3"]
    assert all(r["paired"] == "ok" and r["unpaired"] == "ok" for r in unchanged)
    assert result["summary"]["false_alarms_paired"] == 0 and result["summary"]["reevaluations"] == 3
    broken = degraded[-1]
    assert broken["drop"] > 20 and broken["paired"] == "REGRESSION" and broken["unpaired"] == "REGRESSION"
    assert broken["p_paired"] < 1e-6
    assert result["summary"]["smallest_detected_paired"] <= broken["drop"]
    assert result["protocol"]["input_noise"] == 0.1 and "paired" in result["table"]


def test_smallest_detected_is_the_drop_from_which_on_every_larger_one_is_flagged():
    def row(drop, paired, unpaired):
        return Decision("x", 90 - drop, drop, paired, unpaired, 0.5, 1.0)

    rows = [row(0.3, "ok", "ok"), row(1.1, "REGRESSION", "ok"), row(0.8, "REGRESSION", "ok"),
            row(2.5, "REGRESSION", "REGRESSION"), row(1.6, "ok", "ok")]
    assert smallest_detected(rows, "paired") == 2.5  # 1.6 was missed, so 0.8 and 1.1 do not count
    assert smallest_detected(rows, "unpaired") == 2.5
    assert smallest_detected([row(0.5, "ok", "ok")], "paired") is None
