"""Labels flow from the protocol / checkpoint to the record (stored once) to every table, leaderboard title and
report: the committed CIFAR-10 runs show "CIFAR-10 (JPEG q75 copy)" and "SVHN (10k test subset)", never the folder
names; records written before the labels moved (``details.dataset_label``, ``details.set_labels``) still render
with their labels; the committed leaderboards are what the code renders from the committed records."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from jembench import catalog, records
from jembench.cli import main

REPO = Path(__file__).resolve().parent.parent
CPU = REPO / "results" / "runs" / "cifar10-cpu"
CIFAR_LABEL = "CIFAR-10 (JPEG q75 copy)"
SET_LABELS = {"svhn10k": "SVHN (10k test subset)", "tinyimagenet32": "Tiny ImageNet 32 (CIFAR-100 stand-in)",
              "celeba6k": "CelebA (6k subset, 32×32)"}


def _ood_record() -> dict:
    return json.loads((CPU / "jem" / "last-ood.json").read_text(encoding="utf-8"))


def _board(capsys, *args: str) -> str:
    assert main(["leaderboard", *args, "--no-published"]) == 0
    return capsys.readouterr().out


def test_committed_cifar10_runs_are_titled_and_headed_with_their_labels(capsys):
    board = _board(capsys, str(CPU))
    titles = [line for line in board.splitlines() if line.startswith("### ")]
    assert titles and all(f"jembench runs · {CIFAR_LABEL} ·" in t for t in titles), titles
    header = next(line for line in board.splitlines() if line.startswith("| Score"))
    assert all(label in header for label in SET_LABELS.values()) and "Uniform" in header
    assert not re.search(r"cifar10-jpeg|svhn10k|tinyimagenet32|celeba6k", board)


def test_each_label_is_stored_once_and_read_through_one_helper():
    record = _ood_record()
    assert record["dataset_label"] == CIFAR_LABEL and "dataset_label" not in record["details"]
    assert "set_labels" not in record["details"]
    assert records.dataset_label(record) == CIFAR_LABEL
    assert {name: records.set_label(record, name) for name in SET_LABELS} == SET_LABELS
    # no stored label: the catalog's one rule (a registered name's label, a folder's base name — never its path)
    assert records.dataset_label({"dataset": "folder:../shared/data/cifar10-jpeg"}) == "cifar10-jpeg"
    assert records.dataset_label({"dataset": "cifar10"}) == catalog.label("cifar10") == "CIFAR-10"
    assert records.set_label({"details": {}}, "uniform") == "Uniform"


def test_a_record_written_before_the_labels_moved_still_renders_with_its_labels(tmp_path, capsys):
    old = copy.deepcopy(_ood_record())
    old["details"]["dataset_label"] = old.pop("dataset_label")  # where the labels were stored until now
    old["details"]["set_labels"] = {name: entry.pop("label") for name, entry in old["details"]["sets"].items()}
    old["figures"] = []  # its figures stay in the committed folder
    (tmp_path / "old-ood.json").write_text(json.dumps(old), encoding="utf-8")
    assert records.dataset_label(old) == CIFAR_LABEL
    board = _board(capsys, str(tmp_path))
    assert f"jembench runs · {CIFAR_LABEL}" in board and all(label in board for label in SET_LABELS.values())
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "report.html"), "--no-published"]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "CIFAR-10 (JPEG q75 copy)" in page and "SVHN (10k test subset)" in page


@pytest.mark.parametrize("records_dir,committed", [("results/runs/demo", "results/leaderboard.md"),
                                                   ("results/runs/cifar10-cpu", "results/leaderboard-cifar10-cpu.md")])
def test_committed_leaderboards_are_what_the_code_renders(tmp_path, capsys, records_dir, committed):
    """The Makefile's rendering commands (``make leaderboards``) reproduce the committed leaderboards byte for byte:
    results/ stays in step with the code (rendering only; no record is re-evaluated)."""
    out = tmp_path / "board.md"
    assert main(["leaderboard", str(REPO / records_dir), "--table", "all", "--format", "md", "--out", str(out)]) == 0
    capsys.readouterr()
    assert out.read_text(encoding="utf-8") == (REPO / committed).read_text(encoding="utf-8"), \
        f"{committed} is stale: run `make leaderboards`"
