"""Leaderboards mark our numbers that are not significantly different from the best of ours (≈, paired McNemar on
shared inputs) and show rows averaged over several records as mean ± std with the t-interval in a note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.weightstats import DescrStatsW

from jembench.evidence import Evidence, StreamDigest, stream
from jembench.leaderboard import build
from jembench.records import load_records
from jembench.render import render

N = 2000


def _record(path: Path, name: str, correct: np.ndarray, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"schema": "jembench-record/1", "suite": "accuracy", "model": {"name": name, "method": "softmax"},
              "dataset": "digits", "protocol": {"name": "accuracy", "hash": "h" * 64}, "seed": seed,
              "metrics": {"accuracy": 100 * correct.mean(), "n": float(N)}, "details": {"n": N}}
    ev = Evidence()
    ev.add("test/correct", correct, "bool")
    digest = StreamDigest()
    digest.update(np.zeros((N, 1)), np.zeros(N))
    ev.streams["test"] = stream("digits", digest, split="test", split_size=N)
    record["evidence"] = ev.write(path)
    path.write_text(json.dumps(record))


def _model(n_correct: int, flips: int = 0) -> np.ndarray:
    c = np.zeros(N, dtype=bool)
    c[:n_correct] = True
    c[:flips] = False  # lose the first ``flips``, gain as many others
    c[n_correct:n_correct + flips] = True
    return c


def test_cells_within_the_noise_of_the_best_are_marked(tmp_path):
    best = _model(1900)
    _record(tmp_path / "a.json", "best", best)
    _record(tmp_path / "b.json", "close", _model(1896))  # 4 fewer, all discordant against: p = 0.125
    _record(tmp_path / "c.json", "far", _model(1850))  # 50 fewer: p < 1e-14
    (section,) = build("hybrid", None, load_records([tmp_path]))
    cells = {r.model: r.cells["accuracy"] for r in section.rows}
    assert cells["close (ours)"].mark == "≈" and cells["far (ours)"].mark == "" and cells["best (ours)"].mark == ""
    md = render([section], "md")
    assert "94.80 ± 0.50≈" in md and "not significantly different from the best" in md


def test_rows_averaged_over_records_show_mean_std_and_t_interval(tmp_path):
    values = []
    for seed, n_correct in enumerate((1900, 1880, 1890)):
        _record(tmp_path / f"s{seed}.json", "seeds", _model(n_correct), seed=seed)
        values.append(100 * n_correct / N)
    (section,) = build("hybrid", None, load_records([tmp_path]))
    md = render([section], "md")
    assert f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" in md
    lo, hi = DescrStatsW(np.array(values)).tconfint_mean()
    assert f"{lo:.2f} to {hi:.2f}" in md and "over 3 records" in md
    assert values == pytest.approx(list(section.rows[0].cells["accuracy"].values))
