"""Install anywhere: build the wheel, install it into a fresh virtual environment and, from a folder outside any
checkout, run the demo, the leaderboard and the regression check — what a new user does first.

Marked ``wheel`` (deselected by default: the fresh environment installs torch, minutes); ``.ci/run`` runs it after
the fast suite (``make test-wheel``). ``JEMBENCH_WHEEL_VENV=DIR`` reuses (or creates once) a virtual environment at
DIR, so reruns skip the torch install.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.wheel


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment without the checkout on PYTHONPATH) with the freshly built wheel installed."""
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # build from a copy of the files git knows (tracked or not ignored): no stale build/ folder of the checkout
    # can slip removed modules into the wheel, and the checkout gets no build/ folder
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], REPO, env).stdout.splitlines()
    for name in files:
        if (REPO / name).is_file():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp / "src" / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", tmp / "src"], tmp, env)
    wheel = next((tmp / "dist").glob("jembench-*.whl"))
    venv = Path(os.environ.get("JEMBENCH_WHEEL_VENV") or tmp / "venv")
    if not (venv / "bin" / "python").exists():
        _run([sys.executable, "-m", "venv", venv], tmp, env)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q"]
    pins = [f"{lib}=={importlib.metadata.version(lib)}" for lib in ("torch", "torchvision")]
    _run([*pip, *pins], tmp, env)  # this machine's torch (local wheels), not whatever the index has newest
    _run([*pip, wheel], tmp, env)  # jembench's other dependencies
    _run([*pip, "--force-reinstall", "--no-deps", wheel], tmp, env)  # this build, even if the version is the same
    env = dict(env, JEMBENCH_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return venv / "bin", env, tmp


def test_installed_wheel_runs_demo_leaderboard_and_check_outside_the_checkout(installed):
    bin_dir, env, tmp = installed
    work = tmp / "project"  # a user's folder: no jembench checkout anywhere above it
    work.mkdir()
    jembench = bin_dir / "jembench"
    where = _run([bin_dir / "python", "-c", "import jembench.resources as r; print(r.protocol_dir(), "
                  "r.source_checkout())"], work, env).stdout.split()
    assert "site-packages" in where[0] and where[1] == "None" and not where[0].startswith(str(REPO))

    demo = _run([jembench, "demo", "--suites", "accuracy", "calibration", "--epochs", "1", "--out", "demo",
                 "--no-progress"], work, env)
    assert "| Softmax" in demo.stdout and "| JEM" in demo.stdout and "Acc % ↑" in demo.stdout, demo.stdout
    assert "ECE % ↓" in demo.stdout and "skipped" not in demo.stdout
    record = json.loads((work / "demo" / "jem" / "eval" / "accuracy.json").read_text())
    assert record["commit"] is None and record["versions"]["jembench"] == "0.1.0"

    board = _run([jembench, "leaderboard", "--table", "hybrid"], work, env).stdout
    assert "JEM (Grathwohl et al., ICLR 2020), Table 1" in board and "SADA-JEM" in board and "| JEM" in board

    check = _run([jembench, "check", "demo/jem/eval", "--baseline", "demo/jem/eval", "--all"], work, env).stdout
    assert "-> pass" in check and "accuracy" in check  # the default tolerances ship with the package
