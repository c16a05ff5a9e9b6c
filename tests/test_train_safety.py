"""Training never loses a run: a repeated command refuses to overwrite, SIGTERM / SIGINT leave a resumable
checkpoint, a missing device fails before anything is written (issue 15, data loss)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jembench.models import read_checkpoint_file

REPO = Path(__file__).resolve().parent.parent


def _cli(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "jembench", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300, **kw)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_repeating_train_refuses_to_overwrite_the_run(tmp_path):
    run = tmp_path / "run"
    first = _cli("train", "softmax", "--max-iters", "2", "--out", str(run), "--no-progress")
    assert first.returncode == 0, first.stderr
    before = _snapshot(run)
    again = _cli("train", "softmax", "--max-iters", "2", "--out", str(run), "--no-progress")
    assert again.returncode == 2
    lines = [line for line in again.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "already holds a run" in lines[0] and f"--resume {run}" in lines[0]
    assert "Traceback" not in again.stderr
    assert _snapshot(run) == before  # checkpoint, log, events, config untouched


def test_sigterm_leaves_a_resumable_checkpoint(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "jembench", "train", "jem", "--max-iters", "2000", "--log-every",
                             "2", "--out", str(run), "--no-progress"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = run / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [line for line in err.strip().splitlines() if line.startswith("jembench: error")]
    assert len(lines) == 1 and "interrupted by SIGTERM" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    state = read_checkpoint_file(run / "last.pt")
    stopped = state["iteration"]
    assert 4 <= stopped < 2000
    assert '"event": "interrupted"' in (run / "events.jsonl").read_text()
    resumed = _cli("train", "jem", "--resume", str(run), "--max-iters", str(stopped + 2), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint_file(run / "last.pt")["iteration"] == stopped + 2


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_fails_before_creating_the_run_folder(tmp_path):
    run = tmp_path / "run"
    out = _cli("train", "jem", "--device", "cuda", "--out", str(run))
    assert out.returncode == 2 and "no CUDA GPU" in out.stderr and "Traceback" not in out.stderr
    assert not run.exists()
