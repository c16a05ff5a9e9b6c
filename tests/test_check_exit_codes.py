"""`jembench check`'s exit codes say what happened (issue 27 item 2), run as a CI job runs it — the command in a
subprocess: 0 pass, 1 regression, 2 unusable input, 4 a baseline that cannot judge the records (another protocol, no
record for the model, evidence missing for a paired check, or stale: the same deterministic recipe trained into
another checkpoint). Exit 3 belongs to `train` (stopped at a divergence) and is never check's."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from test_check_paired import _pair, _record

RECIPE = {"config": "0123456789abcdef", "seed": 0, "deterministic": True, "torch": "2.14.1", "cpu": "AVX2",
          "machine": "x86_64", "threads": 1, "denormals": "keep"}


def acc(folder: Path, value: float, *, sha: str = "a" * 64, recipe: dict | None = None, protocol: str = "h" * 16,
        name: str = "m") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = {"name": name, "method": "jem", "sha256": "0" * 64, "weights_sha256": sha,
             **({"recipe": recipe} if recipe else {})}
    record = {"schema": "jembench-record/1", "suite": "accuracy", "model": model, "dataset": "digits",
              "protocol": {"name": "accuracy", "hash": protocol}, "metrics": {"accuracy": value, "n": 360.0},
              "details": {"n": 360}, "seed": 0}
    (folder / "accuracy.json").write_text(json.dumps(record))
    return folder


def check(*args) -> tuple[int, str, str]:
    proc = run_cli("check", *map(str, args))
    return proc.returncode, proc.stdout, proc.stderr


def test_pass_regression_and_bad_input(tmp_path):
    base = acc(tmp_path / "base", 95.0)
    assert check(acc(tmp_path / "same", 94.0), "--baseline", base)[0] == 0
    code, out, _ = check(acc(tmp_path / "worse", 80.0), "--baseline", base)
    assert code == 1 and out.splitlines()[-1].endswith("-> FAIL")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "accuracy.json").write_text("{not json")
    code, _, err = check(tmp_path / "bad", "--baseline", base)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_a_baseline_under_another_protocol_or_without_the_model_is_exit_4(tmp_path):
    base = acc(tmp_path / "base", 95.0)
    code, _, err = check(acc(tmp_path / "other", 95.0, protocol="f" * 16), "--baseline", base)
    assert code == 4 and "protocol" in err and "regenerate the baseline" in err and err.count("\n") == 1
    code, _, err = check(acc(tmp_path / "stranger", 95.0, name="other-model"), "--baseline", base)
    assert code == 4 and "no baseline record for model 'other-model'" in err
    assert check(tmp_path / "stranger", "--baseline", base, "--allow-missing")[0] == 2  # nothing left to compare


def test_paired_check_without_the_baselines_evidence_is_exit_4(tmp_path):
    a, b = _pair(worse=10, better=0)
    _record(tmp_path / "base-none", a, evidence=False)
    _record(tmp_path / "base", a)
    _record(tmp_path / "rec", b)
    code, _, err = check(tmp_path / "rec", "--baseline", tmp_path / "base-none", "--paired")
    assert code == 4 and "no per-input evidence, which --paired needs" in err
    assert check(tmp_path / "rec", "--baseline", tmp_path / "base-none")[0] == 0  # unpaired fallback, no demand
    assert check(tmp_path / "rec", "--baseline", tmp_path / "base", "--paired")[0] == 0
    _record(tmp_path / "rec-other", b, inputs="other")  # other inputs: nothing to pair with
    code, _, err = check(tmp_path / "rec-other", "--baseline", tmp_path / "base", "--paired")
    assert code == 4 and "cannot be paired" in err
    next((tmp_path / "base").glob("*.npz")).unlink()  # the baseline names an evidence file that is gone
    for extra in ((), ("--paired",)):
        code, _, err = check(tmp_path / "rec", "--baseline", tmp_path / "base", *extra)
        assert code == 4 and err.startswith("jembench: error: baseline ") and "is missing" in err
    code, _, err = check(tmp_path / "rec", "--baseline", tmp_path / "base", "--paired", "--unpaired")
    assert code == 2 and "not allowed with" in err
    _record(tmp_path / "seeds" / "s0", a, evidence=False)
    _record(tmp_path / "seeds" / "s1", a, evidence=False)  # a baseline of several runs is not one to pair with
    code, _, err = check(tmp_path / "rec", "--baseline", tmp_path / "seeds", "--paired")
    assert code == 4 and "--paired needs one baseline record per model and suite" in err


def test_a_stale_baseline_is_exit_4_unless_a_regression_is_found_anyway(tmp_path):
    base = acc(tmp_path / "base", 95.0, sha="b" * 64, recipe=RECIPE)
    code, out, _ = check(acc(tmp_path / "fresh", 95.0, sha="c" * 64, recipe=RECIPE), "--baseline", base)
    assert code == 4 and out.splitlines()[-1].endswith("-> STALE BASELINE (regenerate it)")
    stale = [line for line in out.splitlines() if line.startswith("stale:")]
    assert len(stale) == 1 and "same deterministic recipe" in stale[0] and "bbbbbbbbbbbb" in stale[0]
    code, out, _ = check(acc(tmp_path / "broken", 70.0, sha="c" * 64, recipe=RECIPE), "--baseline", base)
    assert code == 1 and any(line.startswith("stale:") for line in out.splitlines())  # the regression wins
    # the same file, or another thread count / machine: no staleness claimed
    assert check(acc(tmp_path / "same", 95.0, sha="b" * 64, recipe=RECIPE), "--baseline", base)[0] == 0
    other = {**RECIPE, "threads": 2}
    assert check(acc(tmp_path / "threads", 95.0, sha="c" * 64, recipe=other), "--baseline", base)[0] == 0
    assert check(acc(tmp_path / "none", 95.0, sha="c" * 64), "--baseline", base)[0] == 0


def test_help_documents_every_exit_code():
    proc = run_cli("check", "--help")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    for phrase in ("0 when every metric holds", "1 on a regression", "2 on unusable input", "4 when the baseline",
                   "3 = `train` stopped at a divergence"):
        assert phrase in text, phrase
    assert "4 baseline unusable or stale" in " ".join(run_cli("--help").stdout.split())
