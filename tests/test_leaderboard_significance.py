"""Leaderboards mark our numbers that are not significantly different from the best of ours (≈, paired McNemar on
shared inputs), show rows averaged over several records as mean ± std with the t-interval in a note, and emphasize
(bold / underline) only differences that are significant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import test_proportions_2indep as two_proportion_test
from statsmodels.stats.weightstats import DescrStatsW

from jembench.evidence import Evidence, StreamDigest, stream
from jembench.leaderboard import build
from jembench.leaderboard_significance import settle_emphasis
from jembench.sections import Cell, Column, Row, Section
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


# ------------------------------------------------------------------------------------------------ emphasis
def _bold(md: str) -> list[str]:
    return [cell.strip() for line in md.splitlines() if line.startswith("|") for cell in line.split("|")
            if cell.strip().startswith("**") and "(ours)" not in cell]


def test_a_difference_within_the_noise_is_never_bold(tmp_path):
    """Best 1900/2000 vs 1896 (p = 0.125, ≈): a tie — nothing bold, and a note says why; the same best against
    1850 alone (p < 1e-14): bold."""
    _record(tmp_path / "tie" / "a.json", "best", _model(1900))
    _record(tmp_path / "tie" / "b.json", "close", _model(1896))
    md = render(build("hybrid", None, load_records([tmp_path / "tie"])), "md")
    assert _bold(md) == [] and "no bold in Acc % ↑: the best value is not significantly better" in md
    _record(tmp_path / "far" / "a.json", "best", _model(1900))
    _record(tmp_path / "far" / "c.json", "far", _model(1850))
    md = render(build("hybrid", None, load_records([tmp_path / "far"])), "md")
    assert _bold(md) == ["**95.00 ± 0.49**"] and "no bold" not in md


def test_no_bold_beside_a_tie_further_down(tmp_path):
    """The runner-up differs significantly from the best (it lost 20 inputs, gained none), but a third row further
    down does not (lost 125, gained 100: McNemar p > 0.05, ≈): bold would contradict the ≈, so none."""
    best = _model(1900)
    runner = best.copy()
    runner[:20] = False
    third = best.copy()
    third[:125] = False
    third[1900:2000] = True
    p_runner = mcnemar(_table(best, runner), exact=True).pvalue
    p_third = mcnemar(_table(best, third), exact=True).pvalue
    assert p_runner < 0.05 < p_third  # the premise, by statsmodels
    for name, correct in (("best", best), ("runner", runner), ("third", third)):
        _record(tmp_path / f"{name}.json", name, correct)
    (section,) = build("hybrid", None, load_records([tmp_path]))
    cells = {r.model: r.cells["accuracy"] for r in section.rows}
    assert cells["third (ours)"].mark == "≈" and cells["runner (ours)"].mark == ""
    assert all(c.emphasis == 0 for c in cells.values())
    third[1900:2000] = False  # now it lost 125 and gained nothing: significant too — the best is bold again
    _record(tmp_path / "third.json", "third", third)
    (section,) = build("hybrid", None, load_records([tmp_path]))
    assert [r.model for r in section.rows if r.cells["accuracy"].emphasis == 1] == ["best (ours)"]


def _table(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])


@pytest.mark.parametrize("ours, bold", [(97.0, False), (95.0, True)])
def test_ours_against_a_published_number_is_tested_at_our_sizes(tmp_path, ours, bold):
    """A published 97.2 % beside our 97.0 % of 10,000 images (the same protocol, so the same test set) is a tie
    (two-proportion score test p ≈ 0.4); beside our 95.0 % it is significantly better and stays bold."""
    record = {"schema": "jembench-record/1", "suite": "accuracy", "model": {"name": "ours", "method": "softmax"},
              "dataset": "cifar10", "protocol": {"name": "accuracy", "hash": "h" * 64},
              "metrics": {"accuracy": ours, "n": 10000.0}}
    path = tmp_path / "ours.json"
    path.write_text(json.dumps(record))
    p = two_proportion_test(9720, 10000, round(ours * 100), 10000, method="score").pvalue
    assert (p <= 0.05) == bold  # the premise, by statsmodels
    col = Column("accuracy", "Acc % ↑", "higher")
    section = Section("hybrid", "t", "cifar10", "paper", "Table 1", None, [col], [
        Row("", "Softmax + SAM", False, "paper", cells={"accuracy": Cell(97.2, 1, "accuracy")}),
        Row("", "ours (ours)", True, "ours", cells={"accuracy": Cell(ours, 2, "accuracy", protocol="h" * 64,
                                                                     values=(ours,), paths=(str(path),))})])
    settle_emphasis(section)
    assert section.rows[0].cells["accuracy"].emphasis == (1 if bold else 0)
    assert section.rows[1].cells["accuracy"].emphasis == (2 if bold else 0)
