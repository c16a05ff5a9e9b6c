"""The documented GitHub Actions regression job (docs/check.md, "In CI"), run as written.

The ``run:`` lines of that page's YAML block are extracted (:mod:`benchmarks.ci_job`) and executed verbatim by bash
in a temporary folder that holds, like a checkout, the committed baseline ``results/runs/demo-seeds/jem`` — the job's
model trained with ten seeds (``make baseline-seeds``), because the job retrains its model and a retrained model is a
draw from that distribution. ``pip install -e .`` is the one line not executed (the package is already installed in
this interpreter's environment; the test asserts the line is exactly that). The expensive lines (train, eval of every
suite: minutes on this CPU) run verbatim only in the slow test; the default test makes the ``runs/ci/eval`` records
they would write itself — digits, the job's eval preset, the accuracy, calibration and OOD suites — and runs the
``check`` line verbatim on them:

* the checkpoint trained with the default seed, the same evaluated with another ``--seed`` (OOD sets drawn anew: the
  rule adds the sampling error to the seeds' spread) and one trained with a seed the baseline was not made with all
  pass (exit 0);
* the same checkpoint with its weights perturbed (accuracy ≥ 10 points lower, asserted) fails (exit 1).

The matrix of many fresh retrainings × thread counts, and the degraded models, is ``python -m benchmarks.ci_matrix``
(numbers in docs/check.md). The committed baseline must match the job: its eval preset's protocol hashes, one
deterministic recipe per seed, distinct checkpoints.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, _train_tiny

from benchmarks.ci_job import Job, ci_job_lines, relocate, the_line
from jembench.cli import main
from jembench.records import load_records

FAST_SUITES = ("accuracy", "calibration", "ood")


BASELINE = Job.from_docs().baseline()


def workspace(tmp: Path, folders: tuple[str, ...] = (BASELINE,)) -> Path:
    """A folder laid out like the checkout the job runs in: the committed baseline records (``folders`` of the
    checkout: the seed baseline by default), suites/ (the tolerance file the job names) and no runs/."""
    for folder in folders:
        shutil.copytree(REPO / folder, tmp / folder, ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    shutil.copytree(REPO / "suites", tmp / "suites")
    return tmp


def bash(line: str, cwd: Path) -> subprocess.Popen:
    """Start one line of the job in bash, with this interpreter's ``jembench`` first on PATH."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def eval_records(checkpoint: Path, ws: Path, *extra: str) -> None:
    """What the job's eval line writes to runs/ci/eval, for the fast suites (same preset, same names)."""
    (ws / "runs" / "ci").mkdir(parents=True, exist_ok=True)
    local = ws / "runs" / "ci" / "last.pt"
    shutil.copyfile(checkpoint, local)
    args = ["eval", str(local), "--preset", Job.from_docs().eval_preset(), "--out", str(ws / "runs" / "ci" / "eval"),
            *extra]
    for suite in FAST_SUITES:
        args += ["--suite", suite]
    assert main(args) == 0


def degraded(checkpoint: Path, out: Path) -> Path:
    """The checkpoint with every weight tensor perturbed by Gaussian noise of its own spread."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(0)
    for key, value in state["model_state"].items():
        if value.is_floating_point() and value.dim() > 1:
            value.add_(value.std() * torch.randn(value.shape, generator=gen))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def accuracy_of(ws: Path) -> float:
    import json
    return json.loads((ws / "runs" / "ci" / "eval" / "last-accuracy.json").read_text())["metrics"]["accuracy"]


def test_documented_ci_block_is_what_this_test_runs():
    lines = ci_job_lines()
    assert lines[0] == "pip install -e ."
    assert [line.split()[1] for line in lines[1:]] == ["train", "eval", "check", "report"]
    check = the_line(lines, "jembench check")
    assert "--baseline results/runs/demo-seeds/jem" in check and "runs/ci/eval" in check
    assert "--tolerances check-tolerances-tiny " in check + " "  # by name: the job works from any folder
    assert "--preset tiny" in the_line(lines, "jembench train") and "--seed" not in the_line(lines, "jembench train")


def test_the_benchmarks_run_the_documented_job_in_their_own_folders():
    """benchmarks.seed_baseline / ci_matrix run the job's own lines; only its folders move (relative to the
    checkout, so committed records name no machine's folders)."""
    job = Job.from_docs()
    assert job.train[:3] == ["jembench", "train", "jem"] and not any(w.startswith("#") for w in job.train)
    assert job.baseline() == "results/runs/demo-seeds/jem" and job.check[2] == "runs/ci/eval"
    moved = relocate(job.eval, REPO / "runs" / "x" / "seed-3", REPO / "results" / "y")
    assert moved == [w.replace("runs/ci/eval", "results/y").replace("runs/ci", "runs/x/seed-3") for w in job.eval]
    assert relocate(["runs/ci"], Path("/elsewhere/run"), Path("/elsewhere/eval")) == ["/elsewhere/run"]


