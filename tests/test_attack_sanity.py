"""Numbers with their caveats (issue 27 item 4), on hand-built robustness records: the attack sanity checks fire on
exactly the records that fail them (robust above clean, rising with ε, not ~0 at a large ε, gradient-free attacks
beating PGD) and never on one that passes; every table that shows such a row marks it — eval's table, the
leaderboard in Markdown / LaTeX / HTML / CSV, the report — recomputing the verdict from the numbers (a stored
``details.sanity`` is not trusted); the decision-based attacks' medians count only the inputs they attacked."""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from jembench.cli import main
from jembench.leaderboard import build
from jembench.metric_keys import robust_acc
from jembench.protocols import load_protocol
from jembench.records import load_records, make_record
from jembench.render import render
from jembench.suites.robustness import sanity
from jembench.suites.robustness.summary import MIN_ATTACKED, attacked_median, format_table, resummarize

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "results" / "runs" / "demo"
PROTOCOL = load_protocol("robustness-tiny")
LINF = (0.0, 4 / 255, 16 / 255, 64 / 255)
L2 = (0.0, 0.5, 1.0, 2.0)
N = 20


def _record(linf: list[float], l2: list[float], clean: float = 100.0, k: int = 0, name: str = "net",
            l2_found: list[float | None] | None = None) -> dict:
    """A robustness record at one K whose robust accuracies (%) are ``linf`` / ``l2`` over the grids above; the
    boundary attack found ``l2_found`` per input (None: no adversarial)."""
    metrics = {f"clean_acc/k{k}": clean}
    metrics |= {robust_acc("linf", k, e): v for e, v in zip(LINF, linf) if v is not None}  # None: not in the grid
    metrics |= {robust_acc("l2", k, e): v for e, v in zip(L2, l2)}
    found = l2_found if l2_found is not None else [None] * N
    details = {"n": N, "clean": {f"k{k}": [True] * N},
               "boundary": {f"k{k}": {"l2": found, "no_start_inputs": [False] * N}}}
    return make_record(suite="robustness", model={"name": name, "method": "jem", "dataset": "digits"},
                       dataset="digits", protocol=PROTOCOL, metrics=metrics, details=details)


#: a record that passes every check: falls with ε to 0, never above clean, the boundary attack no stronger
GOOD = dict(linf=[100.0, 80.0, 30.0, 0.0], l2=[100.0, 60.0, 20.0, 5.0], l2_found=[3.0] * N)


def _checks(record: dict) -> list[tuple[str, str, int]]:
    return [(c.check, c.norm, c.k) for c in sanity.caveats(record)]


# ------------------------------------------------------------------------------------------------ the checks
def test_a_record_that_passes_every_check_gets_no_caveat():
    assert _checks(_record(**GOOD)) == []
    assert sanity.summary(_record(**GOOD))["passed"] is True
    # exactly NEAR_ZERO left at the largest ε passes (one input in 20); the same with one more input fails
    assert _checks(_record(linf=[100.0, 80.0, 30.0, sanity.NEAR_ZERO], l2=GOOD["l2"], l2_found=[3.0] * N)) == []


@pytest.mark.parametrize("linf, l2, clean, l2_found, expected", [
    # robust accuracy at ε > 0 above the clean accuracy (a stochastic defence answering differently; a grid without
    # ε = 0, as SADA-JEM's official one, so that the curve itself does not rise)
    ([None, 95.0, 30.0, 0.0], GOOD["l2"], 90.0, [3.0] * N, [("exceeds_clean", "linf", 0)]),
    # robust accuracy rising with ε (the attack failed at the larger ε)
    ([100.0, 30.0, 40.0, 0.0], GOOD["l2"], 100.0, [3.0] * N, [("not_monotone", "linf", 0)]),
    # still 10 % robust at 64/255 (the grid's largest, a large ε): gradient masking or too few steps
    ([100.0, 80.0, 30.0, 10.0], GOOD["l2"], 100.0, [3.0] * N, [("not_near_zero", "linf", 0)]),
    # the boundary attack breaks every input within L2 0.5 where PGD leaves 60 %
    (GOOD["linf"], GOOD["l2"], 100.0, [0.4] * N, [("gradient_free_stronger", "l2", 0)]),
])
def test_each_check_fires_on_its_own_failure(linf, l2, clean, l2_found, expected):
    record = _record(linf=linf, l2=l2, clean=clean, l2_found=l2_found)
    assert _checks(record) == expected
    failed = sanity.summary(record)["failed"]
    assert [f["check"] for f in failed] == [e[0] for e in expected] and all(f["text"] for f in failed)


