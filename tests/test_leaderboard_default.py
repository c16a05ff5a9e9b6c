"""`jembench leaderboard` without RECORDS shows the records `jembench eval` writes by default (runs/ of the working
folder) and says on stderr where it looked; never silently only the published tables."""

from __future__ import annotations

import json

from conftest import REPO

from jembench.cli import main

RECORD = REPO / "results" / "runs" / "demo" / "jem" / "accuracy.json"


def test_default_is_the_runs_folder_eval_writes_to(tmp_path, monkeypatch, capsys):
    record = json.loads(RECORD.read_text())
    record["model"] = {**record["model"], "name": "my-own-jem"}
    (tmp_path / "runs" / "my-own-jem" / "eval").mkdir(parents=True)
    (tmp_path / "runs" / "my-own-jem" / "eval" / "accuracy.json").write_text(json.dumps(record))
    (tmp_path / "runs" / "my-own-jem" / "config.json").write_text("{}")  # a run's other JSON: not a record
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--table", "hybrid", "--no-published"]) == 0
    out, err = capsys.readouterr()
    assert "my-own-jem" in out
    assert err.strip() == "leaderboard: 1 record(s) from runs/ (no RECORDS given; pass files or folders to choose)"


def test_without_runs_it_says_where_it_looked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard", "--table", "hybrid"]) == 0
    err = capsys.readouterr().err.strip()
    # run from a checkout: its committed records, named
    assert err.startswith("leaderboard: ") and f"from {REPO / 'results' / 'runs'}/" in err
    monkeypatch.setattr("jembench.commands.leaderboard.runs_dir", lambda: None)  # as an installed wheel
    assert main(["leaderboard", "--table", "hybrid"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("leaderboard: no records given and no runs/ folder here") and "published numbers only" in err
