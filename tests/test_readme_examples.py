"""The README's examples, run as written (slow: it trains a tiny JEM and evaluates every suite, minutes).

The ``bash`` and ``python`` blocks of the README's "Use" section are executed in order, verbatim, in a temporary
folder laid out like a checkout (the committed baselines ``results/runs/demo-seeds/jem`` and
``results/runs/demo-fixed/jem`` and ``suites/``, which the check lines name) with this interpreter's ``jembench``
first on PATH: each must exit 0 and leave what the README says it leaves (the checkpoint, the records, the page).
The two commands at the top (``make demo``, ``make test``) are not run here: CI runs ``make test``, and ``make
demo`` is ``jembench demo`` (tests/test_cli.py, tests/test_wheel.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from test_check_ci_example import BASELINE, bash, workspace

from benchmarks.ci_job import FixedJob


def use_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the README's "Use" section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Use\n(.*?)(?=^## )", text, flags=re.S | re.M).group(1)
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


def test_the_use_section_has_one_example_per_use():
    commands = [part.split()[1] for lang, code in use_blocks() if lang == "bash" for line in code.splitlines()
                for part in line.split(" && ")]
    assert commands == ["train", "eval", "leaderboard", "check", "eval", "check", "compare", "report"]
    assert any(lang == "python" and "jembench.evaluate(" in code for lang, code in use_blocks())


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    ws = workspace(tmp_path, (BASELINE, FixedJob.from_docs().baseline()))  # the seed and fixed-checkpoint baselines
    for lang, code in use_blocks():
        if lang == "python":
            p = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=1800)
            assert p.returncode == 0, f"{code}\n{p.stdout}\n{p.stderr}"
            continue
        for line in code.splitlines():
            out, err = (proc := bash(line, ws)).communicate(timeout=3600)
            assert proc.returncode == 0, f"{line}\n{out}\n{err}"
    assert (ws / "runs" / "jem-digits" / "last.pt").is_file()
    records = {p.name for p in (ws / "runs" / "jem-digits" / "eval").glob("*.json")}
    assert {"accuracy.json", "calibration.json", "ood.json", "generation.json", "robustness.json"} <= records
    assert Path(ws / "report.html").stat().st_size > 10_000
