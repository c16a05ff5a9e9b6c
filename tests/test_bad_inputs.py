"""The bad-input matrix, through the real CLI (``jembench.cli.main`` in-process; the much larger adversarial
matrix is tests/test_hostile_inputs.py): one clear line naming the input and the fix, exit code 2, no traceback,
and no output file touched."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jembench.cli import main
from jembench.data import stack_dataset
from jembench.errors import JembenchError
from jembench.models import save_checkpoint
from jembench.reference_models.wideresnet import wide_resnet

KEEP = "precious record - must survive a failed command\n"


@pytest.fixture(scope="module")
def matrix_files(tmp_path_factory, tiny_jem_checkpoint):
    root = tmp_path_factory.mktemp("bad")
    # checkpoints: truncated, random bytes, not a checkpoint, wrong class count
    good = Path(tiny_jem_checkpoint).read_bytes()
    (root / "truncated.pt").write_bytes(good[: len(good) // 3])
    (root / "corrupt.pt").write_bytes(os.urandom(4096))
    (root / "notes.pt").write_text('{"hello": "world"}')
    kwargs = dict(depth=10, widen_factor=1, n_classes=3, in_channels=1)
    save_checkpoint(root / "three_classes.pt", arch="wrn", arch_kwargs=kwargs, model=wide_resnet(**kwargs),
                    method="softmax", dataset="digits3", n_classes=3, image_shape=(1, 8, 8), config={})
    # datasets: an RGB 32x32 folder (wrong size/channels for digits models) and an empty one
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / "rgb" / split / c).mkdir(parents=True)
            Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "rgb" / split / c / "x.png")
        (root / "empty" / split).mkdir(parents=True)
    (root / "bad.toml").write_text("suite = 'accuracy'\nn = [unclosed\n")
    (root / "ood_protocol.toml").write_text("suite = 'ood'\n")
    (root / "a_file").write_text("not a folder")
    return root


def _rows(ckpt: str, root: Path):
    return [
        ("unknown method", ["train", "nosuch"], "invalid choice: 'nosuch'"),
        ("unknown dataset", ["train", "jem", "--dataset", "mnistt"], "unknown dataset 'mnistt'"),
        ("unknown suite", ["eval", ckpt, "--suite", "speed"], "unknown suite 'speed'"),
        ("unknown preset", ["train", "jem", "--preset", "huge"], "invalid choice: 'huge'"),
        ("missing folder", ["train", "jem", "--dataset", f"folder:{root / 'nowhere'}"], "does not exist"),
        ("empty folder", ["train", "jem", "--dataset", f"folder:{root / 'empty'}"], "no images"),
        ("missing torchvision data", ["train", "jem", "--dataset", "svhn", "--no-download", "--data-root",
                                      str(root / "nodata")], "--no-download"),
        ("wrong image size", ["eval", ckpt, "--dataset", f"folder:{root / 'rgb'}"], "takes 1x8x8 images"),
        ("wrong class count", ["eval", str(root / "three_classes.pt"), "--dataset", "digits"], "has 3 classes"),
        ("truncated checkpoint", ["eval", str(root / "truncated.pt")], "truncated"),
        ("corrupt checkpoint", ["eval", str(root / "corrupt.pt")], "not a PyTorch file"),
        ("non-checkpoint file", ["eval", str(root / "notes.pt")], "not a PyTorch file"),
        ("missing checkpoint", ["eval", str(root / "absent.pt")], "does not exist"),
        ("unwritable output", ["eval", ckpt, "--out", str(root / "a_file" / "r.json")], "not writable"),
        ("malformed override", ["train", "jem", "--lr", "fast"], "invalid float value: 'fast'"),
        ("out-of-range override", ["train", "jem", "--reinit-freq", "1.5"], "--reinit-freq 1.5 must be in [0, 1]"),
        ("malformed protocol", ["eval", ckpt, "--protocol", str(root / "bad.toml")], "not valid TOML"),
        ("protocol of another suite", ["eval", ckpt, "--protocol", str(root / "ood_protocol.toml")],
         "is for suite 'ood'"),
        ("missing protocol", ["eval", ckpt, "--protocol", "no-such-protocol"], "not found"),
    ]


ROW_NAMES = [r[0] for r in _rows("x", Path("x"))]


@pytest.mark.parametrize("row", ROW_NAMES)
def test_bad_input(row, matrix_files, tiny_jem_checkpoint, tmp_path, capsys, monkeypatch):
    name, args, message = next(r for r in _rows(str(tiny_jem_checkpoint), matrix_files) if r[0] == row)
    work = tmp_path / "work"
    work.mkdir()
    keep = work / "record.json"
    keep.write_text(KEEP)
    if args[0] == "eval" and "--out" not in args:
        args = [*args, "--out", str(keep)]
    if args[0] == "train":
        args = [*args, "--out", str(work / "run"), "--max-iters", "2"]
    before = sorted(p.name for p in work.rglob("*"))
    ckpt_bytes = Path(tiny_jem_checkpoint).read_bytes()
    monkeypatch.chdir(work)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own one-line errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (name, err)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], (name, err)
    assert "Traceback" not in err
    assert keep.read_text() == KEEP
    assert sorted(p.name for p in work.rglob("*")) == before, name  # nothing written, nothing half-written
    assert Path(tiny_jem_checkpoint).read_bytes() == ckpt_bytes


def test_debug_flag_shows_the_traceback(cli, tmp_path):
    out = cli("--debug", "eval", str(tmp_path / "absent.pt"))
    assert out.returncode != 0 and "Traceback" in out.stderr and "does not exist" in out.stderr


def test_nan_in_data_is_named():
    dataset = torch.utils.data.TensorDataset(torch.tensor([[[[0.0, float("nan")]]]]), torch.tensor([0]))
    with pytest.raises(JembenchError, match="non-finite"):
        stack_dataset(dataset)


def test_random_bytes_are_never_a_traceback(tmp_path):
    """torch's weights-only unpickler ends random input in IndexError / KeyError / UnicodeDecodeError, not only
    UnpicklingError (about 1 file in 12, measured); every such file must be the one-line "not a PyTorch file"
    error. 400 seeded files: some start with a pickle protocol header, some are raw noise."""
    from jembench.models import read_torch_file

    rng = random.Random(0)
    path = tmp_path / "garbage.pt"
    for i in range(400):
        body = rng.randbytes(512)
        path.write_bytes(b"\x80\x02" + body if i % 2 else body)
        with pytest.raises(JembenchError, match="not a PyTorch file|refusing to load"):
            read_torch_file(path)
