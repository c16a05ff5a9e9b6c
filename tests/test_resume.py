"""Exact resume: N iterations + resume + N iterations == 2N uninterrupted, bit for bit on the CPU
(weights, optimiser state, replay buffer, RNG state, log) — across an epoch boundary, with SAM, batch norm,
the DA-free second loader and the informative initialisation (sada_jem), and plain JEM."""

import csv
import json

import pytest
import torch

from jembench.cli import main as cli_main
from jembench.reference_models.config import resolve_config
from jembench.models import read_checkpoint_file
from jembench.reference_models.train_loop import train
from jembench.reference_models.training_data import EpochSampler




def _rows(path):
    with open(path) as fh:
        return [{k: v for k, v in r.items() if k != "it_per_s"} for r in csv.DictReader(fh)]


def _assert_same(a, b, path="ckpt"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("method", ["jem", "sada_jem"])
def test_n_plus_resume_plus_n_equals_2n(tmp_path, method):
    # 22 iterations per epoch: the first leg stops mid-epoch, the second crosses the epoch boundary
    n = 12
    base = {"dataset": "digits", "log_every": 4, "seed": 3, "sgld_steps": 3}
    cfg = resolve_config(method, "tiny", {**base, "max_iters": 2 * n})
    straight = read_checkpoint_file(train(cfg, tmp_path / "straight", progress=False))

    half = resolve_config(method, "tiny", {**base, "max_iters": n})
    train(half, tmp_path / "resumed", progress=False)
    assert read_checkpoint_file(tmp_path / "resumed" / "last.pt")["iteration"] == n
    resumed = read_checkpoint_file(train(cfg, tmp_path / "resumed", resume=True, progress=False))

    for key in ("model_state", "optimizer", "scheduler", "buffer", "rng", "iteration", "epoch"):
        _assert_same(straight[key], resumed[key], key)
    _assert_same(straight["extra"]["ranks"], resumed["extra"]["ranks"], "ranks")
    assert _rows(tmp_path / "straight" / "log.csv") == _rows(tmp_path / "resumed" / "log.csv")  # n % 4 == 0
    events = [json.loads(line)["event"] for line in (tmp_path / "resumed" / "events.jsonl").read_text().splitlines()]
    assert events == ["start", "finish", "resume", "finish"]


def test_resume_from_the_cli_continues_the_stored_run(tmp_path, capsys):
    run = tmp_path / "run"  # in-process CLI: the same code path as `jembench train`, without the start-up cost
    assert cli_main(["train", "softmax_sam", "--max-iters", "3", "--log-every", "1", "--out", str(run),
                     "--no-progress"]) == 0
    assert cli_main(["train", "softmax_sam", "--resume", str(run), "--max-iters", "5", "--lr", "5e-4",
                     "--no-progress"]) == 0
    saved = read_checkpoint_file(run / "last.pt")
    assert saved["iteration"] == 5 and saved["config"]["max_iters"] == 5 and saved["config"]["sam_rho"] == 0.05
    # a new --lr on resume reaches the restored optimizer and schedule
    assert saved["optimizer"]["param_groups"][0]["lr"] == 5e-4 and saved["scheduler"]["base_lrs"] == [5e-4]
    assert [int(r["iteration"]) for r in _rows(run / "log.csv")] == [1, 2, 3, 4, 5]
    capsys.readouterr()
    assert cli_main(["train", "jem", "--resume", str(run), "--no-progress"]) == 2
    assert "holds a 'softmax_sam' run, not 'jem'" in capsys.readouterr().err
    assert cli_main(["train", "jem", "--resume", str(tmp_path / "nothing"), "--no-progress"]) == 2
    assert "cannot resume" in capsys.readouterr().err


def test_epoch_sampler_restarts_mid_epoch_and_shards_disjointly():
    full = list(EpochSampler(10, seed=1, epoch=2))
    assert sorted(full) == list(range(10))
    assert list(EpochSampler(10, seed=1, epoch=2, start=4)) == full[4:]
    assert list(EpochSampler(10, seed=1, epoch=3)) != full
    shards = [list(EpochSampler(11, seed=1, epoch=0, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded like DistributedSampler
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(11)) and len(flat) == 12  # every image, one repeated
    assert list(EpochSampler(11, seed=1, epoch=0, start=2, rank=1, world_size=3)) == shards[1][2:]
