"""OOD sets as folders with display labels (issue 13), batch-norm mode, dataset labels, presets and the shipped
official / offline / cpu protocols of the accuracy, calibration and OOD suites."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import jembench
from jembench.errors import JembenchError
from jembench.eval_options import preset_names as presets
from jembench.evaluation import dataset_label_for, protocol_for
from jembench.leaderboard import build
from jembench.models import load_checkpoint
from jembench.protocols import available_protocols, load_protocol
from jembench.records import load_records
from jembench.render import render
from jembench.resources import protocol_dir
from jembench.suites import EvalContext, forward_mode, ood
from jembench.reference_models.wideresnet import wide_resnet
from test_eval_helpers import make_wrn_checkpoint, protocol

SCORES = ["log_px", "max_py"]


def _test_only_folder(root, n: int, classes=("only",), size: int = 8, seed: int = 0):
    """An ImageFolder with a test split only (no train/): all an OOD set needs."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / "test" / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "test" / c / f"{i}.png")
    return root


def test_folder_sets_with_display_labels_name_every_output(tmp_path, monkeypatch):
    """A test-only folder given as a table with a path relative to the data root, name and label, and a bare
    folder:PATH (absolute): metric
    keys use the names (a folder's base name by default, never its path); the table, the figures' panels and the
    record use the labels; the record carries the in-distribution dataset's label."""
    id_root = _test_only_folder(tmp_path / "data" / "My_ID-set", 12, classes=("a", "b"))
    _test_only_folder(tmp_path / "data" / "faces-32", 10, seed=1)
    other = _test_only_folder(tmp_path / "elsewhere" / "Noise.Set", 9, seed=2)
    ckpt = make_wrn_checkpoint(tmp_path / "rgb.pt", in_channels=3, n_classes=2, dataset=f"folder:{id_root}")
    monkeypatch.chdir(tmp_path / "elsewhere")  # a relative folder lies under the data root, not the working folder
    sets = [{"folder": "faces-32", "name": "faces", "label": "Faces (10 test images)"}, f"folder:{other}", "uniform"]
    record = jembench.evaluate(ckpt, "ood", protocol=protocol("ood", sets=sets, scores=SCORES, hist_bins=5),
                               out=tmp_path / "out" / "ood.json", dataset_label="My ID set (test)",
                               data_root=tmp_path / "data")
    assert record["dataset_label"] == "My ID set (test)"  # stored once: at the top level, not again in details
    assert "dataset_label" not in record["details"] and "set_labels" not in record["details"]
    assert {k.split("/")[1] for k in record["metrics"]} == {"faces", "noise.set", "uniform"}
    assert not any(str(tmp_path) in k for k in record["metrics"])
    sets_out = record["details"]["sets"]
    assert sets_out["faces"]["label"] == "Faces (10 test images)" and sets_out["faces"]["n"] == 10
    assert sets_out["noise.set"]["label"] == "Noise.Set" and sets_out["noise.set"]["n"] == 9
    assert sets_out["uniform"]["label"] == "Uniform"
    table = ood.format_table(record)
    assert "Faces (10 test images)" in table and "in-distribution My ID set (test)" in table
    assert "± " in table and str(tmp_path) not in table
    assert record["protocol"]["table"]["sets"][0] == {"dataset": "folder:faces-32", "name": "faces",
                                                      "label": "Faces (10 test images)", "resize": "crop"}
    assert len(record["figures"]) == len(SCORES)
    board = render(build("ood", None, load_records([tmp_path / "out"])), "md")  # the labels reach the leaderboard
    assert "jembench runs · My ID set (test)" in board and "Faces (10 test images)" in board
    header = next(line for line in board.splitlines() if line.startswith("| Score"))
    assert "Noise.Set" in header and "noise.set" not in header and " faces " not in header


def test_default_labels_come_from_the_checkpoint_or_the_registry(tmp_path):
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "w.pt", dataset="folder:/x/cifar10-jpeg", in_channels=3))
    assert dataset_label_for(ckpt, "folder:/x/cifar10-jpeg") == "cifar10-jpeg"  # a folder: its base name
    ckpt.config = {"dataset_label": "CIFAR-10 (JPEG q75 copy)"}  # jembench train --dataset-label
    assert dataset_label_for(ckpt, "folder:/x/cifar10-jpeg") == "CIFAR-10 (JPEG q75 copy)"
    assert dataset_label_for(ckpt, "folder:/x/cifar10-jpeg", "mine") == "mine"  # eval --dataset-label wins
    assert dataset_label_for(ckpt, "cifar10") == "CIFAR-10"  # another dataset: not the checkpoint's label


@pytest.mark.parametrize("entry,match", [
    ({"folder": "x", "dataset": "svhn"}, "exactly one of"),
    ({"folder": "x", "nme": "y"}, "unknown key"),
    ({"folder": "x", "name": "Bad Name"}, "lower-case"),
    ({"dataset": "svhn", "resize": "stretch"}, "resize"),
    ({"dataset": "svhn", "label": "two\nlines"}, "printable"),
    ({"dataset": "mnistt"}, "is not an OOD set"),
    (42, "must be a set name"),
])
def test_bad_set_entries_are_one_line_errors(entry, match):
    with pytest.raises(JembenchError, match=match) as info:
        protocol("ood", sets=[entry])
    assert "\n" not in str(info.value) and "sets[0]" in str(info.value)


