"""`jembench check`: direction-aware tolerances, exit 0 / 1 / 2, published numbers and baselines."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from test_eval_helpers import published_needing
from test_eval_helpers import write_record_json as write

import pytest

from jembench.check import compare_baseline, compare_published, direction, load_rules, resolve_tolerances, rule_for
from jembench.cli import main
from jembench.records import load_records
from jembench.protocols import Protocol, load_protocol
from jembench.published import load_published
from jembench.records import make_record

REPO = Path(__file__).resolve().parent.parent
ACC = load_protocol("accuracy")
ACC_500 = ACC.replace({"n": 500}, name="accuracy-n500")
GEN = load_protocol("generation")  # shipped, but not the protocol SADA-JEM's IS / FID need
SAM = {"name": "softmax-sam-c10", "method": "softmax_sam", "dataset": "cifar10"}  # one published number: 97.2
SADA = {"name": "sada-c10", "method": "sada_jem", "dataset": "cifar10"}




@pytest.fixture(scope="module")
def pub_dir(tmp_path_factory) -> Path:
    """The published numbers with SADA-JEM's official protocols replaced by the shipped ones the records here are
    measured under (test_eval_helpers.SHIPPED_STAND_INS)."""
    return published_needing(tmp_path_factory.mktemp("pub"))


def acc_record(model: dict, accuracy: float, protocol: Protocol = ACC, **extra) -> dict:
    return make_record(suite="accuracy", model=model, dataset=model["dataset"], protocol=protocol,
                       metrics={"accuracy": accuracy, "nll": 0.3, "n": 10000.0, **extra})


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Three end-to-end runs, started together: worse than published, within tolerance, malformed."""
    d = tmp_path_factory.mktemp("check")
    worse = write(d, "worse.json", acc_record(SAM, 95.0))  # 2.2 points below 97.2; n = 10000: tolerance 0.82
    within = write(d, "within.json", acc_record(SAM, 96.5))  # 0.7 below, tolerance 0.74
    bad = write(d, "bad.json", {**acc_record(SAM, 96.5), "metrics": {"accuracy": "96.5"}})  # a string
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    pub = str(published_needing(d))  # SADA-JEM's accuracies need the shipped `accuracy` in this copy
    procs = {name: subprocess.Popen([sys.executable, "-m", "jembench", "check", str(path), "--published", pub],
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
             for name, path in (("worse", worse), ("within", within), ("bad", bad))}
    out = {}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    return out


def test_cli_exit_1_when_worse_than_published_beyond_tolerance(cli_runs):
    res = cli_runs["worse"]
    assert res.returncode == 1, res.stderr
    line = next(line for line in res.stdout.splitlines() if "| accuracy" in line)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # 3 · √(SE_W(95 %)² + SE_W(97.2 %)²) at n = 10000, Wilson SEs (z = 3): 0.2183 and 0.1655 points
    assert cells[1:8] == ["accuracy ↑", "95", "97.2", "-2.2", "±0.822", "binomial z=3", "REGRESSION"]
    assert "Softmax + SAM" in cells[8] and "Table 1" in cells[8]
    assert "| nll" not in res.stdout  # nll has no published counterpart; only failing rows are printed
    assert "FAIL" in res.stdout


def test_cli_exit_0_within_tolerance(cli_runs):
    res = cli_runs["within"]
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1].startswith("check: 1 metric(s) compared")  # no table: nothing failed
    assert "|" not in res.stdout and "REGRESSION" not in res.stdout
    assert "0 regression(s)" in res.stdout and "-> pass" in res.stdout


def test_cli_exit_2_on_malformed_record(cli_runs):
    res = cli_runs["bad"]
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and "'accuracy' is '96.5', not a number" in lines[0]


def test_direction_aware_fid_and_published_model(tmp_path):
    """FID: lower is better. A higher FID beyond max(2.0, 10 %) fails; a much lower one is 'better'."""
    # SADA-JEM's IS / FID need generation-sadajem-official: a record under another protocol is not compared
    pub = load_published(published_needing(tmp_path))
    rules = load_rules()

    def gen(fid: float) -> dict:
        return make_record(suite="generation", model=SADA, dataset="cifar10", protocol=GEN,
                           metrics={"fid/buffer": fid, "is/buffer": 8.77})

    write(tmp_path / "a", "gen.json", gen(12.0))  # K=5 published 9.41, allowed 2.0
    write(tmp_path / "b", "gen.json", gen(7.0))
    bad, _ = compare_published(load_records([tmp_path / "a"]), pub, rules, "SADA-JEM (K=5)")
    good, _ = compare_published(load_records([tmp_path / "b"]), pub, rules, "SADA-JEM (K=5)")
    fid_bad = next(c for c in bad if c.metric == "fid/buffer")
    assert (fid_bad.reference, fid_bad.allowed, fid_bad.status) == (9.41, 2.0, "REGRESSION")
    assert next(c for c in good if c.metric == "fid/buffer").status == "better"
    assert next(c for c in good if c.metric == "is/buffer").status == "ok"  # equal to the published 8.77
    assert fid_bad.source.endswith("· generation")


