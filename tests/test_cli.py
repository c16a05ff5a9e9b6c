"""The CLI end to end, in subprocesses, as a user runs it."""

import json
import re

import pytest

from jembench.reference_models import jem


def test_help_lists_every_command(cli):
    out = cli("--help")
    assert out.returncode == 0
    for command in ("demo", "train", "eval", "datasets"):
        assert command in out.stdout


def test_train_then_eval_accuracy(cli, tmp_path):
    run = tmp_path / "run"
    out = cli("train", "jem", "--preset", "tiny", "--max-iters", "12", "--log-every", "4", "--out", str(run),
              "--no-progress")
    assert out.returncode == 0, out.stderr
    assert (run / "last.pt").is_file() and (run / "log.csv").is_file() and (run / "samples.png").is_file()
    k = jem.TINY["sgld"]["n_steps"]
    assert f"SGLD K={k} " in out.stderr and str(run / "config.json") in out.stderr  # one-line summary at start
    assert json.loads((run / "config.json").read_text())["sgld"]["n_steps"] == k
    record_path = tmp_path / "acc.json"
    out = cli("eval", "--suite", "accuracy", str(run / "last.pt"), "--out", str(record_path))
    assert out.returncode == 0, out.stderr
    record = json.loads(record_path.read_text())
    assert record["suite"] == "accuracy" and record["model"]["method"] == "jem" and record["dataset"] == "digits"
    assert 0 <= record["metrics"]["accuracy"] <= 100 and record["metrics"]["n"] == 360
    assert len(record["protocol"]["hash"]) == 16 and record["versions"]["torch"]
    assert "Acc % ↑" in out.stdout


def test_datasets_lists_availability(cli):
    out = cli("datasets", "--data-root", "/nonexistent")
    assert out.returncode == 0
    assert "digits" in out.stdout and "embedded" in out.stdout and "folder:PATH" in out.stdout
    assert "cifar-10-batches-py" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "jem", "--lr", "-1"], "--lr -1.0 must be > 0"),
    (["train", "jem", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "jem", "--dataset", "cifar10", "--no-download", "--data-root", "/nonexistent"], "--no-download"),
    (["eval", "/nonexistent.pt"], "does not exist"),
    (["eval", "--suite", "nosuch", "x.pt"], "unknown suite 'nosuch'"),
])
def test_bad_inputs_are_one_line_and_exit_2(cli, args, message):
    out = cli(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len([line for line in out.stderr.strip().splitlines() if line.startswith("jembench: error")]) == 1


def test_demo_runs_end_to_end_and_prints_one_row_per_method(cli, tmp_path):
    out = cli("demo", "--out", str(tmp_path / "demo"), "--max-iters", "3", "--suites", "accuracy", "--no-progress")
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "Acc % ↑" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["Softmax", "Softmax+SAM", "JEM", "JEM++", "SADA-JEM"]
    assert "Acc % ↑" in out.stdout and "skipped" not in out.stdout
    for method in ("softmax", "softmax_sam", "jem", "jempp", "sada_jem"):
        record = json.loads((tmp_path / "demo" / method / "eval" / "accuracy.json").read_text())
        assert record["model"]["method"] == method and record["metrics"]["n"] == 360
        assert record["protocol"]["name"] == "accuracy-demo"  # the demo's protocols (accuracy: accuracy-tiny's)
        assert json.loads((tmp_path / "demo" / method / "config.json").read_text())["max_iters"] == 3
    # the time of each phase, summed over the five methods, and the threads the small work ran on
    assert re.search(r"wall time: \d+ s \(training \d+ s · accuracy \d+ s; torch threads \d+, its small-batch "
                     r"units on 1\)", out.stdout), out.stdout
