"""Progress in logs and on terminals: tqdm decides whether a bar is drawn (a terminal only), so a redirected stderr
gets no ``\\r`` bar frames; instead it gets one line per finished unit and a heartbeat line with done / total,
elapsed time and ETA every ``$JEMBENCH_HEARTBEAT`` seconds, so a log is never silent for minutes.

The CLI runs in subprocesses whose stderr is a real file (or a real pseudo-terminal), as in a CI log."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from jembench import progress
from test_robustness import PROTOCOL

HEARTBEAT = re.compile(r"^jembench: … (.+)$", re.M)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **extra}


def _run_logged(args: list[str], log: Path, **env: str) -> str:
    """``python -m jembench ARGS`` with stderr redirected to the file ``log``; returns what the file holds."""
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run([sys.executable, "-m", "jembench", *args], stdout=subprocess.PIPE, stderr=fh,
                              text=True, env=_env(**env), timeout=600)
    text = log.read_text(encoding="utf-8")
    assert proc.returncode == 0, text
    return text


def test_undrawn_bar_counts_and_reports_like_tqdm():
    bar = progress.Bar(total=8, desc="  units", unit="unit", disable=True)
    bar.update(3)
    assert bar.n == 3  # tqdm's own disabled bar would stay at 0
    assert re.fullmatch(r"units: 3/8 unit, elapsed 00:0\d, ETA \S+", bar.status())
    open_ended = progress.Bar(desc="steps", unit="step", disable=True)
    assert list(progress.Bar(range(4), desc="it", disable=True)) == [0, 1, 2, 3]
    open_ended.update(5)
    assert re.fullmatch(r"steps: 5 step, elapsed 00:0\d", open_ended.status())
    bar.close()
    open_ended.close()


def test_robustness_log_has_heartbeats_and_no_bar_frames(tiny_softmax_checkpoint, tmp_path):
    proto = tmp_path / "robustness-small.toml"
    proto.write_text(PROTOCOL, encoding="utf-8")
    text = _run_logged(["eval", str(tiny_softmax_checkpoint), "--suite", "robustness", "--protocol", str(proto),
                        "--out", str(tmp_path / "r.json")], tmp_path / "eval.log", JEMBENCH_HEARTBEAT="0.2")
    assert "\r" not in text  # no bar frames in a log
    beats = HEARTBEAT.findall(text)
    assert beats, text
    # the suite's units with done / total, elapsed and ETA, and the unit running now
    assert any(re.match(r"robustness: \d+/16 unit, elapsed \d\d:\d\d, ETA \S+( \| k\d+/\S+: \d+ (step|query|/))",
                        b) for b in beats), beats
    assert len(re.findall(r"^jembench: robustness k\d+/\S+: 3 inputs \(\d+\.\d s\)$", text, re.M)) == 16


def test_training_log_has_heartbeats_and_no_bar_frames(tmp_path):
    """The training bar wrote 520 ``\\r`` frames into a redirected stderr; now: none, and heartbeats."""
    text = _run_logged(["train", "jem", "--max-iters", "40", "--out", str(tmp_path / "run")], tmp_path / "train.log",
                       JEMBENCH_HEARTBEAT="0.2")
    assert "\r" not in text
    assert re.search(r"^jembench: … jem-digits: \d+/40 it, elapsed \d\d:\d\d, ETA \d\d:\d\d$", text, re.M), text


@pytest.mark.parametrize("how", [{"JEMBENCH_HEARTBEAT": "0"}, {"args": "-q"}])
def test_heartbeat_can_be_turned_off(tmp_path, how):
    args = ["train", "jem", "--max-iters", "20", "--out", str(tmp_path / "run")] + (["-q"] if "args" in how else [])
    text = _run_logged(args, tmp_path / "train.log", JEMBENCH_HEARTBEAT=how.get("JEMBENCH_HEARTBEAT", "0.05"))
    assert not HEARTBEAT.search(text) and "\r" not in text


def test_a_terminal_gets_a_bar_and_no_heartbeat(tmp_path):
    """stderr on a pseudo-terminal: tqdm draws its bar (``\\r`` frames), and the log-only heartbeat stays away."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "jembench", "train", "jem", "--max-iters", "40", "--out",
                             str(tmp_path / "run")], stdout=subprocess.DEVNULL, stderr=slave,
                            env=_env(JEMBENCH_HEARTBEAT="0.05"))
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "\r" in text and re.search(r"jem-digits: +\d+%", text), text[-2000:]
    assert not HEARTBEAT.search(text)


def test_unit_lines_only_where_no_bar_is_drawn(capsys):
    """A drawn bar shows its units itself (no extra lines on a terminal), also once it is closed."""
    progress.set_verbosity(0)
    with progress.configured(True):
        list(progress.track(range(3), desc="drawn", unit="batch"))
    with progress.configured(False):
        list(progress.track(range(3), desc="undrawn", unit="batch"))
    err = capsys.readouterr().err
    assert "jembench: drawn" not in err and re.search(r"jembench: undrawn: 3 batch \(\d+\.\d s\)$", err, re.M)