def test_large_eps_check_needs_a_large_eps_and_the_gradient_free_gap_a_margin():
    record = _record(linf=[100.0, 80.0, 30.0, 50.0], l2=GOOD["l2"], l2_found=[3.0] * N)
    for key in [k for k in record["metrics"] if k.startswith("robust_acc/linf/") and k.endswith("=0.25098")]:
        del record["metrics"][key]  # the grid now stops at 16/255 = LARGE_EPS: still a large ε
    assert _checks(record) == [("not_near_zero", "linf", 0)]
    small = _record(**GOOD)
    small["metrics"] = {k: (50.0 if k.endswith("=0.0156863") else v) for k, v in small["metrics"].items()
                        if "=0.25098" not in k and "=0.0627451" not in k}  # grid up to 4/255: not a large ε
    assert ("not_near_zero", "linf", 0) not in _checks(small)
    # the boundary attack one input (5 points) stronger than PGD at L2 0.5: within the margin, no caveat
    found = [0.4] * 9 + [3.0] * 11  # breaks 9 of 20 within 0.5 (55 % robust) where PGD leaves 60 %
    assert _checks(_record(linf=GOOD["linf"], l2=GOOD["l2"], l2_found=found)) == []
    found = [0.4] * 10 + [3.0] * 10  # 50 % robust: 10 points below PGD's 60 %
    assert _checks(_record(linf=GOOD["linf"], l2=GOOD["l2"], l2_found=found)) == [("gradient_free_stronger", "l2", 0)]


def test_other_suites_and_broken_details_get_no_caveat():
    record = _record(**GOOD)
    record["details"] = {"boundary": "not a mapping"}
    assert _checks(record) == []
    assert sanity.caveats({"suite": "accuracy", "metrics": {"accuracy": 99.0}}) == []


# ----------------------------------------------------------------------------------- every table marks the row
def _write(folder: Path, name: str, record: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record), encoding="utf-8")
    return folder / name


HOSTILE = "masked<img src=x onerror=alert(1)>_$\\input{x}"


def test_every_format_marks_a_failing_row_and_spells_out_why(tmp_path):
    bad = _record(linf=[100.0, 100.0, 100.0, 100.0], l2=GOOD["l2"], l2_found=[3.0] * N, name=HOSTILE)
    bad["details"]["sanity"] = {"passed": True, "failed": []}  # a stored verdict is not trusted
    _write(tmp_path, "bad.json", bad)
    _write(tmp_path, "good.json", _record(**GOOD, name="honest"))
    sections = build("robustness", None, load_records([tmp_path]))
    linf = next(s for s in sections if "L∞" in s.title)
    rows = {r.model.split(" (")[0]: r for r in linf.rows}
    assert rows[HOSTILE].caveats and not rows["honest"].caveats
    md = render(sections, "md")
    marked = [line for line in md.splitlines() if line.startswith("| *masked")]  # its L∞ and L2 rows
    assert ["⚠*" in line for line in marked] == [True, False]  # only the L∞ curve fails
    assert not any("honest" in line and "⚠" in line for line in md.splitlines())
    note = next(line for line in md.splitlines() if line.startswith("- ⚠ masked"))
    assert "100.0 % at L∞ ε = 64/255" in note and "<img" not in md and "&lt;img" in note
    tex = render(sections, "latex")
    assert r"$^{!}$" in tex and r"\$\textbackslash{}input" in tex and "\\input{x}" not in tex
    page = render(sections, "html")
    assert "⚠" in page and "<img src=x" not in page and "&lt;img src=x" in page
    csv = pd.read_csv(io.StringIO(render(sections, "csv")))
    flagged = csv[csv["flags"].fillna("").str.contains("attack_sanity")]
    assert set(flagged["model"].str.split(" \\(").str[0]) == {HOSTILE}
    assert flagged["caveats"].str.contains("64/255").all() and "clean se" in csv.columns


