"""Evidence is recomputed, never trusted (issue 21 item 3): ``check`` derives every standard error from the checked
record's own n and never from an error or a size a baseline claims; a metric outside its valid range (metric table,
jembench/metric_keys.py) makes the record unusable — one line naming the file and the key, exit 2, nothing written.
Standard errors are checked against scipy's Wilson interval and the Hanley–McNeil formula computed here by hand."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from scipy.stats import binomtest, norm

from jembench.cli import main
from jembench.metric_keys import SPECS

DEMO = Path(__file__).resolve().parent.parent / "results" / "runs" / "demo" / "jem"
Z = 3.0


def committed(suite: str) -> dict:
    """A committed demo record without its per-input evidence (its sidecar is not copied along: these checks are
    the unpaired rule's, whose errors come from the sizes and values alone)."""
    record = json.loads((DEMO / f"{suite}.json").read_text(encoding="utf-8"))
    record.pop("evidence", None)
    return record


def write(folder: Path, record: dict, name: str = "r.json") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record), encoding="utf-8")  # json writes 1e308, Infinity, 10**400 as given
    return folder / name


def scipy_wilson_se(k: int, n: int, z: float) -> float:
    ci = binomtest(k, n).proportion_ci(confidence_level=2 * norm.cdf(z) - 1, method="wilson")
    return 100 * (ci.high - ci.low) / 2 / z


def hanley_mcneil(a: float, n1: int, n2: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))