def test_sets_sharing_a_name_or_label_are_refused():
    with pytest.raises(JembenchError, match="share the name 'a'"):
        protocol("ood", sets=[{"folder": "p/a"}, {"folder": "q/a"}])
    with pytest.raises(JembenchError, match="share the label 'X'"):
        protocol("ood", sets=[{"folder": "p/a", "label": "X"}, {"folder": "q/b", "label": "X"}])


def test_bn_mode_train_uses_batch_statistics_and_restores_the_model(tmp_path):
    torch.manual_seed(0)
    model = wide_resnet(depth=10, widen_factor=1, n_classes=10, in_channels=1, norm="batch")
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)  # statistics unlike any batch: train and eval mode must differ
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = jembench.evaluation.as_checkpoint(model, dataset="digits")
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, record_path=tmp_path / "o.json")
    runs = {mode: ood.run(ckpt, protocol("ood", sets=["uniform"], scores=SCORES, n_out=100, bn_mode=mode,
                                         batch_size=50), ctx) for mode in ("train", "eval")}
    assert runs["train"]["details"]["bn_mode"] == "train" and runs["train"]["details"]["batch_norm_layers"] == 7
    assert runs["train"]["metrics"] != runs["eval"]["metrics"]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not model.training
    with forward_mode(model, "train") as mode:
        assert model.training and mode == {"bn_mode": "train", "batch_norm_layers": 7}
    assert not model.training


def test_dataloader_workers_give_the_same_numbers(tmp_path):
    from jembench.suites import accuracy

    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "w.pt"))
    runs = [accuracy.run(ckpt, protocol("accuracy", input_noise=0.1), EvalContext(dataset="digits", workers=w,
                                                                                   batch_size=90))
            for w in (0, 2)]
    assert runs[0]["metrics"] == runs[1]["metrics"] and runs[0]["metrics"]["n"] == 360


def test_presets_come_from_the_protocol_files():
    assert {"paper", "tiny", "cpu", "jem-official", "jempp-official", "sadajem-official"} <= set(presets("ood"))
    assert "jem-official" not in presets("calibration")  # JEM's code has no ECE: no such protocol
    with pytest.raises(JembenchError, match="no preset 'jem-official'.*its presets: paper"):
        protocol_for("calibration", "jem-official")
    assert protocol_for("ood", "cpu").name == "ood-cpu"


OWNED = ("accuracy", "calibration", "ood")


@pytest.mark.parametrize("name", [n for n in available_protocols() if n.split("-")[0] in OWNED])
def test_shipped_protocols_load_and_official_ones_cite_every_field(name):
    proto = load_protocol(name)
    assert proto.suite in OWNED
    if name.endswith("-official"):
        lines = (protocol_dir() / f"{name}.toml").read_text(encoding="utf-8").splitlines()
        fields = [line for line in lines if re.match(r"[a-z_]+ *=", line) and not line.startswith("suite")]
        assert fields and all(re.search(r"#.*:\d+", line) for line in fields), name  # each cites file:line


@pytest.mark.slow
def test_offline_protocol_prints_every_real_and_synthetic_set_with_its_label(tmp_path, monkeypatch, capsys):
    """The shipped ood-cifar10-offline protocol (n cut to 200 per set) on the shared data: AUROC for all six sets,
    printed under their display labels — run from an unrelated folder, the data root given by $JEMBENCH_DATA."""
    from conftest import SHARED_CIFAR
    from jembench.cli import main

    if not all((SHARED_CIFAR.parent / d / "test").is_dir() for d in ("cifar10-jpeg", "svhn-test-10k", "celeba-32",
                                                                     "tinyimagenet-32")):
        pytest.skip("the shared CIFAR-10 / SVHN / CelebA / Tiny ImageNet folders are not here")
    ckpt = make_wrn_checkpoint(tmp_path / "c10.pt", in_channels=3, image_size=32, dataset=f"folder:{SHARED_CIFAR}")
    text = (protocol_dir() / "ood-cifar10-offline.toml").read_text(encoding="utf-8")
    small = tmp_path / "ood-offline-small.toml"
    small.write_text(re.sub(r"(?m)^n_(in|out) = 0", r"n_\1 = 200", text), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JEMBENCH_DATA", str(SHARED_CIFAR.parent))
    assert main(["eval", str(ckpt), "--suite", "ood", "--protocol", str(small), "--out", str(tmp_path / "o.json"),
                 "--dataset-label", "CIFAR-10 (JPEG q75 copy)"]) == 0
    out = capsys.readouterr().out
    labels = ["SVHN (10k test subset)", "Uniform", "Constant", "Interp", "Tiny ImageNet 32 (CIFAR-100 stand-in)",
              "CelebA (6k subset, 32×32)"]
    header = next(line for line in out.splitlines() if line.startswith("| score"))
    assert all(label in header for label in labels) and "in-distribution CIFAR-10 (JPEG q75 copy)" in out
    keys = json.loads((tmp_path / "o.json").read_text())["metrics"]
    assert {k.split("/")[1] for k in keys} == {"svhn10k", "uniform", "constant", "interp", "tinyimagenet32",
                                               "celeba6k"}
