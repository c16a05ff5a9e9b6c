"""The results layer imports no torch: ``leaderboard``, ``check``, ``report`` and the published-number loader run to
the end in a fresh interpreter and ``"torch" not in sys.modules`` afterwards — including the path that resolves
every shipped protocol's hash (a record measured under an official protocol is compared with the published
numbers that need it), which reads each suite's protocol dataclass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "results" / "runs" / "demo"
CPU = REPO / "results" / "runs" / "cifar10-cpu"

#: runs the jembench command given as JSON in argv[1], then says whether torch (or matplotlib's pyplot, or any
#: module of a suite's run) was imported
PROBE = """
import json, sys
from jembench.cli import main
code = main(json.loads(sys.argv[1]))
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print(json.dumps({"code": code, "heavy": heavy[:5]}))
"""


def _probe(args: list[str], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _official_record(tmp_path: Path) -> Path:
    """A committed CIFAR-10 OOD record relabelled as measured on ``cifar10`` under the shipped
    ``ood-jem-official`` protocol (name and hash), so check and the leaderboard must resolve that protocol's
    hash to match it with JEM Table 3 / 7."""
    from jembench.protocols import load_protocol

    record = json.loads((CPU / "jem" / "last-ood.json").read_text(encoding="utf-8"))
    official = load_protocol("ood-jem-official")
    record.update(dataset="cifar10", figures=[],
                  protocol={"name": official.name, "hash": official.hash, "table": official.table})
    record["model"] = {**record["model"], "dataset": "cifar10"}
    folder = tmp_path / "official"
    folder.mkdir()
    (folder / "ood.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


@pytest.mark.parametrize("command", ["leaderboard", "check-baseline", "check-published", "report", "published"])
def test_results_commands_import_no_torch(tmp_path, command):
    official = _official_record(tmp_path)
    args = {
        "leaderboard": ["leaderboard", str(DEMO), str(CPU), str(official), "--out", str(tmp_path / "b.md")],
        "check-baseline": ["check", str(DEMO / "jem"), "--baseline", str(DEMO / "jem")],
        "check-published": ["check", str(official), "--all"],
        "report": ["report", str(DEMO / "jem"), "-o", str(tmp_path / "r.html")],
    }.get(command)
    if command == "published":  # every shipped protocol's hash, as the leaderboard and check resolve them
        code = ("import sys; from jembench.published import load_published, packaged_protocol_hash, "
                "shipped_protocols; load_published(); hashes = [packaged_protocol_hash(p) for p in "
                "sorted(shipped_protocols())]; assert all(hashes), hashes; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "[]"
        return
    result = _probe(args, tmp_path)
    assert result["code"] in (0, 1), result  # check-published may find a regression; it ran to the end
    assert result["heavy"] == [], f"{command} imported {result['heavy']}"
    if command == "leaderboard":
        board = (tmp_path / "b.md").read_text(encoding="utf-8")
        assert "JEM (Grathwohl et al., ICLR 2020), Table 3" in board and "(ours)" in board


def test_each_suite_runs_with_the_protocol_class_the_results_layer_reads():
    """The torch-free protocol modules hold the very class each suite module runs with (one definition)."""
    from jembench.suites import available_suites, get_suite, protocol_class

    for suite in available_suites():
        assert get_suite(suite).PROTOCOL is protocol_class(suite), suite
