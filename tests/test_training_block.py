"""The ``training`` block of checkpoints and records (jembench/training_block.py): carried from a checkpoint into
every record made from it and into compact copies, read from the divergence guard of checkpoints written before it
existed, type-checked where it comes from a stranger's file, and turned into `jembench eval` notes."""

from __future__ import annotations

import json
import re

import pytest
import torch

from jembench import training_block
from jembench.errors import JembenchError
from jembench.models import compact_checkpoint, load_checkpoint, read_checkpoint_file, save_checkpoint
from jembench.records import load_record
from jembench.reference_models.wideresnet import wide_resnet

KWARGS = dict(depth=10, widen_factor=1, n_classes=10, in_channels=1, norm=None)
GOOD = {"divergence": "recover", "recovered_divergences": 2, "recovered_at": [120, 480]}


def _save(path, **kw):
    torch.manual_seed(0)
    save_checkpoint(path, arch="wrn", arch_kwargs=KWARGS, model=wide_resnet(**KWARGS), method="jem",
                    dataset="digits", n_classes=10, image_shape=(1, 8, 8), config={"name": "jem-digits"},
                    buffer={"images": torch.rand(4, 1, 8, 8), "labels": torch.arange(4)}, **kw)
    return path


def test_the_block_goes_into_the_record_model_section_and_survives_compaction(tmp_path):
    ckpt = _save(tmp_path / "last.pt", training=GOOD)
    assert load_checkpoint(ckpt).describe()["training"] == GOOD
    small = tmp_path / "small.pt"
    compact_checkpoint(ckpt, small, buffer_n=2)
    assert read_checkpoint_file(small)["training"] == GOOD
    assert load_checkpoint(small).describe()["training"] == GOOD
    compact_checkpoint(ckpt, small, buffer_n=0)  # no buffer at all (not an empty one the suites would reject)
    assert read_checkpoint_file(small)["buffer"] is None and load_checkpoint(small).describe()["training"] == GOOD


def test_an_older_checkpoint_reports_the_recoveries_its_guard_stored(tmp_path):
    guard = {"recoveries": 1, "events": [{"event": "divergence", "first_bad_iteration": 77, "detected_at": 80}]}
    ckpt = _save(tmp_path / "old.pt", extra={"guard": guard})
    assert load_checkpoint(ckpt).describe()["training"] == {"recovered_divergences": 1, "recovered_at": [77]}
    small = tmp_path / "small.pt"
    compact_checkpoint(ckpt, small)  # the compact copy drops extra: the count must not be lost with it
    assert read_checkpoint_file(small)["training"]["recovered_divergences"] == 1
    assert "training" not in load_checkpoint(_save(tmp_path / "plain.pt")).describe()  # says nothing: no block


@pytest.mark.parametrize("block, words", [
    ("many", "'training' is str, not a mapping"),
    ({"recovered_divergences": -1}, "'recovered_divergences' is '-1', not an integer >= 0"),
    ({"recovered_divergences": True}, "not an integer >= 0"),
    ({"recovered_divergences": "2"}, "not an integer >= 0"),
    ({"recovered_divergences": 1, "recovered_at": ["x"]}, "'recovered_at' is not a list of integers"),
    ({"recovered_divergences": 0, "stopped_at": 1.5}, "'stopped_at' is not an integer"),
    ({"recovered_divergences": 0, "stop_reasons": ["x" * 300]}, "'stop_reasons' is not a list of short strings"),
    ({"recovered_divergences": 0, "selected_on": {"split": "test"}}, "'selected_on' is not"),
])
def test_a_malformed_block_is_one_line_naming_the_field(tmp_path, block, words):
    assert words in training_block.problem(block)
    with pytest.raises(JembenchError, match=r"checkpoint .*bad\.pt is malformed: .*" + re.escape(words)):
        load_checkpoint(_save(tmp_path / "bad.pt", training=block))
    record = {"schema": "jembench-record/1", "suite": "accuracy", "dataset": "digits",
              "model": {"name": "m", "training": block}, "protocol": {"hash": "h"}, "metrics": {"accuracy": 1.0}}
    (tmp_path / "r.json").write_text(json.dumps(record))
    with pytest.raises(JembenchError, match=r"r\.json: model training|r\.json: model 'training'"):
        load_record(tmp_path / "r.json")


def test_notes_say_recovered_stopped_and_chosen_on_test():
    assert training_block.notes({"name": "m", "training": {"recovered_divergences": 0}}) == []
    [recovered] = training_block.notes({"name": "m", "training": GOOD})
    assert recovered.startswith("m: its training recovered from 2 divergences (beginning at iterations 120, 480)")
    many = dict(GOOD, recovered_divergences=7, recovered_at=list(range(7)))
    assert "iterations 0, 1, 2, 3, 4 and 2 more" in training_block.notes({"name": "m", "training": many})[0]
    stopped = {"recovered_divergences": 0, "stopped_at": 9, "stop_reasons": ["|loss| > loss_bound"],
               "selected_on": {"split": "test", "noise": 0.0, "accuracy": 90.0, "iteration": 5}}
    notes = training_block.notes({"name": "m", "training": stopped})
    assert notes[0] == ("m: its training ended on divergence at iteration 9 (|loss| > loss_bound); this checkpoint "
                        "holds the last good state before it")
    assert "chosen as best.pt on its test accuracy" in notes[1] and "optimistically biased" in notes[1]
    validation = dict(stopped, selected_on=dict(stopped["selected_on"], split="validation"))
    assert len(training_block.notes({"name": "m", "training": validation})) == 1
    assert training_block.notes({"name": "m", "training": {"recovered_divergences": "x"}}) == []  # malformed: none
    assert training_block.recovered({"training": GOOD}) == 2 and training_block.recovered({"name": "m"}) == 0


def test_eval_notes_show_a_strangers_training_text_inert(tmp_path, capsys):
    """The notes `jembench eval` prints come from the checkpoint: a name and stop reasons holding terminal control
    sequences and line breaks are printed as visible escapes on one line each (jembench/escape.py), never raw."""
    from jembench.cli import main as cli_main

    hostile = "\x1b]0;owned\x07\x1b[2J"
    block = {"recovered_divergences": 1, "recovered_at": [3], "stopped_at": 9,
             "stop_reasons": [f"|loss| > loss_bound{hostile}\nnote: forged line"]}
    ckpt = tmp_path / "last.pt"
    torch.manual_seed(0)
    save_checkpoint(ckpt, arch="wrn", arch_kwargs=KWARGS, model=wide_resnet(**KWARGS), method="jem",
                    dataset="digits", n_classes=10, image_shape=(1, 8, 8), config={"name": f"m{hostile}"},
                    training=block)
    assert cli_main(["eval", "--suite", "accuracy", str(ckpt), "--out", str(tmp_path / "acc.json")]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 2, out  # recovered + stopped; the forged line break did not make a third
    assert "\x1b" not in out and "\x07" not in out
    assert "its training recovered from 1 divergence (beginning at iteration 3)" in notes[0]
    assert "ended on divergence at iteration 9 (|loss| > loss_bound" in notes[1] and "note: forged line" in notes[1]
