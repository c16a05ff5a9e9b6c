"""Install anywhere: build the wheel, install it into a fresh virtual environment and, from a folder outside any
checkout, run the demo, the leaderboard and the regression check — what a new user does first — and check what the
wheel puts into site-packages: one top-level package, ``jembench``, with the reference trainers as
``jembench.reference_models`` (no generic top-level ``reference_models``), found through the ``wrn`` entry point.

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
import zipfile
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
        if (REPO / name).is_symlink():  # as git checks it out (jembench/reference_models -> ../reference_models)
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(REPO / name), tmp / "src" / name)
        elif (REPO / name).is_file():
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
    return venv / "bin", env, tmp, wheel


def test_the_wheel_installs_jembench_alone_with_the_reference_trainers_inside_it(installed):
    """Issue 27 item 8: no generic top-level ``reference_models`` in site-packages; ``jembench.reference_models``
    has every module of the repository's folder, and the ``wrn`` entry point builds the network from it."""
    bin_dir, env, tmp, wheel = installed
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        record = whl.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        entry_points = whl.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"jembench", "jembench-0.1.0.dist-info"}, tops
    assert not any(line.startswith("reference_models/") for line in record.splitlines())
    inside = "jembench/reference_models/"
    assert {n.removeprefix(inside) for n in names if n.startswith(inside)} == \
        {p.name for p in (REPO / "reference_models").glob("*.py")}
    assert "wrn = jembench.reference_models.wideresnet:wide_resnet" in entry_points

    work = tmp / "layout"  # outside the checkout: what the installed environment alone provides
    work.mkdir(exist_ok=True)
    probe = _run([bin_dir / "python", "-c", """
import importlib.metadata, importlib.util, json, sys, sysconfig
from pathlib import Path
from jembench.models import build_model
site = Path(sysconfig.get_paths()["purelib"])
net = build_model("wrn", {"depth": 10, "widen_factor": 1, "n_classes": 10, "in_channels": 1})
import jembench.reference_models as rm
eps = [f"{e.name}={e.value}" for e in importlib.metadata.entry_points(group="jembench.architectures")]
print(json.dumps({"top": importlib.util.find_spec("reference_models") is None,
                  "folder": (site / "reference_models").exists(), "loaded": sorted(m for m in sys.modules
                  if m.split(".")[0] == "reference_models"), "net": type(net).__module__,
                  "file": str(Path(rm.__file__).relative_to(site)), "methods": rm.available_methods(), "eps": eps}))
"""], work, env).stdout
    found = json.loads(probe)
    assert found["top"] and not found["folder"] and found["loaded"] == [], found
    assert found["net"] == "jembench.reference_models.wideresnet"
    assert found["file"] == "jembench/reference_models/__init__.py"
    assert found["methods"] == ["jem", "jempp", "sada_jem", "softmax", "softmax_sam"]
    assert found["eps"] == ["wrn=jembench.reference_models.wideresnet:wide_resnet"], found["eps"]


def test_installed_wheel_runs_demo_leaderboard_and_check_outside_the_checkout(installed):
    bin_dir, env, tmp, _ = installed
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

    # the checkpoint in a fresh process: the architecture comes from the entry point (jembench.reference_models)
    _run([jembench, "eval", "demo/jem/last.pt", "--suite", "accuracy", "--preset", "demo", "--out", "again",
          "--no-progress"], work, env)
    # a shipped tolerance file by name, from a folder that holds no suites/
    named = _run([jembench, "check", "again", "--baseline", "demo/jem/eval", "--tolerances", "check-tolerances-tiny",
                  "--all"], work, env).stdout
    assert "-> pass" in named and "accuracy" in named, named
    bad = subprocess.run([str(jembench), "check", "again", "--baseline", "demo/jem/eval", "--tolerances",
                          "check-tolerances-tiniest"], cwd=work, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "check-tolerances, check-tolerances-tiny" in bad.stderr and "Traceback" not in bad.stderr