def test_published_numbers_are_references_only_under_their_protocol(tmp_path, capsys, pub_dir):
    """A published number is compared only with a record measured under the protocol it needs (name and the
    packaged file's hash); --published-model under another protocol is exit 2 naming both protocols."""
    gen = write(tmp_path, "gen.json", make_record(suite="generation", model=SADA, dataset="cifar10", protocol=GEN,
                                                 metrics={"fid/buffer": 9.4, "is/buffer": 8.77}))
    assert main(["check", str(gen), "--published-model", "SADA-JEM (K=5)"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"measured under protocol generation@{GEN.hash[:8]}" in err[0]
    assert "needs protocol generation-sadajem-official" in err[0]
    # automatic matching: nothing comparable is exit 2, the note names both protocols
    assert main(["check", str(gen)]) == 2
    assert "the published numbers need protocol generation-sadajem-official" in capsys.readouterr().err
    # same name as the packaged file, other settings: not that protocol
    edited = write(tmp_path / "e", "acc.json", acc_record(SAM, 97.2, protocol=ACC.replace({"n": 500}, name="accuracy")))
    assert main(["check", str(edited), "--published", str(pub_dir)]) == 2
    assert f"measured under accuracy@{ACC.replace({'n': 500}).hash[:8]}" in capsys.readouterr().err
    comps, _ = compare_published(load_records([tmp_path / "e"]), load_published(pub_dir), load_rules())
    assert comps == []
    same = write(tmp_path / "s", "acc.json", acc_record(SAM, 97.2))  # the packaged `accuracy` itself
    assert [c.status for c in compare_published(load_records([same]), load_published(pub_dir), load_rules())[0]
            if c.metric == "accuracy"] == ["ok"]
    # the shipped rows need SADA-JEM's official protocol (not shipped on this branch): nothing matches `accuracy`
    assert compare_published(load_records([same]), load_published(), load_rules())[0] == []
    # rows no protocol reproduces (JEM Table 7's Uniform set) are never a reference
    ood = write(tmp_path / "o", "ood.json", make_record(suite="ood", model={"name": "j", "method": "jem",
                                                                        "dataset": "cifar10"},
                                                       dataset="cifar10", protocol=load_protocol("ood"),
                                                       metrics={"auroc/uniform/log_px": 1.0}))
    assert main(["check", str(ood), "--published-model", "JEM"]) == 2
    assert "needs protocol none (closest ood-jem-official)" in capsys.readouterr().err


def test_ambiguous_or_missing_reference_is_exit_2(tmp_path, capsys, pub_dir):
    rec = write(tmp_path, "sada.json", acc_record(SADA, 95.9))
    pub = ["--published", str(pub_dir)]
    assert main(["check", str(rec), *pub]) == 2  # SADA-JEM has K=5/10/20 accuracies: which one?
    err = capsys.readouterr().err
    assert "several published numbers" in err and "--published-model" in err
    assert main(["check", str(rec), "--published-model", "SADA-JEM (K=10)", *pub]) == 0
    assert main(["check", str(rec), "--published-model", "SADA-JEM (K=20)", *pub]) == 0  # 0.2 below: within
    capsys.readouterr()
    digits = write(tmp_path / "d", "digits.json", acc_record({"name": "jem-digits", "method": "jem",
                                                              "dataset": "digits"}, 90.0))
    assert main(["check", str(digits)]) == 2  # no published digits numbers: nothing compared is not a pass
    assert "no metric of the 1 record(s) has a reference" in capsys.readouterr().err
    assert main(["check", str(rec), "--published-model", "No Such Model"]) == 2


def test_record_sgld_steps_selects_the_published_row(tmp_path, pub_dir):
    rec = acc_record({**SADA, "sgld_steps": 5}, 93.0)
    write(tmp_path, "k5.json", rec)
    comps, _ = compare_published(load_records([tmp_path]), load_published(pub_dir), load_rules())
    assert [(c.reference, c.status) for c in comps] == [(95.5, "REGRESSION")]


def test_tolerance_file_overrides_defaults(tmp_path, capsys, pub_dir):
    within = write(tmp_path, "within.json", acc_record(SAM, 96.5))
    tight = tmp_path / "tight.toml"
    tight.write_text('[metrics."accuracy"]\nz = 1\n', encoding="utf-8")  # direction, rule, floor inherited
    assert main(["check", str(within), "--tolerances", str(tight), "--published", str(pub_dir)]) == 1
    assert "±0.5 " in capsys.readouterr().out  # 1 · 0.247 < floor 0.5
    tight.write_text('[metrics."accuracy"]\nrule = "fixed"\nabs = 0.75\n', encoding="utf-8")
    assert main(["check", str(within), "--tolerances", str(tight), "--published", str(pub_dir), "--all"]) == 0
    assert "| ±0.75     | fixed  " in capsys.readouterr().out
    for bad_toml, message in [('[metrics."accuracy"]\nabs = -1\n', "must be a non-negative number"),
                              ('[metrics."accuracy"]\nslack = 1\n', "unknown key(s) ['slack']"),
                              ('[metrics."accuracy"]\nrule = "wald"\n', "must be one of fixed, binomial"),
                              ('[metrics."accuracy"]\nz = "3"\n', "z = '3' must be a non-negative number"),
                              ('[metrics."accuracy"]\ndirection = "lower"\n', "contradicts the metric table"),
                              ('[metrics."auroc/*"]\nrule = "binomial"\n', "does not apply to auroc"),
                              ('[metrics."aroc/*"]\ndirection = "higher"\n', "'aroc/*' matches no metric key"),
                              ('[metrics."ece"]\ndirection = "up"\n', "must be one of higher, lower, ignore"),
                              ("[tolerance]\naccuracy = 1\n", "unknown top-level key(s)"),
                              ("[metrics\n", "is not valid TOML")]:
        tight.write_text(bad_toml, encoding="utf-8")
        assert main(["check", str(within), "--tolerances", str(tight)]) == 2
        assert message in capsys.readouterr().err


def test_tolerances_by_the_name_of_a_shipped_file_from_any_folder(tmp_path, monkeypatch, capsys):
    """Issue 27 item 8: ``--tolerances check-tolerances-tiny`` (no folder, no .toml) is the shipped file, found
    through jembench.resources as protocol names are — here from a folder without suites/; a path that exists wins;
    any other name is exit 2 with one error line listing the shipped names."""
    write(tmp_path / "baseline", "s0.json", acc_record(SADA, 80.5))
    write(tmp_path / "current", "acc.json", acc_record(SADA, 80.5, nll=0.9))  # NLL 0.3 -> 0.9: default abs 0.02
    monkeypatch.chdir(tmp_path)
    check = ["check", "current", "--baseline", "baseline"]
    assert main(check) == 1 and "| nll" in capsys.readouterr().out
    assert main([*check, "--tolerances", "check-tolerances-tiny"]) == 0  # the tiny file leaves NLL unchecked
    capsys.readouterr()
    assert resolve_tolerances("check-tolerances-tiny") == REPO / "suites" / "check-tolerances-tiny.toml"
    assert resolve_tolerances("check-tolerances") == REPO / "suites" / "check-tolerances.toml"
    tiny = load_rules("check-tolerances-tiny")
    assert tiny == load_rules(REPO / "suites" / "check-tolerances-tiny.toml") and tiny != load_rules()

    Path("check-tolerances-tiny").write_text('[metrics."nll"]\nabs = 0.1\n', encoding="utf-8")  # a path wins
    assert resolve_tolerances("check-tolerances-tiny") == Path("check-tolerances-tiny")
    assert main([*check, "--tolerances", "check-tolerances-tiny"]) == 1
    capsys.readouterr()

    for wrong, says in (("check-tolerances-tiniest", "'check-tolerances-tiniest' not found; pass a TOML file"),
                        ("suites/check-tolerances-tiny.toml", "the shipped 'check-tolerances-tiny' is named without")):
        assert main([*check, "--tolerances", wrong]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and says in err, err
        assert err.rstrip().endswith("shipped one: check-tolerances, check-tolerances-tiny")

    monkeypatch.setenv("COLUMNS", "500")  # argparse wraps at hyphens too
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "--tolerances FILE|NAME" in usage and "check-tolerances, check-tolerances-tiny" in usage


def test_default_rules_cover_every_suite_metric():
    rules = load_rules()
    expect = {"accuracy": "higher", "ece": "lower", "mce": "lower", "nll": "lower", "brier": "lower",
              "auroc/svhn/log_px": "higher", "aupr/interp/max_py": "higher", "fpr95/uniform/grad_norm": "lower",
              "is/fresh": "higher", "fid/buffer": "lower", "kid/ensemble": "lower",
              "robust_acc/linf/k10/eps=0.0313725": "higher", "clean_acc/k0": "higher",
              "boundary/attacked_median_l2/k0": "higher",
              "pointwise/attacked_median_l0/k10": "higher"}
    assert {m: direction(m) for m in expect if rule_for(m, rules) is not None} == expect
    assert rule_for("n", rules) is None and direction("n") == "none"  # a count is never judged


def test_baseline_same_protocol_regression_and_mismatch(tmp_path, capsys):
    base, cur = tmp_path / "baseline", tmp_path / "current"
    write(base, "s0.json", acc_record(SADA, 80.5))
    write(cur, "acc.json", acc_record(SADA, 78.5))
    comps, _ = compare_baseline(load_records([cur]), load_records([base]), load_rules())
    acc = next(c for c in comps if c.metric == "accuracy")
    # 2.0 below; allowed 3 · √(SE(78.5)² + SE(80.5)²) at n = 10,000 = 3 · √(0.4107² + 0.3963²) = 1.71
    assert (acc.reference, acc.status, round(acc.allowed, 2)) == (80.5, "REGRESSION", 1.71)
    assert main(["check", str(cur), "--baseline", str(base)]) == 1
    capsys.readouterr()
    # the same model measured under another protocol: the baseline cannot judge it, exit 4 naming both protocols
    write(cur, "acc.json", acc_record(SADA, 80.4, protocol=ACC_500))
    assert main(["check", str(cur), "--baseline", str(base)]) == 4
    err = capsys.readouterr().err
    assert f"accuracy-n500@{ACC_500.hash[:8]}" in err and f"accuracy@{ACC.hash[:8]}" in err
    # a record with no baseline counterpart: exit 4, or skipped with --allow-missing
    write(cur, "acc.json", acc_record({**SADA, "name": "other"}, 80.4))
    write(cur, "acc2.json", acc_record(SADA, 80.4))
    assert main(["check", str(cur), "--baseline", str(base)]) == 4
    assert main(["check", str(cur), "--baseline", str(base), "--allow-missing"]) == 0
    assert "no baseline record for model 'other'" in capsys.readouterr().out


def test_nan_metric_is_a_regression(tmp_path, pub_dir):
    write(tmp_path, "nan.json", acc_record(SAM, math.nan))
    comps, _ = compare_published(load_records([tmp_path]), load_published(pub_dir), load_rules())
    assert comps[0].status == "REGRESSION (not a number)" and comps[0].regression


def test_quoted_and_unreleased_rows_are_never_a_reference(tmp_path, capsys):
    """A published number another codebase produced (VERA's 93.2 in SADA-JEM Table 1) or the authors' unreleased
    code did (JEM's CIFAR-100 72.2) is no target: a record measured under the protocol of the table's other rows is
    not compared with it, and naming it with --published-model is one error line saying why (exit 2)."""
    proto = load_protocol("accuracy-sadajem-official")
    vera = write(tmp_path / "v", "acc.json", acc_record({"name": "v", "method": "vera", "dataset": "cifar10"}, 93.2,
                                                       protocol=proto))
    comps, notes = compare_published(load_records([vera]), load_published(), load_rules())
    assert comps == [] and "accuracy" in notes
    assert main(["check", str(vera), "--published-model", "VERA"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs protocol none (quoted from VERA: SADA-JEM ref. [18])" in err[0]
    assert "no jembench protocol reproduces it" in err[0]
    jem = write(tmp_path / "j", "acc.json", acc_record({"name": "j", "method": "jem", "dataset": "cifar100"}, 72.2,
                                                      protocol=load_protocol("accuracy-jempp-official")))
    assert compare_published(load_records([jem]), load_published(), load_rules())[0] == []
    assert main(["check", str(jem), "--published-model", "JEM (K=20)"]) == 2
    assert "needs protocol none (closest accuracy-jempp-official)" in capsys.readouterr().err
