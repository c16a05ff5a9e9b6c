"""Per-input evidence beside records and `jembench compare`: the sidecar reproduces every metric, identical
records compare as zero with p = 1, shared inputs give paired tests and other inputs unpaired ones, and a
missing, altered or foreign sidecar is a one-line error."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from jembench import evidence
from jembench.comparison import compare
from jembench.errors import JembenchError
from jembench.evaluation import evaluate
from jembench.protocols import load_protocol
from jembench.records import load_record
from jembench.stats import bootstrap

SUITES = ("accuracy", "calibration", "ood")


@pytest.fixture(scope="module")
def evaluated(tiny_jem_checkpoint, tiny_softmax_checkpoint, tmp_path_factory):
    """Tiny accuracy / calibration / OOD records of the session's JEM and softmax, one folder each."""
    root = tmp_path_factory.mktemp("compare")
    for name, ckpt in (("jem", tiny_jem_checkpoint), ("softmax", tiny_softmax_checkpoint)):
        for suite in SUITES:
            evaluate(ckpt, suite, preset="tiny", out=root / name / f"{suite}.json")
    return root


def test_sidecar_reproduces_every_metric_and_names_its_inputs(evaluated):
    records = {s: load_record(evaluated / "jem" / f"{s}.json") for s in SUITES}
    arrays = {s: evidence.load(r, evaluated / "jem" / f"{s}.json") for s, r in records.items()}
    acc, cal, ood = records["accuracy"], records["calibration"], records["ood"]
    assert arrays["accuracy"]["test/correct"].mean() * 100 == pytest.approx(acc["metrics"]["accuracy"], abs=1e-9)
    assert arrays["accuracy"]["test/nll"].mean() == pytest.approx(acc["metrics"]["nll"], rel=1e-6)
    c = arrays["calibration"]
    ece = bootstrap.ece(c["test/confidence"], c["test/correct"], c["test/ece_bin"], cal["details"]["n_bins"])
    assert ece(np.arange(len(c["test/correct"]))[None])[0] * 100 == pytest.approx(cal["metrics"]["ece"], abs=1e-9)
    assert c["test/brier"].mean() == pytest.approx(cal["metrics"]["brier"], rel=1e-9)
    o = arrays["ood"]
    for key, value in ood["metrics"].items():
        if key.startswith("auroc/"):
            _, ood_set, score = key.split("/")
            s_in, s_out = o[f"in/{score}"], o[f"out/{ood_set}/{score}"]
            labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
            assert roc_auc_score(labels, np.r_[s_in, s_out]) == pytest.approx(value, abs=1e-12)
    # one test split, one identity: accuracy, calibration and the OOD suite's in-distribution side
    hashes = {r["evidence"]["streams"]["test" if s != "ood" else "in"]["inputs_sha256"] for s, r in records.items()}
    assert len(hashes) == 1
    sidecar = evaluated / "jem" / acc["evidence"]["file"]
    assert acc["evidence"]["bytes"] == sidecar.stat().st_size and acc["evidence"]["file"] == "accuracy.evidence.npz"


def test_compare_a_record_with_itself_gives_zero_differences_and_p_one(evaluated):
    result = compare(evaluated / "jem", evaluated / "jem", resamples=200)
    assert len(result.rows) > 20
    for row in result.rows:
        assert row.diff == 0
        if row.result is not None:
            assert row.result.p == 1 and row.p_holm == 1 and row.result.paired
            assert row.result.ci[0] <= 0 <= row.result.ci[1]


def test_compare_cli_prints_the_paired_tests_in_every_format(evaluated, cli):
    out = cli("compare", str(evaluated / "softmax"), str(evaluated / "jem"), "--resamples", "200")
    assert out.returncode == 0, out.stderr
    for test in ("McNemar exact", "DeLong", "paired bootstrap", "identical inputs"):
        assert test in out.stdout
    assert "unpaired" not in out.stdout
    data = json.loads(cli("compare", str(evaluated / "softmax" / "ood.json"), str(evaluated / "jem" / "ood.json"),
                          "--format", "json", "--resamples", "200").stdout)
    auroc = [r for r in data["rows"] if r["metric"].startswith("auroc/")]
    assert auroc and all(r["test"] == "DeLong" and r["paired"] for r in auroc)
    assert all(r["ci_low"] <= r["diff"] + 1e-12 and r["p_holm"] >= r["p"] for r in auroc)
    rows = list(csv.DictReader(io.StringIO(cli("compare", str(evaluated / "softmax" / "accuracy.json"),
                                               str(evaluated / "jem" / "accuracy.json"), "--format", "csv").stdout)))
    assert {r["metric"] for r in rows} == {"accuracy", "nll"}


def test_other_inputs_are_compared_unpaired_and_other_noise_seeds_stay_paired(tiny_jem_checkpoint, tmp_path):
    subset = load_protocol("accuracy-tiny").replace({"n": 200})
    a = evaluate(tiny_jem_checkpoint, "accuracy", protocol=subset, seed=1, out=tmp_path / "s1.json")
    evaluate(tiny_jem_checkpoint, "accuracy", protocol=subset, seed=2, out=tmp_path / "s2.json")
    rows = {r.metric: r for r in compare(tmp_path / "s1.json", tmp_path / "s2.json", resamples=200).rows}
    assert rows["accuracy"].result.test == "two-proportion score (unpaired)" and not rows["accuracy"].result.paired
    assert rows["accuracy"].pairing == "other inputs" and rows["nll"].result.test == "bootstrap (unpaired)"
    noisy = load_protocol("accuracy-tiny").replace({"input_noise": 0.3})
    evaluate(tiny_jem_checkpoint, "accuracy", protocol=noisy, seed=1, out=tmp_path / "n1.json")
    evaluate(tiny_jem_checkpoint, "accuracy", protocol=noisy, seed=2, out=tmp_path / "n2.json")
    rows = {r.metric: r for r in compare(tmp_path / "n1.json", tmp_path / "n2.json", resamples=200).rows}
    assert rows["accuracy"].result.test == "McNemar exact" and rows["accuracy"].pairing == "same images, other noise"
    assert a["evidence"]["streams"]["test"]["noise"] == {"sigma": 0.0, "seed": None}


