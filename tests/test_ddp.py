"""DDP: `torchrun --nproc_per_node=2 -m jembench train ...` with gloo on the CPU finishes, rank 0 writes one
checkpoint holding both ranks' buffer shards and RNG states, and both ranks end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jembench.models import load_checkpoint, read_checkpoint_file

REPO = Path(__file__).resolve().parent.parent


def _torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "jembench", "train", *args, "--no-progress"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_two_process_gloo_run_on_digits_keeps_ranks_identical(tmp_path):
    # sada_jem: DDP + SAM (two passes, BN statistics) + the DA-free loader + the informative init (rank 0 fits)
    run = tmp_path / "run"
    proc = _torchrun("sada_jem", "--preset", "tiny", "--dataset", "digits", "--max-iters", "4", "--log-every", "2",
                     "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("checkpoint:") == 1  # rank 0 reports
    saved = read_checkpoint_file(run / "last.pt")
    extra = saved["extra"]
    assert extra["world_size"] == 2 and saved["iteration"] == 4
    digests = extra["weights_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # identical weights on both ranks
    assert [r["buffer_size"] for r in extra["ranks"]] == [500, 500]  # each rank its own shard of the buffer
    images = saved["buffer"]["images"]
    assert images.shape == (1000, 1, 8, 8) and not torch.equal(images[:500], images[500:])
    assert not torch.equal(extra["ranks"][0]["rng"]["torch"], extra["ranks"][1]["rng"]["torch"])  # own seeds
    start = json.loads((run / "events.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 2 and start["iters_per_epoch"] == 11  # 1,437 images / 2 ranks / 64
    assert load_checkpoint(run / "last.pt").model(torch.zeros(2, 1, 8, 8)).isfinite().all()


@pytest.mark.slow
def test_two_process_resume_is_exact(tmp_path):
    common = ("jem", "--preset", "tiny", "--dataset", "digits", "--sgld-steps", "3", "--log-every", "2")
    assert _torchrun(*common, "--max-iters", "8", "--out", str(tmp_path / "straight")).returncode == 0
    assert _torchrun(*common, "--max-iters", "4", "--out", str(tmp_path / "resumed")).returncode == 0
    again = _torchrun("jem", "--resume", str(tmp_path / "resumed"), "--max-iters", "8")
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = (read_checkpoint_file(tmp_path / run / "last.pt") for run in ("straight", "resumed"))
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    assert torch.equal(a["buffer"]["images"], b["buffer"]["images"])
    assert a["extra"]["weights_digests"] == b["extra"]["weights_digests"]