def check_rows(capsys, record_dir: Path, baseline_dir: Path) -> tuple[int, dict[str, list[str]], str]:
    """Exit code, the table rows by metric (cells: record, metric, ours, ref, Δ, allowed, rule, status, ...) and
    the whole output of ``jembench check --all``."""
    code = main(["check", str(record_dir), "--baseline", str(baseline_dir), "--all"])
    out, rows = capsys.readouterr().out, {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 8 and cells[1].endswith(".json"):
            rows[cells[2].rsplit(" ", 1)[0]] = cells
    return code, rows, out


def test_a_baseline_claiming_a_huge_auroc_error_cannot_make_an_all_zero_record_pass(tmp_path, capsys):
    base, cur = copy.deepcopy(committed("ood")), copy.deepcopy(committed("ood"))
    for entry in base["details"]["sets"].values():
        for score in entry["scores"].values():
            score["auroc_se"] = 10.0  # "my AUROC is uncertain by ±10": would allow a shortfall of 30
    cur["metrics"] = {k: (0.0 if k.startswith("auroc/") else v) for k, v in cur["metrics"].items()}
    for entry in cur["details"]["sets"].values():
        for score in entry["scores"].values():
            score["auroc_se"] = 10.0
    code, rows, _ = check_rows(capsys, write(tmp_path / "cur", cur).parent, write(tmp_path / "base", base).parent)
    assert code == 1
    n_in = cur["details"]["n_in"]
    for key, value in base["metrics"].items():
        if not key.startswith("auroc/") or value == 0.0:
            continue
        row = rows[key]
        assert row[8] == "REGRESSION", key
        entry = cur["details"]["sets"][key.split("/")[1]]
        n_out = entry["n"]
        # the record's own sizes, both numbers: z · √(SE(0)² + SE(reference)²), never the stored ±10; the Constant
        # set (σ = 0: one image repeated) is a proportion of the n_in in-distribution inputs (Wilson)
        if entry["source"] == "constant":
            expected = max(0.005, Z * math.hypot(scipy_wilson_se(0, n_in, Z), scipy_wilson_se(round(value * n_in),
                                                                                              n_in, Z)) / 100)
        else:
            expected = max(0.005, Z * math.hypot(hanley_mcneil(0.0, n_in, n_out), hanley_mcneil(value, n_in, n_out)))
        assert float(row[6].lstrip("±")) == pytest.approx(expected, rel=5e-3), key  # printed to 3 digits


def test_a_baseline_claiming_a_tiny_n_cannot_widen_the_accuracy_tolerance(tmp_path, capsys):
    base, cur = copy.deepcopy(committed("accuracy")), copy.deepcopy(committed("accuracy"))
    n = int(cur["metrics"]["n"])
    k_ref = round(cur["metrics"]["accuracy"] * n / 100)
    base["metrics"]["accuracy"] = 100.0 * k_ref / n
    base["metrics"]["n"] = 1.0  # at n = 1 the Wilson error of ~90 % is ~30 points: anything would pass
    k = k_ref - 25
    cur["metrics"]["accuracy"] = 100.0 * k / n
    code, rows, out = check_rows(capsys, write(tmp_path / "cur", cur).parent, write(tmp_path / "base", base).parent)
    row = rows["accuracy"]
    expected = Z * math.hypot(scipy_wilson_se(k, n, Z), scipy_wilson_se(k_ref, n, Z))
    assert float(row[6].lstrip("±")) == pytest.approx(expected, rel=5e-3)  # printed with 3 significant digits
    assert (code, row[7], row[8]) == (1, "binomial z=3", "REGRESSION")
    assert f"baseline accuracy was measured on n = 1, this record on n = {n}" in out


BAD_VALUES = [  # (suite, metric key or None = the first key of the suite's family, value, words of the error)
    ("accuracy", "accuracy", 100.5, "outside the valid range of Acc % ([0, 100]"),
    ("accuracy", "accuracy", -0.1, "outside the valid range"),
    ("accuracy", "accuracy", 1e308, "= 1e+308 is outside the valid range"),
    ("accuracy", "accuracy", math.inf, "= inf is outside the valid range"),
    ("accuracy", "accuracy", 10 ** 400, "an integer of 401 digits"),
    ("accuracy", "n", 0.5, "'n' = 0.5 is outside the valid range of n (a whole number in [1, 1e+08]"),
    ("accuracy", "nll", -math.inf, "outside the valid range of NLL"),
    ("ood", "auroc/", 1.5, "outside the valid range of AUROC ([0, 1]"),
    ("ood", "auroc/", -1e-9, "outside the valid range of AUROC"),
    ("ood", "fpr95/", 2.0, "outside the valid range of FPR@95%TPR"),
    ("robustness", "robust_acc/", 101.0, "outside the valid range of Robust %"),
    ("robustness", "boundary/", -math.inf, "outside the valid range of Boundary med. L2"),
    ("robustness", "boundary/", 1e308, "outside the valid range of Boundary med. L2 ([0, 1e+06] or +inf,"),
]


@pytest.mark.parametrize("suite,key,value,words", BAD_VALUES, ids=[f"{k}{v!r}"[:40] for _, k, v, _ in BAD_VALUES])
def test_a_metric_outside_its_valid_range_makes_the_record_unusable(tmp_path, capsys, suite, key, value, words):
    record = copy.deepcopy(committed(suite))
    if key.endswith("/"):
        key = next(k for k in record["metrics"] if k.startswith(key))
    record["metrics"][key] = value
    path = write(tmp_path / "bad", record)
    write(tmp_path / "base", committed(suite))
    out = tmp_path / "board.md"
    for args in (["check", str(path), "--baseline", str(tmp_path / "base")],
                 ["check", str(tmp_path / "base"), "--baseline", str(tmp_path / "bad")],
                 ["leaderboard", str(path), "--out", str(out)], ["report", str(tmp_path / "bad"), "-o", str(out)]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and f"metric {key!r}" in err and words in err, err
        assert not out.exists()


@pytest.mark.parametrize("where,value", [("n_in", 0), ("n_in", 2.5), ("n_in", 10 ** 9), ("set", True),
                                         ("set", -3)])
def test_sample_sizes_must_be_whole_numbers_in_range(tmp_path, capsys, where, value):
    record = copy.deepcopy(committed("ood"))
    if where == "n_in":
        record["details"]["n_in"] = value
    else:
        next(iter(record["details"]["sets"].values()))["n"] = value
    path = write(tmp_path, record)
    assert main(["leaderboard", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "is not a sample size" in err


def test_nan_means_not_measured_and_a_distance_may_be_infinite(tmp_path, capsys):
    """NaN (a set whose scores were NaN, a median over too few attacked inputs) and +inf (a median distance where
    most attacked inputs resisted) are legitimate values: the records load and render."""
    ood, rob = copy.deepcopy(committed("ood")), copy.deepcopy(committed("robustness"))
    ood["metrics"][next(k for k in ood["metrics"] if k.startswith("auroc/"))] = math.nan
    rob["metrics"]["boundary/attacked_median_l2/k0"] = math.inf
    rob["metrics"]["pointwise/attacked_median_l0/k0"] = math.nan
    write(tmp_path, ood, "ood.json")
    write(tmp_path, rob, "robustness.json")
    assert main(["leaderboard", str(tmp_path), "--no-published"]) == 0
    assert "NaN" in capsys.readouterr().out


def test_robustness_records_carry_wilson_errors_at_z_1():
    """The sampling errors the robustness suite writes (and the committed records hold) are Wilson's at z = 1 — not
    Wald's, which is 0 at 0 % and 100 % — from each accuracy and the record's n (scipy's interval)."""
    for path in sorted(DEMO.parent.glob("*/robustness.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        n, errors = record["details"]["n"], record["details"]["sampling_error"]
        assert set(errors) == {k for k in record["metrics"] if SPECS[k.split("/")[0]].se == "binomial"}
        for key, se in errors.items():
            k = round(record["metrics"][key] * n / 100)
            assert se == pytest.approx(scipy_wilson_se(k, n, 1.0), rel=1e-9), (path, key)
            assert se > 0
