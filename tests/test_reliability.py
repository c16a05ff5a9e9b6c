"""Nothing is lost when a job dies; the same seed gives the same numbers."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import torch

from conftest import REPO
from jembench.models import load_checkpoint


def _wait_for(predicate, timeout=120.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.05)
    return False


def test_sigkilled_training_resumes_from_newest_checkpoint_and_finishes(tmp_path, cli):
    run = tmp_path / "run"
    args = ["train", "jem", "--max-iters", "60", "--ckpt-every-iters", "10", "--log-every", "5", "--out", str(run),
            "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "jembench", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def progressed():
        if not (run / "last.pt").is_file():
            return False
        try:
            return load_checkpoint(run / "last.pt").state["iteration"] >= 20
        except Exception:
            return False

    assert _wait_for(progressed, proc=proc), "training never wrote a checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(run / "last.pt").state["iteration"]
    assert 20 <= killed_at < 60 or proc.returncode == 0
    out = cli("train", "jem", "--resume", str(run), "--no-progress")
    assert out.returncode == 0, out.stderr
    final = load_checkpoint(run / "last.pt")
    assert final.state["iteration"] == 60
    rows = (run / "log.csv").read_text().strip().splitlines()[1:]
    iterations = [int(r.split(",")[0]) for r in rows]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 60  # no duplicated rows after resume


def test_kill_during_checkpoint_write_leaves_previous_checkpoint_intact(tmp_path):
    target = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import torch, sys
        from jembench import atomic
        atomic.torch_save({str(target)!r}, {{"format": "good", "w": torch.arange(10)}})
        print("first written", flush=True)
        atomic.torch_save({str(target)!r}, {{"format": "big", "w": torch.zeros(400_000_000, dtype=torch.uint8)}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first written"
    temp_started = _wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size > 0
                                         for p in tmp_path.iterdir()), timeout=60, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert temp_started, "the second write never started"
    state = torch.load(target, weights_only=True)
    assert state["format"] == "good" and torch.equal(state["w"], torch.arange(10))


def test_same_seed_same_record(tmp_path, cli):
    records = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        out = cli("train", "jem", "--max-iters", "8", "--out", str(run), "--seed", "3", "--no-progress")
        assert out.returncode == 0, out.stderr
        rec = tmp_path / f"rec{i}.json"
        out = cli("eval", str(run / "last.pt"), "--suite", "accuracy", "--out", str(rec), "--seed", "3")
        assert out.returncode == 0, out.stderr
        records.append(json.loads(rec.read_text()))
    a, b = (load_checkpoint(tmp_path / f"run{i}" / "last.pt") for i in range(2))
    for (k, v1), v2 in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert torch.equal(a.buffer, b.buffer)
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[0]["model"]["sha256"] == records[1]["model"]["sha256"]
    assert records[0]["versions"]["torch"].startswith(torch.__version__.split("+")[0])
