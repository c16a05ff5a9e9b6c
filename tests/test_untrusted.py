"""jembench.untrusted, the one gate for files others wrote: regular files only (a FIFO cannot hang the open),
per-kind size caps, loop-free root-confined walks, image decoding limits and bit depths. Each test builds the
hostile file itself and checks the verdict against what the file is (its bytes, pixels, inode)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jembench import untrusted
from jembench.errors import JembenchError


def _png16(path: Path, levels: np.ndarray) -> Path:
    """A 16-bit greyscale PNG written byte by byte (IHDR bit depth 16, colour type 0), independent of PIL."""
    h, w = levels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + levels[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "r.json"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(JembenchError, match=r"is a FIFO \(named pipe\), not a regular file"):
        untrusted.read_json(fifo, "record")


@pytest.mark.parametrize("target,what", [("/dev/zero", "a character device"), ("/dev/null", "a character device")])
def test_devices_and_symlinks_to_them_are_refused(tmp_path, target, what):
    link = tmp_path / "tolerances.toml"
    link.symlink_to(target)
    with pytest.raises(JembenchError, match=f"is {what}, not a regular file"):
        untrusted.read_toml(link, "tolerances")


def test_folder_missing_loop_and_nul_byte(tmp_path):
    with pytest.raises(JembenchError, match="is a folder, not a regular file"):
        untrusted.read_bytes(tmp_path, "protocol")
    with pytest.raises(JembenchError, match="does not exist"):
        untrusted.read_bytes(tmp_path / "absent", "protocol")
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(JembenchError, match="symbolic link loop"):
        untrusted.read_bytes(tmp_path / "a", "protocol")
    with pytest.raises(JembenchError, match="NUL byte"):
        untrusted.read_bytes(str(tmp_path / "x\x00y"), "protocol")


def test_size_cap_is_checked_before_reading(tmp_path):
    big = tmp_path / "p.toml"
    with open(big, "wb") as fh:
        fh.truncate(untrusted.KINDS["protocol"].max_bytes + 1)  # sparse: no disk used
    with pytest.raises(JembenchError, match="larger than any protocol file"):
        untrusted.read_toml(big, "protocol")
    ok = tmp_path / "ok.toml"
    ok.write_text('suite = "accuracy"\n')
    assert untrusted.read_toml(ok, "protocol") == {"suite": "accuracy"}


def test_walk_never_follows_symlinked_folders_and_never_loops(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.json").write_text("{}")
    (root / "a" / "loop").symlink_to(root)  # back to the root: followed, it would recurse forever
    (root / "a" / "up").symlink_to(tmp_path)
    (root / "dup.json").symlink_to(root / "a" / "x.json")  # the same file twice
    (tmp_path / "outside.json").write_text("{}")
    (root / "escape.json").symlink_to(tmp_path / "outside.json")
    os.mkfifo(root / "pipe.json")
    listing = untrusted.walk(root, (".json",))
    assert listing.files == [root / "a" / "x.json"]
    text = " ".join(listing.skipped)
    assert "already in the folder" in text and "outside" in text and "FIFO" in text
    assert sum("symlinked folder: not followed" in s for s in listing.skipped) == 2  # loop/ and up/
    assert len(listing.skipped) == 5


def test_symlinked_file_is_kept_once_and_only_inside_the_root(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "img.png").write_bytes(b"x")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "link.png").symlink_to(tmp_path / "store" / "img.png")
    (tmp_path / "cls" / "other.png").symlink_to(tmp_path / "store" / "img.png")
    assert untrusted.walk(tmp_path, (".png",)).files == [tmp_path / "store" / "img.png"]  # the file, not its links
    assert untrusted.walk(tmp_path / "cls", (".png",)).files == []  # their target lies outside that root
    (tmp_path / "store" / "img.png").rename(tmp_path / "img.bin")
    (tmp_path / "cls" / "link.png").unlink()
    (tmp_path / "cls" / "link.png").symlink_to(tmp_path / "img.bin")
    (tmp_path / "cls" / "other.png").unlink()
    (tmp_path / "cls" / "other.png").symlink_to(tmp_path / "img.bin")
    assert untrusted.walk(tmp_path, (".png",)).files == [tmp_path / "cls" / "link.png"]  # one of two links


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], dtype=np.uint16)
    img = untrusted.open_image(_png16(tmp_path / "g16.png", levels))
    got = np.asarray(img)
    assert img.mode == "RGB" and got.shape == (2, 4, 3)
    expected = np.floor(levels / 65535 * 255 + 0.5).astype(np.uint8)  # 0, 1, 128, 255, 4, 78, 156, 233
    assert (got[..., 0] == expected).all() and (got[..., 1] == expected).all()
    naive = np.asarray(Image.open(tmp_path / "g16.png").convert("RGB"))[..., 0]
    assert (naive[expected > 0] == 255).all()  # what PIL alone does: everything but black becomes white


def test_float_images_are_refused_and_eight_bit_ones_unchanged(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(JembenchError, match="floating-point image"):
        untrusted.open_image(tmp_path / "f.tif")
    rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert (np.asarray(untrusted.open_image(tmp_path / "rgb.png")) == rgb).all()


def test_decompression_bomb_is_an_error_before_decoding(tmp_path):
    side = int(untrusted.MAX_IMAGE_PIXELS ** 0.5) + 16
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, format="PNG")  # a few KiB on disk, ~70 M pixels decoded
    (tmp_path / "bomb.png").write_bytes(buf.getvalue())
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(JembenchError, match="too many pixels"):
        untrusted.open_image(tmp_path / "bomb.png")


def test_npz_refuses_object_arrays(tmp_path):
    np.savez(tmp_path / "ok.npz", a=np.arange(3))
    assert (untrusted.load_npz(tmp_path / "ok.npz")["a"] == np.arange(3)).all()
    np.savez(tmp_path / "obj.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(JembenchError, match="not a readable .npz"):
        untrusted.load_npz(tmp_path / "obj.npz")


def test_digest_is_of_the_loaded_bytes(tmp_path):
    import hashlib

    import torch

    path = tmp_path / "t.pt"
    torch.save({"w": torch.ones(3)}, path)
    obj, digest = untrusted.load_torch_and_digest(path)
    assert torch.equal(obj["w"], torch.ones(3)) and digest == hashlib.sha256(path.read_bytes()).hexdigest()