def test_committed_seed_baseline_is_the_jobs_model_under_the_jobs_protocols():
    """Ten seeds of the job's training (one deterministic recipe each, distinct checkpoints), every suite under the
    protocols the job's eval line selects: a protocol or training change without `make baseline-seeds` fails here."""
    from jembench.evaluation import protocol_for

    job = Job.from_docs()
    folders = sorted((REPO / BASELINE).glob("seed-*"))
    assert len(folders) >= 8
    shas, configs = set(), set()
    for folder in folders:
        seed = int(folder.name.split("-")[1])
        records = {r.record["suite"]: r.record for r in load_records([folder])}
        assert set(records) == {"accuracy", "calibration", "ood", "generation", "robustness"}, folder
        for suite, record in records.items():
            assert record["protocol"]["hash"] == protocol_for(suite, job.eval_preset()).hash, (folder, suite)
            recipe = record["model"]["recipe"]
            assert recipe["seed"] == seed and recipe["deterministic"], folder
            configs.add(recipe["config"])
        shas |= {r["model"]["sha256"] for r in records.values()}
        assert len({r["model"]["sha256"] for r in records.values()}) == 1  # one checkpoint per seed
    assert len(shas) == len(folders) and len(configs) == len(folders)  # the settings differ by the seed only


def test_documented_check_line_passes_across_seeds_and_fails_a_degraded_model(tmp_path, demo_jem_checkpoint):
    check = the_line(ci_job_lines(), "jembench check")
    other_seed = _train_tiny("jem", tmp_path / "seed1", seed=11)  # a seed the baseline was not made with
    spaces = {name: workspace(tmp_path / name) for name in ("seed0", "eval-seed1", "seed1", "degraded")}
    eval_records(demo_jem_checkpoint, spaces["seed0"])
    eval_records(demo_jem_checkpoint, spaces["eval-seed1"], "--seed", "1")  # OOD sets drawn anew
    eval_records(other_seed, spaces["seed1"])
    eval_records(degraded(demo_jem_checkpoint, tmp_path / "broken" / "last.pt"), spaces["degraded"])
    assert accuracy_of(spaces["degraded"]) <= accuracy_of(spaces["seed0"]) - 10  # the premise: a real regression
    procs = {name: bash(check, ws) for name, ws in spaces.items()}
    done = {name: (p.communicate(timeout=300), p.returncode) for name, p in procs.items()}
    for name in ("seed0", "eval-seed1", "seed1"):
        (out, err), code = done[name]
        assert code == 0, f"{name}:\n{out}\n{err}"
        assert "-> pass" in out.splitlines()[-1]
    (out, err), code = done["degraded"]
    assert code == 1, f"{out}\n{err}"
    # a baseline of seeds: the row names the seeds' prediction bound and the sampling rule, and which one set it
    assert re.search(r"\| last-accuracy\.json +\| accuracy ↑ .*\| (seeds k=\d+ t=[\d.]+ > binomial z=3|binomial "
                     r"z=3 ≥ seeds k=\d+ t=[\d.]+) +\| REGRESSION", out), out
    assert "-> FAIL" in out.splitlines()[-1]


@pytest.mark.slow
def test_documented_ci_block_runs_verbatim(tmp_path):
    """Every line of the job, as written (minutes: trains and evaluates every suite); the model trained with
    the default seed must pass against the committed baseline of seeds, and the report must be written."""
    ws = workspace(tmp_path)
    for line in ci_job_lines()[1:]:
        p = bash(line, ws)
        out, err = p.communicate(timeout=3600)
        assert p.returncode == 0, f"{line}\n{out}\n{err}"
    assert (ws / "report.html").is_file()
