"""The documented GitHub Actions regression job (docs/check.md, "In CI"), run as written.

The ``run:`` lines of that page's YAML block are extracted and executed verbatim by bash in a temporary
folder that holds, like a checkout, the committed baseline ``results/runs/demo/jem``. ``pip install -e .`` is
the one line not executed (the package is already installed in this interpreter's environment; the test
asserts the line is exactly that). The expensive lines (train, eval of every suite: minutes on this CPU) run
verbatim only in the slow test; the default test makes the ``runs/ci/eval`` records they would write itself —
digits, the demo protocols, the accuracy, calibration and OOD suites — and runs the ``check`` line verbatim on them:

* the checkpoint trained with the default seed (the baseline's), the same evaluated with another ``--seed`` (OOD
  sets drawn anew) and one trained with another data-order seed all pass (exit 0): the derived tolerances
  absorb that noise;
* the same checkpoint with its weights perturbed (accuracy ≥ 10 points lower, asserted) fails (exit 1).
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

from jembench.cli import main

FAST_SUITES = ("accuracy", "calibration", "ood")


def ci_job_lines() -> list[str]:
    """The ``run:`` commands of the YAML block of docs/check.md that runs ``jembench check --baseline``."""
    text = (REPO / "docs" / "check.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    block = next(b for b in blocks if "jembench check" in b and "--baseline" in b)
    return [m.group(1).strip() for m in re.finditer(r"^\s*-?\s*run:\s*(.+)$", block, flags=re.M)]


def workspace(tmp: Path) -> Path:
    """A folder laid out like the checkout the job runs in: the committed baseline records, suites/ (the
    tolerance file the job names) and no runs/."""
    shutil.copytree(REPO / "results" / "runs" / "demo" / "jem", tmp / "results" / "runs" / "demo" / "jem",
                    ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    shutil.copytree(REPO / "suites", tmp / "suites")
    return tmp


def bash(line: str, cwd: Path) -> subprocess.Popen:
    """Start one line of the job in bash, with this interpreter's ``jembench`` first on PATH."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def the_line(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(start))


def eval_records(checkpoint: Path, ws: Path, *extra: str) -> None:
    """What the job's eval line writes to runs/ci/eval, for the fast suites (same preset, same names)."""
    (ws / "runs" / "ci").mkdir(parents=True, exist_ok=True)
    local = ws / "runs" / "ci" / "last.pt"
    shutil.copyfile(checkpoint, local)
    args = ["eval", str(local), "--preset", "demo", "--out", str(ws / "runs" / "ci" / "eval"), *extra]
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
    assert "--baseline results/runs/demo/jem" in check and "runs/ci/eval" in check
    assert "--tolerances suites/check-tolerances-tiny.toml" in check
    # the demo's training preset and protocols: what the committed baseline (results/runs/demo) was made with
    assert "--preset tiny" in the_line(lines, "jembench train") and "--preset demo" in the_line(lines, "jembench eval")


def test_documented_check_line_passes_across_seeds_and_fails_a_degraded_model(tmp_path, demo_jem_checkpoint):
    check = the_line(ci_job_lines(), "jembench check")
    other_seed = _train_tiny("jem", tmp_path / "seed1", seed=1)
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
    # the paired rule decides once the committed baseline carries per-input evidence; the unpaired one before
    assert re.search(r"\| last-accuracy\.json +\| accuracy ↑ .*\| (binomial z=3|paired McNemar exact α=0\.05 Holm) +"
                     r"\| REGRESSION", out), out
    assert "-> FAIL" in out.splitlines()[-1]


@pytest.mark.slow
def test_documented_ci_block_runs_verbatim(tmp_path):
    """Every line of the job, as written (minutes: trains and evaluates every suite); the model trained with
    the default seed must pass against the committed baseline, and the report must be written."""
    ws = workspace(tmp_path)
    for line in ci_job_lines()[1:]:
        p = bash(line, ws)
        out, err = p.communicate(timeout=3600)
        assert p.returncode == 0, f"{line}\n{out}\n{err}"
    assert (ws / "report.html").is_file()
