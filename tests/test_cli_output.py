"""What the CLI prints around the work: --help without noise, -q / -v as logging levels, the idle-GPU warning."""

from __future__ import annotations

import argparse
import logging

import pytest

from jembench import progress
from jembench.cli import build_parser, main


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(all_commands=True)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_has_no_none_defaults_and_no_wrong_defaults_for_negative_flags():
    commands = _subparsers()
    assert {"demo", "train", "eval", "leaderboard"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert "(default: None)" not in text, name
        assert "(default: True)" not in text and "(default: False)" not in text, name  # on/off flags
        assert "-q, --quiet" in text and "-v, --verbose" in text, name
    train = " ".join(commands["train"].format_help().split())  # argparse wraps lines
    assert "--no-progress hide the progress bar (default: a bar when stderr is a terminal)" in train
    demo = " ".join(commands["demo"].format_help().split())
    assert "--seed SEED seed for training and evaluation (default: 0)" in demo  # real defaults still shown
    assert "--out OUT folder for the checkpoints, logs, records and figures (default: runs/demo)" in demo


@pytest.fixture
def reset_verbosity():
    yield
    progress.set_verbosity(0)


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_hides_the_info_lines_and_verbose_sets_debug(tiny_softmax_checkpoint, tmp_path, capsys, where,
                                                            reset_verbosity):
    args = ["eval", "--suite", "accuracy", str(tiny_softmax_checkpoint)]  # stderr is no terminal: unit lines
    assert main([*args, "--out", str(tmp_path / "loud.json")]) == 0
    loud = capsys.readouterr()
    assert "jembench: accuracy:" in loud.err and "Acc % ↑" in loud.out  # the unit line of progress.track
    quiet = ["-q", *args] if where == "before" else [*args, "-q"]
    assert main([*quiet, "--out", str(tmp_path / "quiet.json")]) == 0
    out = capsys.readouterr()
    assert "jembench: accuracy:" not in out.err and "Acc % ↑" in out.out  # results still on stdout
    assert progress.logger.getEffectiveLevel() == logging.WARNING and not progress.bars_allowed()
    progress.warning("jembench: warning: still shown")
    assert "still shown" in capsys.readouterr().err
    assert main(["-v", *args, "--out", str(tmp_path / "verbose.json")]) == 0
    assert progress.logger.getEffectiveLevel() == logging.DEBUG and "jembench: accuracy:" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "again.json")]) == 0  # no flag: back to INFO
    assert progress.logger.getEffectiveLevel() == logging.INFO


def test_quiet_and_verbose_together_are_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "-q", "-v"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_paper_preset_on_cpu_with_a_gpu_available_warns_once(monkeypatch, capsys, reset_verbosity):
    import torch

    from jembench.training import gpu_idle_warning, warn_if_gpu_idle

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_idle_warning("paper", "cpu") is None  # no GPU: nothing to say
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gpu_idle_warning("tiny", "cpu") is None and gpu_idle_warning("cpu", "cpu") is None
    assert gpu_idle_warning("paper", "cuda") is None and gpu_idle_warning("paper-k10", "cuda:1") is None
    message = gpu_idle_warning("paper-k10", "cpu")
    assert message and "'paper-k10'" in message and "--device cuda" in message
    progress.set_verbosity(-1)  # a warning: shown under -q
    warn_if_gpu_idle("paper", "cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jembench: warning: the 'paper' preset")


def test_a_closed_pipe_stops_the_command_quietly(tmp_path):
    """`jembench compare A B | head` must not end in a BrokenPipeError traceback: the reader closes stdout before
    the command writes; it stops with 141 (128 + SIGPIPE) and says nothing on stderr."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    folder = repo / "results" / "runs" / "cifar10-cpu" / "softmax"
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the command starts
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "jembench", "compare", str(folder), str(folder)], stdout=w,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, timeout=300)
    os.close(w)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141, (proc.returncode, proc.stderr)
