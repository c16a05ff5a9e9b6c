"""DDP: `torchrun --nproc_per_node=2 -m jembench train ...` with gloo on the CPU finishes, rank 0 writes one
checkpoint holding both ranks' buffer shards and RNG states, and both ranks end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jembench.data import load_dataset
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
                     "--select-best", "test", "--select-noise", "0.3", "--out", str(run))
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
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    start = events[0]
    # the global batch (ddp_batch = global): 64 split into 32 per rank, so an epoch has the single process's
    # 22 iterations (1,437 images / 2 ranks / 32) and the papers' learning rate goes with the papers' batch
    assert start["world_size"] == 2 and start["iters_per_epoch"] == 22 and start["config"]["ddp_batch"] == "global"
    assert start["environment"]["device"] == "cpu" and start["environment"]["precision"] == "fp32"
    # best.pt is decided on one accuracy summed over both ranks' shares of the test split (no rank decides alone)
    selects = [e for e in events if e["event"] == "select"]
    assert len(selects) == 1 and selects[0]["saved"] and (run / "best.pt").is_file()
    assert load_checkpoint(run / "last.pt").model(torch.zeros(2, 1, 8, 8)).isfinite().all()
    # ... with each image's own selection noise, so it is the accuracy one process gets on the noisy split: the
    # documented noise written out here (image i: randn from word i of SeedSequence([seed, iteration]))
    images, labels = zip(*load_dataset("digits", "test"))
    x, y = torch.stack(images), torch.as_tensor(labels)
    words = np.random.SeedSequence([start["config"]["seed"], 4]).generate_state(len(x))
    x = x + 0.3 * torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(w)))
                               for w in words])
    with torch.no_grad():
        single = 100.0 * int((load_checkpoint(run / "best.pt").model(x).argmax(1) == y).sum()) / len(x)
    assert abs(selects[0]["accuracy"] - single) <= 100.0 / len(x) + 1e-9  # one image: batch-dependent rounding
    assert "selected_on" not in saved["training"]  # last.pt was not chosen by a selection
    assert read_checkpoint_file(run / "best.pt")["training"]["selected_on"] == {
        "split": "test", "noise": 0.3, "accuracy": selects[0]["accuracy"], "iteration": 4}


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


def test_torchrun_eval_runs_a_non_sharded_suite_on_rank_0_only(tiny_softmax_checkpoint, tmp_path):
    """Under torchrun only robustness shares its work among ranks; accuracy runs on rank 0 alone (one test pass,
    one cache write) while rank 1 waits, and every rank returns the same record."""
    ckpt = tiny_softmax_checkpoint
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "jembench", "eval", str(ckpt), "--suite", "accuracy", "--preset", "tiny",
                           "--no-progress", "--out", str(tmp_path / "acc.json")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rank 1] accuracy runs on rank 0 alone; waiting for it" in proc.stderr
    assert proc.stderr.count("jembench: accuracy:") == 1  # rank 0's finished-unit line
    record = json.loads((tmp_path / "acc.json").read_text())
    assert record["environment"]["world_size"] == 2 and record["metrics"]["n"] == 360
