"""Divergence guard: an injected NaN triggers a rollback to the last good state with the JEM paper's remedies
(lower lr, more SGLD steps, new seed) and training finishes; no bad state reaches a checkpoint; a spent budget
stops with a clear error and leaves the last good state on disk; detection itself never syncs with the host."""

import csv
import json
import math

import pytest
import torch

from reference_models.config import resolve_config
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file
from reference_models import jem, train_state
from reference_models.divergence import DivergenceGuard
from reference_models.train_loop import train




class _PoisonAt:
    """Wraps an objective; on the listed calls (1-based) the loss becomes NaN — and so do the gradients."""

    def __init__(self, inner, bad):
        self.inner, self.bad, self.calls = inner, bad, 0

    def __call__(self, step):
        self.calls += 1
        loss, stats = self.inner(step)
        if self.bad(self.calls):
            loss = loss * float("nan")
        return loss, stats


def _events(run):
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def _iterations(run):
    with open(run / "log.csv") as fh:
        return [int(r["iteration"]) for r in csv.DictReader(fh)]


def _finite(state_dict):
    return all(torch.isfinite(v).all() for v in state_dict.values() if v.dtype.is_floating_point)


def _cfg(**overrides):
    return resolve_config("jem", "tiny", {"dataset": "digits", "sgld_steps": 3, "log_every": 4, **overrides})


def test_injected_nan_rolls_back_with_remedies_and_training_finishes(tmp_path, monkeypatch):
    monkeypatch.setattr(jem, "objective", _PoisonAt(jem.objective, lambda call: call == 7))
    cfg = _cfg(max_iters=16)
    saved = read_checkpoint_file(train(cfg, tmp_path, progress=False))

    assert saved["iteration"] == 16 and _finite(saved["model_state"])
    [divergence] = [e for e in _events(tmp_path) if e["event"] == "divergence"]
    assert divergence["iteration"] == 8 and divergence["first_bad_iteration"] == 7  # checked at 8, bad since 7
    assert divergence["reasons"][0] == "loss not finite" and "weights not finite" in divergence["reasons"]
    assert divergence["rolled_back_to"] == 4 and divergence["recovery"] == 1
    assert divergence["lr"] == pytest.approx(cfg.lr * 0.5) and divergence["sgld_steps"] == 6
    assert divergence["seed"] != cfg.seed
    assert saved["config"]["lr"] == pytest.approx(cfg.lr * 0.5) and saved["config"]["sgld"]["n_steps"] == 6
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr * 0.5)
    assert saved["extra"]["guard"]["recoveries"] == 1
    assert _iterations(tmp_path) == [4, 8, 12, 16]  # rows of the abandoned stretch were dropped


def test_no_diverged_state_reaches_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(jem, "objective", _PoisonAt(jem.objective, lambda call: call == 7))
    written = []
    real_save = train_state.save_checkpoint

    def spy(path, **kw):
        written.append((kw["iteration"], _finite(kw["model"].state_dict())))
        return real_save(path, **kw)

    monkeypatch.setattr(train_state, "save_checkpoint", spy)
    # no log check before iteration 12: the guard checks before each checkpoint (every 5 iterations)
    train(_cfg(max_iters=12, log_every=100, ckpt_every_iters=5, recovery_sgld_factor=1.0), tmp_path, progress=False)
    assert written == [(5, True), (10, True), (12, True)]
    [divergence] = [e for e in _events(tmp_path) if e["event"] == "divergence"]
    assert (divergence["iteration"], divergence["rolled_back_to"]) == (10, 5)


def test_repeated_failure_rolls_back_further_then_gives_up_keeping_the_last_good_state(tmp_path, monkeypatch):
    monkeypatch.setattr(jem, "objective", _PoisonAt(jem.objective, lambda call: call >= 6))
    cfg = _cfg(max_iters=40, max_recoveries=2, recovery_sgld_factor=1.0)
    with pytest.raises(JembenchError, match=r"recovery budget is spent \(max_recoveries=2\).*iteration 0\).*--lr"):
        train(cfg, tmp_path, progress=False)
    events = _events(tmp_path)
    assert [e["event"] for e in events] == ["start", "divergence", "divergence", "give_up"]
    # the state remembered at 4 fails again before passing 8: the next rollback starts from an older one (0)
    assert [e["rolled_back_to"] for e in events[1:]] == [4, 0, 0]
    saved = read_checkpoint_file(tmp_path / "last.pt")
    assert saved["iteration"] == 0 and _finite(saved["model_state"])
    assert saved["extra"]["guard"]["recoveries"] == 2
    assert saved["config"]["lr"] == pytest.approx(cfg.lr * 0.25)
    # the second remedy halves the current lr even though it restored a state from before the first one
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr * 0.25)
    assert saved["scheduler"]["base_lrs"] == [pytest.approx(cfg.lr * 0.25)]


def test_bounds_and_reasons():
    guard = DivergenceGuard(loss_bound=100.0, gap_bound=10.0, max_recoveries=1)
    model = torch.nn.Linear(2, 2)
    guard.observe(torch.tensor(3.0), {"e_gap": torch.tensor(0.5)})
    assert guard.check(model, 1) is None
    guard.observe(torch.tensor(3.0), {"e_gap": torch.tensor(0.5)})
    guard.observe(torch.tensor(-250.0), {"e_gap": torch.tensor(0.5)})
    guard.observe(torch.tensor(1.0), {"e_gap": torch.tensor(math.inf)})
    found = guard.check(model, 4)
    assert found["reasons"] == ["|loss| > loss_bound", "energy gap not finite or > gap_bound"]
    assert found["first_bad_iteration"] == 3 and found["first_bad_loss"] == -250.0
    guard.observe(torch.tensor(1.0), {"e_gap": torch.tensor(-11.0)})
    assert guard.check(model, 5)["reasons"] == ["energy gap not finite or > gap_bound"]
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    assert guard.check(model, 6)["reasons"] == ["weights not finite"]


def test_observe_does_not_synchronise_with_the_host(monkeypatch):
    guard = DivergenceGuard(loss_bound=100.0, gap_bound=10.0, max_recoveries=1)

    def no_sync(*_args, **_kw):
        raise AssertionError("host sync inside observe()")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, no_sync)
    for loss in (1.0, math.nan, 2.0):
        guard.observe(torch.tensor(loss), {"e_gap": torch.tensor(0.1)})
    monkeypatch.undo()
    assert guard.check(torch.nn.Linear(1, 1), 3)["first_bad_iteration"] == 2