def test_eval_table_and_report_name_the_caveats(tmp_path):
    bad = _record(linf=[100.0, 100.0, 100.0, 100.0], l2=GOOD["l2"], l2_found=[3.0] * N, k=1)
    table = format_table(bad)
    row = next(line for line in table.splitlines() if line.startswith("| net"))
    assert "net ⚠" in row and "100.0 ± " in row  # the accuracies carry their Wilson error at n = 20
    assert "⚠ K=1, L∞: robust accuracy 100.0 % at L∞ ε = 64/255" in table
    assert "⚠" not in format_table(_record(**GOOD))
    run = tmp_path / "run"
    _write(run, "robustness.json", bad)
    assert main(["report", str(run), "-o", str(tmp_path / "report.html"), "--no-published"]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "⚠ K=1, L∞: robust accuracy 100.0 %" in page and "attack sanity checks failed" in page


def test_check_notes_the_caveats_of_the_records_it_checks(tmp_path, capsys):
    """`jembench check` passes a record whose robust accuracies did not move, but says they are upper bounds."""
    bad = _record(linf=[100.0, 100.0, 100.0, 100.0], l2=GOOD["l2"], l2_found=[3.0] * N)
    path = _write(tmp_path / "run", "robustness.json", bad)
    _write(tmp_path / "base", "robustness.json", bad)
    assert main(["check", str(path), "--baseline", str(tmp_path / "base")]) == 0
    out = capsys.readouterr().out
    assert f"note: ⚠ {path}: attack sanity checks failed (K=0, L∞: not_near_zero)" in out and "-> pass" in out
    _write(tmp_path / "good", "robustness.json", _record(**GOOD))
    assert main(["check", str(tmp_path / "good"), "--baseline", str(tmp_path / "good")]) == 0
    assert "⚠" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ attacked medians
def _order_statistic_interval(values: list[float]) -> list[float]:
    """The distribution-free 95 % interval of a median by hand: the widest r with P(Bin(k, ½) < r) ≤ 2.5 %."""
    x, k = sorted(values), len(values)
    r = max(r for r in range(1, k // 2 + 1) if binom.cdf(r - 1, k, 0.5) <= 0.025)
    return [x[r - 1], x[k - r]]


def test_median_counts_only_the_attacked_inputs():
    rng = np.random.default_rng(0)
    distances = [float(v) for v in rng.uniform(0.5, 2.0, 20)]
    correct = [True] * 20
    no_start = [False] * 20
    for i in (0, 1, 2):  # misclassified: distance 0 in the per-input list, not attacked
        distances[i], correct[i] = 0.0, False
    for i in (3, 4, 5, 6):  # no starting point: None, not attacked
        distances[i], no_start[i] = None, True
    distances[7] = None  # attacked, never broken: it resisted (+inf)
    median, attacked, ci = attacked_median(distances, correct, no_start)
    expect = [math.inf if v is None else v for i, v in enumerate(distances) if i not in range(7)]
    assert attacked == 13 and median == pytest.approx(float(np.median(expect)))
    assert ci == pytest.approx(_order_statistic_interval(expect))  # k = 13: x(3) and x(11)
    six = attacked_median([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [True] * 6, [False] * 6)
    assert six == (3.5, 6, _order_statistic_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    few = attacked_median([1.0] * 5 + [None] * 15, [True] * 20, [False] * 5 + [True] * 15)
    assert math.isnan(few[0]) and few[1:] == (5, None) and MIN_ATTACKED == 6


def test_a_record_with_most_inputs_unattacked_prints_na_never_inf(tmp_path, capsys):
    """The issue's case: 15 of 20 inputs had no starting point. The old median over all inputs read inf; now the
    median is over the 5 attacked ones — too few: "n/a (5 attacked)" in eval's table, NaN in the record."""
    record = _record(**GOOD)
    found = [1.0] * 5 + [None] * 15
    record["details"]["boundary"]["k0"] = {"l2": found, "no_start_inputs": [False] * 5 + [True] * 15}
    record["metrics"]["boundary/median_l2/k0"] = math.inf  # as records were written before
    path = _write(tmp_path, "robustness.json", record)
    assert main(["resummarize", str(path)]) == 0
    assert "1 of 1 robustness record(s) changed" in capsys.readouterr().out
    new = json.loads(path.read_text(encoding="utf-8"))
    assert "boundary/median_l2/k0" not in new["metrics"]
    assert math.isnan(new["metrics"]["boundary/attacked_median_l2/k0"])
    assert new["details"]["boundary"]["k0"]["attacked"] == 5 and new["details"]["sanity"]["passed"] is True
    table = format_table(new)
    assert "n/a (5 attacked)" in table and "inf" not in table
    assert main(["resummarize", str(path)]) == 0 and "0 of 1" in capsys.readouterr().out  # idempotent
    broken = copy.deepcopy(record)
    broken["details"]["boundary"]["k0"]["l2"] = found[:3]  # fewer distances than inputs
    bad = _write(tmp_path / "bad", "robustness.json", broken)
    assert main(["resummarize", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "details.boundary.k0" in err[0] and "regenerate it" in err[0]
    assert json.loads(bad.read_text(encoding="utf-8")) == broken  # left as it was


def test_committed_robustness_records_are_up_to_date(tmp_path):
    """Every committed robustness record already holds what the current summary derives from its details (else:
    `make resummarize`), and the eval table of the demo softmax — 100 % at ε = 64/255 under K = 10 — is flagged."""
    for path in sorted((REPO / "results" / "runs").rglob("*robustness*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        assert not resummarize(copy.deepcopy(record)), f"{path} is stale: run `make resummarize`"
    softmax = json.loads((DEMO / "softmax" / "robustness.json").read_text(encoding="utf-8"))
    assert ("not_near_zero", "linf", 10) in _checks(softmax)
    assert softmax["details"]["sanity"]["passed"] is False
    shutil.copy(DEMO / "softmax" / "robustness.json", tmp_path / "r.json")
    assert "⚠ K=10, L∞" in format_table(json.loads((tmp_path / "r.json").read_text(encoding="utf-8")))
