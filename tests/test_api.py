"""The library API: jembench.evaluate on any nn.Module (a torchvision classifier, a JEM-style model with a replay
buffer), the CLI route for a model from the user's code, lazy exports, exit codes, default data root, commits."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import jembench
from jembench.errors import JembenchError
from jembench.models import load_checkpoint, state_dict_sha256
from jembench.protocols import load_protocol
from test_eval_helpers import REPO, is_png, make_wrn_checkpoint, run_cli


def _folder_dataset(root, n_per_class: int = 2, classes: int = 10, size: int = 32):
    """A tiny ImageFolder tree (train/ and test/) of random RGB images."""
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                pixels = (torch.rand(size, size, 3, generator=gen) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_evaluate_a_torchvision_resnet18_on_a_folder_dataset(tmp_path):
    data = _folder_dataset(tmp_path / "images")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    record = jembench.evaluate(net, "calibration", dataset=f"folder:{data}", preset="tiny", batch_size=32,
                               out=tmp_path / "eval" / "cal.json")
    assert record["suite"] == "calibration" and record["metrics"]["n"] == 20
    assert 0 <= record["metrics"]["ece"] <= 100 and math.isfinite(record["metrics"]["nll"])
    model = record["model"]
    assert (model["name"], model["method"]) == ("resnet", "custom") and model["sha256"] == state_dict_sha256(net)
    assert json.loads((tmp_path / "eval" / "cal.json").read_text())["metrics"] == record["metrics"]
    assert all(is_png(tmp_path / "eval" / f) for f in record["figures"])
    with pytest.raises(JembenchError, match="needs dataset="):
        jembench.evaluate(net, "accuracy")
    with pytest.raises(JembenchError, match="fails on a batch of 1x8x8 images"):
        jembench.evaluate(net, "accuracy", dataset="digits", out=tmp_path / "x.json")


def test_evaluate_a_resnet18_adapted_to_digits_equals_its_module_path(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1, net.maxpool = nn.Conv2d(1, 64, 3, 1, 1, bias=False), nn.Identity()  # 1x8x8 inputs
    record = jembench.evaluate(net, "accuracy", dataset="digits", name="resnet18-digits", out=tmp_path / "a.json")
    assert record["metrics"]["n"] == 360 and record["model"]["name"] == "resnet18-digits"
    assert record["protocol"]["hash"] == load_protocol("accuracy").hash


def test_evaluate_a_jem_style_module_with_its_buffer(tiny_jem_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("JEMBENCH_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(tiny_jem_checkpoint)
    model, buffer = ckpt.model, ckpt.buffer[:60]  # a plain nn.Module and a tensor, as a researcher has them
    gen = jembench.evaluate(model, "generation", dataset="digits", preset="tiny", buffer=buffer, method="jem",
                            n_samples=20, steps=2, out=tmp_path / "gen.json")
    assert {"is/buffer", "fid/fresh", "kid/conditional"} <= set(gen["metrics"])
    assert gen["details"]["sources"]["buffer"]["n"] == 60 and gen["details"]["sources"]["fresh"]["n"] == 20
    assert gen["protocol"]["name"] == "generation-tiny+cli" and gen["protocol"]["table"]["sgld"]["n_steps"] == 2
    assert gen["model"]["method"] == "jem"
    ood = load_protocol("ood-tiny").replace({"n_in": 60, "n_out": 60, "sets": ["uniform", "interp"]})
    record = jembench.evaluate(model, "ood", dataset="digits", protocol=ood, out=tmp_path / "ood.json")
    assert set(record["details"]["sets"]) == {"uniform", "interp"}
    assert all(0 <= record["metrics"][f"auroc/uniform/{s}"] <= 1 for s in ("log_px", "max_py", "grad_norm"))
    from_file = jembench.evaluate(tiny_jem_checkpoint, "ood", protocol=ood, out=tmp_path / "ood-file.json")
    assert from_file["metrics"] == record["metrics"]  # a module evaluates exactly like its checkpoint


def test_cli_evaluates_a_model_from_user_code(tmp_path):
    (tmp_path / "mymodels.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def build():
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    """), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        import mymodels
        net = mymodels.build()
    finally:
        sys.path.remove(str(tmp_path))
    with torch.no_grad():
        net[1].weight.mul_(2)  # trained weights differ from the factory's
    torch.save({"state_dict": net.state_dict()}, tmp_path / "weights.pt")
    out = tmp_path / "r.json"
    proc = run_cli("eval", "--model", "mymodels:build", "--weights", "weights.pt", "--dataset", "digits",
                   "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["model"]["name"] == "build" and record["model"]["sha256"] == state_dict_sha256(net)
    assert record["model"]["checkpoint"] == "weights.pt" and "Acc % ↑" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "mymodels:build"], "needs dataset=... (--dataset)"),
    (["--model", "nosuchmodule:build", "--dataset", "digits"], "cannot import 'nosuchmodule'"),
    (["--model", "mymodels", "--dataset", "digits"], "must look like package.module:factory"),
    (["--model", "mymodels:nothing", "--dataset", "digits"], "has no callable 'nothing'"),
    (["--weights", "w.pt", "x.pt"], "--weights goes with --model"),
    ([], "pass checkpoint files or --model"),
])
def test_cli_model_route_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    from jembench.cli import main

    (tmp_path / "mymodels.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(3, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI makes the current folder importable
    monkeypatch.delitem(sys.modules, "mymodels", raising=False)
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_eval_exits_2_when_every_suite_is_skipped(tmp_path):
    ckpt = make_wrn_checkpoint(tmp_path / "wrn.pt", buffer_n=None)  # 1x8x8 digits model
    proc = run_cli("eval", ckpt, "--suite", "accuracy", "--suite", "calibration", "--dataset", "cifar10",
                   "--no-download", "--data-root", tmp_path / "none", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.count("note: wrn.pt/") == 2 and "every requested suite was skipped" in proc.stderr


def test_demo_exits_2_when_every_suite_is_skipped(tiny_jem_checkpoint, tmp_path, monkeypatch, capsys):
    from jembench import evaluation, training
    from jembench.cli import main
    from jembench.commands import demo

    def fails(*args, **kwargs):
        raise JembenchError("cannot run here")

    monkeypatch.setattr(training, "train", lambda *args, **kwargs: tiny_jem_checkpoint)
    monkeypatch.setattr(evaluation, "run_suite", fails)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--suites", "accuracy", "calibration"]) == 2
    err = capsys.readouterr().err
    assert "every requested suite (accuracy, calibration) was skipped" in err
    assert err.count("skipped: cannot") == 2 * len(demo.METHODS) == 10


def test_import_jembench_is_light_and_exports_the_api():
    code = ("import sys, jembench, jembench.cli; jembench.cli.build_parser(['leaderboard']); "
            "light = 'torch' not in sys.modules; import jembench.evaluation; "
            "print(light, callable(jembench.evaluate), callable(jembench.train), sorted(jembench.__all__)[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.stdout.split()[:3] == ["True", "True", "True"], out.stderr
    assert set(jembench.__all__) >= {"evaluate", "train", "load_checkpoint", "register_architecture",
                                     "register_dataset", "register_score", "available_suites", "get_suite"}
    with pytest.raises(AttributeError):
        jembench.no_such_name  # noqa: B018


def test_default_data_root_is_read_at_call_time(monkeypatch, tmp_path):
    from jembench.data import is_available
    from jembench.defaults import data_root
    from jembench.reference_models.config import resolve_config

    monkeypatch.delenv("JEMBENCH_DATA", raising=False)
    assert data_root() == "data" and resolve_config("jem", "tiny").data_root == "data"
    monkeypatch.setenv("JEMBENCH_DATA", str(tmp_path))
    assert data_root() == str(tmp_path) and resolve_config("jem", "tiny").data_root == str(tmp_path)  # train
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"")
    assert is_available("svhn")  # the library's default follows the variable too


def test_record_commit_is_jembench_own_checkout_only(tmp_path, monkeypatch):
    from jembench import records, resources

    assert resources.is_jembench_checkout(REPO) and records.git_commit()
    other = tmp_path / "project"
    (other / "jembench").mkdir(parents=True)
    (other / "jembench" / "__init__.py").write_text("")
    (other / ".git").mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "my-project"\n')
    assert not resources.is_jembench_checkout(other)
    monkeypatch.setattr(resources, "source_checkout", lambda: None)
    assert records.git_commit() is None