def test_records_without_evidence_fall_back_to_unpaired_rules(evaluated, tmp_path):
    for name in ("jem", "softmax"):
        for suite in SUITES:
            record = load_record(evaluated / name / f"{suite}.json")
            del record["evidence"]
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{suite}.json").write_text(json.dumps(record))
    rows = compare(tmp_path / "softmax", tmp_path / "jem").rows
    tests = {r.metric: (r.result.test if r.result else None) for r in rows}
    assert tests["accuracy"] == "two-proportion score (unpaired)"
    assert tests["auroc/uniform/log_px"] == "Hanley-McNeil (unpaired)"
    # the Constant set (σ = 0) is one image: its AUROC is a proportion of the in-distribution inputs
    assert tests["auroc/constant/max_py"] == "two-proportion score (unpaired)"
    assert tests["ece"] is None and tests["brier"] is None and tests["aupr/uniform/log_px"] is None
    kinds = {r.pairing for r in rows}
    assert kinds == {"no per-input evidence"}


def _copy(evaluated, tmp_path, name="jem"):
    dest = tmp_path / name
    shutil.copytree(evaluated / name, dest)
    return dest


def test_altered_missing_or_foreign_sidecars_are_one_line_errors(evaluated, tmp_path, cli):
    jem = _copy(evaluated, tmp_path)
    sidecar = jem / "accuracy.evidence.npz"
    data = bytearray(sidecar.read_bytes())
    data[-10] ^= 0xFF
    sidecar.write_bytes(bytes(data))
    out = cli("compare", str(jem / "accuracy.json"), str(evaluated / "softmax" / "accuracy.json"))
    assert out.returncode == 2 and "SHA-256" in out.stderr and "Traceback" not in out.stderr
    sidecar.unlink()
    with pytest.raises(JembenchError, match="missing"):
        compare(jem / "accuracy.json", evaluated / "softmax" / "accuracy.json")
    # another evaluation's sidecar with a matching hash: the per-input numbers do not reproduce the record
    other = evaluated / "softmax" / "accuracy.evidence.npz"
    shutil.copyfile(other, sidecar)
    record = load_record(jem / "accuracy.json")
    record["evidence"]["sha256"] = load_record(evaluated / "softmax" / "accuracy.json")["evidence"]["sha256"]
    (jem / "accuracy.json").write_text(json.dumps(record))
    with pytest.raises(JembenchError, match="belongs to another evaluation"):
        compare(jem / "accuracy.json", evaluated / "softmax" / "accuracy.json")
    record["evidence"]["file"] = "../accuracy.evidence.npz"
    (jem / "accuracy.json").write_text(json.dumps(record))
    with pytest.raises(JembenchError, match="plain"):
        load_record(jem / "accuracy.json")


def test_sidecar_arrays_must_match_the_record_and_allow_no_pickles(evaluated, tmp_path):
    jem = _copy(evaluated, tmp_path)
    record = load_record(jem / "accuracy.json")
    buffer = io.BytesIO()
    np.savez(buffer, **{"test/correct": np.array([{"a": 1}], dtype=object)})
    (jem / "accuracy.evidence.npz").write_bytes(buffer.getvalue())
    import hashlib

    record["evidence"]["sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    with pytest.raises(JembenchError, match="other arrays|not a valid NumPy archive"):
        evidence.load(record, jem / "accuracy.json")
    record["evidence"]["arrays"] = {"test/correct": "object[1]"}
    with pytest.raises(JembenchError, match="dtype"):
        evidence.describe(record)


def test_compare_escapes_untrusted_model_names(evaluated, tmp_path):
    from jembench.commands.compare import render

    jem = _copy(evaluated, tmp_path)
    for suite in SUITES:
        record = load_record(jem / f"{suite}.json")
        record["model"]["name"] = "<img src=x onerror=alert(1)>\x1b]0;owned\x07|x"
        (jem / f"{suite}.json").write_text(json.dumps(record))
    result = compare(evaluated / "softmax" / "accuracy.json", jem / "accuracy.json")
    md = render(result, "md")
    assert "<img" not in md and "\x1b" not in md and "&lt;img" in md
    assert "\x1b" not in render(result, "table")


def test_stream_digest_does_not_depend_on_batching():
    x, y = torch.randn(10, 1, 4, 4), torch.arange(10)
    whole, parts = evidence.StreamDigest(), evidence.StreamDigest()
    whole.update(x, y)
    for i in range(0, 10, 3):
        parts.update(x[i:i + 3], y[i:i + 3])
    assert whole.hexdigest() == parts.hexdigest() and whole.n == 10
    other = evidence.StreamDigest()
    other.update(x.flip(0), y.flip(0))
    assert other.hexdigest() != whole.hexdigest()


def test_demo_copies_the_evidence_beside_each_copied_record(evaluated, tmp_path):
    from jembench.commands.demo import _copy_record

    source = evaluated / "jem" / "ood.json"
    _copy_record(source, load_record(source), tmp_path / "jem")
    copied = load_record(tmp_path / "jem" / "ood.json")
    assert (tmp_path / "jem" / "ood.evidence.npz").read_bytes() == (evaluated / "jem" / "ood.evidence.npz").read_bytes()
    assert evidence.load(copied, tmp_path / "jem" / "ood.json")["in/log_px"].shape == (360,)
