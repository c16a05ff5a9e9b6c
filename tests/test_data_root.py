"""Data folders that protocols name are found under the data root (--data-root, $JEMBENCH_DATA, else ./data), not
under whatever folder a command runs in; a preset whose real OOD sets are all missing is an error, not a quiet
success; the message about a missing folder asks an OOD set for test/ only. Every folder here is written by the
test itself (small PNG ImageFolders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jembench.cli import main
from jembench.data import load_dataset
from jembench.defaults import DATA_ROOT_ENV, data_folder
from jembench.errors import JembenchError
from test_eval_helpers import make_wrn_checkpoint


def _folder(root: Path, n: int = 6, size: int = 8, seed: int = 0) -> Path:
    """``root/test/<class>/<i>.png``: a test-only ImageFolder of random RGB images (all an OOD set needs)."""
    rng = np.random.default_rng(seed)
    for c in ("a", "b"):
        (root / "test" / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "test" / c / f"{i}.png")
    return root


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A 3-channel 8x8 model of a small in-distribution folder, a data root holding one OOD folder, a protocol
    naming that folder and a missing one by relative paths, and an unrelated working folder."""
    data = tmp_path / "data-root"
    _folder(data / "far", seed=1)
    ckpt = make_wrn_checkpoint(tmp_path / "m.pt", in_channels=3, n_classes=2,
                               dataset=f"folder:{_folder(tmp_path / 'in', seed=0)}")
    proto = tmp_path / "ood-two.toml"
    proto.write_text('suite = "ood"\nscores = ["max_py"]\nhist_bins = 4\n'
                     'sets = [{ folder = "far", name = "far", label = "Far" },\n'
                     '        { folder = "gone", name = "gone", label = "Gone" }, "uniform"]\n', encoding="utf-8")
    work = tmp_path / "somewhere-else"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    return {"data": data, "ckpt": ckpt, "proto": proto, "tmp": tmp_path}


def test_data_folder_rule(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env-root"))
    assert data_folder("svhn-test-10k") == tmp_path / "env-root" / "svhn-test-10k"
    assert data_folder("svhn-test-10k", tmp_path / "flag") == tmp_path / "flag" / "svhn-test-10k"  # the flag wins
    assert data_folder(tmp_path / "abs") == tmp_path / "abs"  # absolute: as written
    monkeypatch.delenv(DATA_ROOT_ENV)
    assert data_folder("x") == Path("data") / "x"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_relative_folders_resolve_under_the_data_root_from_any_folder(setup, how, monkeypatch, capsys):
    args = ["eval", str(setup["ckpt"]), "--suite", "ood", "--protocol", str(setup["proto"]),
            "--out", str(setup["tmp"] / "o.json")]
    if how == "flag":
        args += ["--data-root", str(setup["data"])]
    else:
        monkeypatch.setenv(DATA_ROOT_ENV, str(setup["data"]))
    assert main(args) == 0
    record = json.loads((setup["tmp"] / "o.json").read_text())
    assert record["details"]["sets"]["far"]["n"] == 12  # found under the data root, not the working folder
    err = capsys.readouterr().err
    # the missing one is a note naming where it was looked for, asking for test/ only
    assert f"skipped Gone: gone/test/ is not under the data root {setup['data'].resolve()}" in err
    assert "an OOD folder needs only PATH/test/<class>/<image>" in err and "train" not in err


def test_a_protocol_whose_real_sets_are_all_missing_fails(setup, capsys):
    empty = setup["tmp"] / "empty-root"
    empty.mkdir()
    out = setup["tmp"] / "o.json"
    code = main(["eval", str(setup["ckpt"]), "--suite", "ood", "--protocol", str(setup["proto"]), "--out", str(out),
                 "--data-root", str(empty)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("jembench: error: ood: none of the real OOD sets of protocol ood-two is on disk")
    assert "far/ for Far" in err and "gone/ for Gone" in err and str(empty.resolve()) in err
    assert "--data-root" in err and DATA_ROOT_ENV in err
    assert not out.exists()  # nothing written


def test_the_shipped_offline_preset_without_its_data_is_an_error(tmp_path, monkeypatch, capsys):
    """`--preset cifar10-offline` from a folder without the shared data beside it: it used to skip SVHN, Tiny
    ImageNet and CelebA and exit 0; now one line, exit 2, before any image is scored."""
    ckpt = make_wrn_checkpoint(tmp_path / "c10.pt", in_channels=3, image_size=32, n_classes=2,
                               dataset=f"folder:{_folder(tmp_path / 'c10', size=32)}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "nothing-here"))
    assert main(["eval", str(ckpt), "--suite", "ood", "--preset", "cifar10-offline", "--out",
                 str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert "svhn-test-10k/ for SVHN (10k test subset)" in err and "celeba-32/" in err and "tinyimagenet-32/" in err


def test_missing_folder_messages_name_what_the_split_needs(tmp_path):
    with pytest.raises(JembenchError) as test_split:
        load_dataset(f"folder:{tmp_path / 'none'}", "test")
    assert "PATH/test/<class>/<image> (only the test split is read here)" in str(test_split.value)
    assert "train/" not in str(test_split.value)
    with pytest.raises(JembenchError) as train_split:
        load_dataset(f"folder:{tmp_path / 'none'}", "train")
    assert "PATH/train/<class>/<image> and PATH/test/<class>/<image>" in str(train_split.value)
