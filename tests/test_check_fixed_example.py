"""The documented fixed-checkpoint CI job (docs/check.md, "A fixed checkpoint, as a job"), run as written.

The job re-evaluates a committed checkpoint and checks the records with ``--paired`` against the committed records
of that checkpoint (``results/runs/demo-fixed/jem``, made by ``python -m benchmarks.fixed_baseline``). Its ``eval``
and ``check`` lines are extracted from the page (:class:`benchmarks.ci_job.FixedJob`) and run verbatim by bash in
a folder laid out like a checkout (:func:`test_check_ci_example.workspace` with that baseline folder):

* unchanged, the job passes (exit 0) and the paired rule decides every metric (``--all`` shows each row's rule);
* with the checkpoint's weights perturbed (:func:`test_check_ci_example.degraded`), it fails (exit 1), the
  regressions decided by the paired rule.

The default test runs the eval line without its robustness suite (minutes on a loaded CPU); the slow test runs
both lines exactly as written.

The committed baseline must be the job's: the checkpoint the records name (SHA-256), the eval line's protocols, the
weights of the seed baseline's seed 0 (the retrained job's model with its default seed), verified evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from conftest import REPO
from test_check_ci_example import bash, degraded, workspace

from benchmarks.ci_job import FixedJob, Job, ci_job_lines, words
from jembench import evidence, recipe
from jembench.evaluation import protocol_for
from jembench.records import load_records

JOB = FixedJob.from_docs()


def test_documented_fixed_job_is_what_this_test_runs():
    lines = ci_job_lines(paired=True)
    assert lines[0] == "pip install -e ."
    assert [line.split()[1] for line in lines[1:]] == ["eval", "check"]
    assert JOB.check[:3] == ["jembench", "check", JOB.eval[JOB.eval.index("--out") + 1]] and "--paired" in JOB.check
    assert JOB.checkpoint() == f"{JOB.baseline()}/last.pt"
    assert set(JOB.suites()) == {"accuracy", "calibration", "ood", "robustness"}  # every suite with evidence
    assert ci_job_lines() != lines and "--paired" not in Job.from_docs().check  # the retrained job stays the other


def test_committed_fixed_baseline_is_the_checkpoint_under_the_jobs_protocols():
    """One record per suite of the eval line, made from the committed checkpoint under the line's preset, each with
    verified per-input evidence; the weights are the seed baseline's seed 0 (the job's model, default seed)."""
    checkpoint = REPO / JOB.checkpoint()
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    refs = load_records([REPO / JOB.baseline()])
    assert sorted(r.record["suite"] for r in refs) == sorted(JOB.suites())
    for ref in refs:
        record = ref.record
        assert record["model"]["checkpoint"] == JOB.checkpoint() and record["model"]["sha256"] == sha, ref.path
        assert record["protocol"]["hash"] == protocol_for(record["suite"], JOB.eval_preset()).hash, ref.path
        assert evidence.load(record, ref.path) is not None, ref.path  # hash, arrays and shapes as the record says
    assert checkpoint.stat().st_size < 1_000_000  # small enough to commit
    seed0 = json.loads((REPO / Job.from_docs().baseline() / "seed-0" / "last-accuracy.json").read_text())
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert recipe.weights_digest(state["model_state"]) == seed0["model"]["weights_sha256"]


def _run(lines: list[str], ws: Path) -> tuple[int, str]:
    """Run ``lines`` one after another in bash in ``ws`` until one fails: (exit code, everything printed)."""
    out = []
    for line in lines:
        stdout, stderr = (proc := bash(line, ws)).communicate(timeout=3600)
        out.append(stdout + stderr)
        if proc.returncode:
            return proc.returncode, "\n".join(out)
    return 0, "\n".join(out)


def _rows(out: str) -> tuple[list[str], list[str]]:
    """(every row of the check tables, the rows the paired rule decided)."""
    rows = [line for line in out.splitlines() if line.startswith("| last-")]
    return rows, [line for line in rows if "| paired " in line]


def _with_all(line: str) -> str:
    """The check line printing every row (``--all``), its trailing comment dropped."""
    return shlex.join([*words(line), "--all"])


def _fast_eval_line() -> str:
    """The job's eval line without its slowest suite (robustness: minutes on a loaded CPU); the rest verbatim."""
    line = ci_job_lines(paired=True)[1]
    assert " --suite robustness" in line
    return line.replace(" --suite robustness", "")


def test_documented_fixed_job_passes_unchanged_and_fails_a_degraded_checkpoint(tmp_path):
    """The check line verbatim on what the eval line writes for the accuracy, calibration and OOD suites: the
    committed checkpoint passes, every metric decided by the paired rule; perturbed weights fail by it."""
    check = ci_job_lines(paired=True)[2]
    spaces = {name: workspace(tmp_path / name, (JOB.baseline(),)) for name in ("unchanged", "degraded")}
    broken = spaces["degraded"] / JOB.checkpoint()
    degraded(broken, broken)
    code, out = _run([_fast_eval_line(), check, _with_all(check)], spaces["unchanged"])
    assert code == 0, out
    summaries = [line for line in out.splitlines() if line.startswith("check: ")]
    assert len(summaries) == 2 and all(line.endswith("-> pass") for line in summaries), out
    rows, paired = _rows(out)
    assert rows and rows == paired, out  # accuracy, NLL, ECE, MCE, Brier, AUROC, AUPR, FPR@95: each paired
    assert f"({len(paired)} decided by the paired rule)" in summaries[0]
    code, out = _run([_fast_eval_line(), check], spaces["degraded"])
    assert code == 1, out
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert regressions and all("| paired " in line for line in regressions), out
    assert any(re.search(r"\| accuracy ↑ .*\| paired McNemar exact α=0\.05 Holm", line) for line in regressions)
    assert out.rstrip().endswith("-> FAIL")


@pytest.mark.slow
def test_documented_fixed_job_runs_verbatim(tmp_path):
    """Both lines as written, robustness included (minutes): exit 0, the robust accuracies decided by McNemar."""
    ws = workspace(tmp_path, (JOB.baseline(),))
    check = ci_job_lines(paired=True)[2]
    code, out = _run([*ci_job_lines(paired=True)[1:], _with_all(check)], ws)
    assert code == 0, out
    rows, paired = _rows(out)
    assert any(line.startswith("| last-robustness.json") and "robust_acc" in line for line in paired), out
    assert all(line in paired for line in rows if "robust_acc" in line or "clean_acc" in line), out
