"""A few JEM iterations on digits do what Algorithm 1 must: CE falls, the buffer moves, samples' log p(x) rises."""

import csv

import torch

from jembench.reference_models.config import resolve_config
from jembench.energy import log_px_unnormalized
from jembench.models import load_checkpoint
from jembench.sampling import SGLDConfig, UniformInit, sgld
from jembench.seeding import seed_everything
from jembench.reference_models.train_loop import train
from jembench.reference_models.wideresnet import wide_resnet


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_jem_iterations_lower_ce_move_buffer_and_raise_sample_log_px(tmp_path):
    cfg = resolve_config("jem", "tiny", {"dataset": "digits", "max_iters": 40, "log_every": 5, "seed": 1})
    ckpt_path = train(cfg, tmp_path, progress=False)
    rows = _rows(tmp_path / "log.csv")
    last = rows[-1]
    assert int(last["iteration"]) == 40
    ce_start = sum(float(r["ce"]) for r in rows[:2]) / 2
    ce_end = sum(float(r["ce"]) for r in rows[-2:]) / 2
    assert ce_end < ce_start - 0.3, (ce_start, ce_end)
    assert all(r["e_gap"] != "" and r["sgld_grad_norm"] != "" for r in rows)

    ckpt = load_checkpoint(ckpt_path)
    # Rebuild the buffer's initial state as the loop drew it: seed, network init, then U(-1, 1).
    seed_everything(cfg.seed)
    wide_resnet(**ckpt.state["arch_kwargs"])
    initial = UniformInit((1, 8, 8)).sample(torch.arange(ckpt.buffer.shape[0]) % 10, "cpu")
    unchanged = (ckpt.buffer == initial).flatten(1).all(1).float().mean().item()
    # 40 draws of 64 chains out of 1000: a chain is never drawn with probability (1 - 1/1000)^2560 = 7.7 %
    assert 0.04 < unchanged < 0.12, unchanged

    model = ckpt.model
    x0 = torch.rand(64, 1, 8, 8) * 2 - 1
    x = sgld(model, x0, SGLDConfig(n_steps=cfg.sgld.n_steps, step_size=cfg.sgld.step_size, noise=cfg.sgld.noise))
    with torch.no_grad():
        assert log_px_unnormalized(model(x)).mean() > log_px_unnormalized(model(x0)).mean() + 0.1
        # and the trained model assigns data higher log p(x) than uniform noise
        from jembench.data import load_dataset, stack_dataset
        data, _ = stack_dataset(load_dataset("digits", "test"), limit=64)
        assert log_px_unnormalized(model(data)).mean() > log_px_unnormalized(model(x0)).mean()


def test_softmax_has_no_buffer_and_learns(tmp_path):
    cfg = resolve_config("softmax", "tiny", {"dataset": "digits", "max_iters": 30, "log_every": 10})
    ckpt = load_checkpoint(train(cfg, tmp_path, progress=False))
    assert ckpt.buffer is None
    rows = _rows(tmp_path / "log.csv")
    assert float(rows[-1]["ce"]) < float(rows[0]["ce"])
    assert rows[0]["e_gap"] == ""
