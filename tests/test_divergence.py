"""Divergence guard: an injected NaN triggers a rollback to the last good state with the JEM paper's remedies
(lower lr, more SGLD steps, new seed) and training finishes; no bad state reaches a checkpoint; a spent budget
stops with a clear error and leaves the last good state on disk; detection itself never syncs with the host.
A run that recovered says so (checkpoint, events, records, `jembench eval` notes, leaderboard flag); the official
flavour of a preset (``divergence = "stop"``) ends at the first divergence as the official code does."""

import csv
import json
import math
import re

import pytest
import torch

from jembench.reference_models.config import resolve_config
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file
from jembench.reference_models import jem, train_state
from jembench.reference_models.divergence import DivergenceGuard
from jembench.reference_models.train_loop import train




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
    spent = r"recovery budget is spent \(max_recoveries=2\).*iteration 0\).*--lr"
    with pytest.raises(JembenchError, match=spent) as err:
        train(cfg, tmp_path, progress=False)
    assert err.value.exit_code == 3  # ended on divergence: not a bad input (2)
    events = _events(tmp_path)
    assert [e["event"] for e in events] == ["start", "divergence", "divergence", "give_up"]
    # the state remembered at 4 fails again before passing 8: the next rollback starts from an older one (0)
    assert [e["rolled_back_to"] for e in events[1:]] == [4, 0, 0]
    saved = read_checkpoint_file(tmp_path / "last.pt")
    assert saved["iteration"] == 0 and _finite(saved["model_state"])
    assert saved["extra"]["guard"]["recoveries"] == 2
    assert saved["training"]["recovered_divergences"] == 2  # and where it ended: the give-up's divergence
    assert saved["training"]["stopped_at"] == events[-1]["first_bad_iteration"]
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


# ------------------------------------------------------------------ a recovered run says so; the official flavour stops
def test_a_recovered_run_says_so_in_its_checkpoint_events_records_eval_notes_and_leaderboard(tmp_path, monkeypatch,
                                                                                              capsys):
    from jembench import leaderboard, render
    from jembench.cli import main as cli_main
    from jembench.records import load_records

    monkeypatch.setattr(jem, "objective", _PoisonAt(jem.objective, lambda call: call == 7))
    last = train(_cfg(max_iters=16), tmp_path / "run", progress=False)
    block = read_checkpoint_file(last)["training"]
    assert block == {"divergence": "recover", "recovered_divergences": 1, "recovered_at": [7]}
    finish = _events(tmp_path / "run")[-1]
    assert finish["event"] == "finish" and finish["recovered_divergences"] == 1

    record_path = tmp_path / "acc.json"
    assert cli_main(["eval", "--suite", "accuracy", str(last), "--out", str(record_path)]) == 0
    printed = capsys.readouterr().out
    assert "note: jem-digits: its training recovered from 1 divergence (beginning at iteration 7)" in printed
    [ref] = load_records([record_path])
    assert ref.record["model"]["training"] == block

    [section] = leaderboard.build("hybrid", None, [ref])
    [row] = section.rows
    assert row.flags == ["recovered"] and "training recovered from 1 divergence" in row.source
    table = render.render([section], "md")
    assert "jem-digits (ours)ʳ" in table and "ʳ (ours) the training run recovered from divergence" in table


def test_a_run_that_never_diverged_says_so_and_prints_no_note(tmp_path, capsys):
    from jembench.cli import main as cli_main

    last = train(_cfg(max_iters=4), tmp_path / "run", progress=False)
    assert read_checkpoint_file(last)["training"] == {"divergence": "recover", "recovered_divergences": 0,
                                                      "recovered_at": []}
    assert cli_main(["eval", "--suite", "accuracy", str(last), "--out", str(tmp_path / "acc.json")]) == 0
    assert "note:" not in capsys.readouterr().out


def test_the_official_flavour_stops_at_the_first_divergence_keeping_the_last_good_state(tmp_path, monkeypatch):
    from jembench.reference_models.divergence import TrainingDiverged

    monkeypatch.setattr(jem, "objective", _PoisonAt(jem.objective, lambda call: call == 7))
    cfg = resolve_config("jem", "tiny-official", {"dataset": "digits", "sgld_steps": 3, "log_every": 4,
                                                  "max_iters": 16})
    with pytest.raises(TrainingDiverged, match=r"^training diverged at iteration 7 \(loss not finite; .*checked at "
                                               r"8\) and --divergence stop ends the run there, as the official code "
                                               r"does; .*last.pt holds the last good state \(iteration 4\)") as err:
        train(cfg, tmp_path, progress=False)
    assert err.value.exit_code == 3
    events = _events(tmp_path)
    assert [e["event"] for e in events] == ["start", "stopped"]
    assert (events[1]["first_bad_iteration"], events[1]["rolled_back_to"]) == (7, 4)
    saved = read_checkpoint_file(tmp_path / "last.pt")
    assert saved["iteration"] == 4 and _finite(saved["model_state"])
    assert saved["config"]["lr"] == cfg.lr and saved["config"]["sgld"]["n_steps"] == 3  # no remedies
    assert saved["training"]["divergence"] == "stop" and saved["training"]["recovered_divergences"] == 0
    assert (saved["training"]["stopped_at"], saved["training"]["stop_reasons"][0]) == (7, "loss not finite")
    assert _iterations(tmp_path) == [4]

    # resumed with recovery allowed (and the poison gone) it trains on; the stop is no longer its end
    monkeypatch.undo()
    resumed = read_checkpoint_file(train(cfg.replace(divergence="recover"), tmp_path, resume=True, progress=False))
    assert resumed["iteration"] == 16 and "stopped_at" not in resumed["training"]


def test_the_official_flavour_stops_a_real_divergence_with_exit_3(cli, tmp_path):
    """No test hook: Adam at lr 1 blows the tiny JEM up within a few iterations; the official rule |L| > 1e8 (or a
    non-finite loss) fires and the command ends with exit 3 and one line naming the iteration and the rule."""
    run = tmp_path / "run"
    out = cli("train", "jem", "--preset", "tiny-official", "--lr", "1", "--max-iters", "30", "--log-every", "2",
              "--sgld-steps", "2", "--out", str(run), "--no-progress")
    assert out.returncode == 3, out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("jembench: error:")]
    assert re.search(r"training diverged at iteration \d+ \((\|loss\| > loss_bound = 1e\+08|loss not finite)", line)
    assert "as the official code does" in line and "Traceback" not in out.stderr
    saved = read_checkpoint_file(run / "last.pt")
    assert _finite(saved["model_state"]) and saved["training"]["stopped_at"] > saved["iteration"]
