"""Issue 15: jembench used as a careless or hostile user would, through the real CLI.

The failure matrix (``ROWS``) crafts checkpoints, replay buffers, image folders, records, protocols and options
that are wrong in every way we could think of, runs each through ``jembench.cli.main`` in-process (a subprocess
costs ~5 s of imports) and asserts what the README promises: exit code 2, exactly one error line that names the
input, no traceback, and no file anywhere in the work folder created, changed or left half-written. A handful of
rows need a real process — the exit code as a shell sees it, a file-size limit (``RLIMIT_FSIZE``), a full and a
read-only file system (a tmpfs in a private mount namespace, root only) — and run as subprocesses.

The security tests put payloads (HTML that runs script, ``<script>``, terminal escape sequences, spreadsheet
formulas, Markdown table breakers, LaTeX commands) into a run name, a dataset name, a protocol name and a figure
list, and check that every output format keeps them inert: the Markdown leaderboard rendered by python-markdown
and the HTML leaderboard and report loaded in headless Chromium do not execute them (a control page with the raw
payload does — the check can fail), the CSV has no formula cell, the console gets no control character, the LaTeX
no command; and that legitimate text ("CIFAR-10 (JPEG q75 copy)", "max_y p(y|x)") still reads as written.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from jembench import escape
from jembench.cli import main
from jembench.models import save_checkpoint
from jembench.protocols import load_protocol
from jembench.records import make_record
from jembench.reference_models.wideresnet import wide_resnet

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEEP = "precious - must survive a failed command\n"

JS = "document.title='PWNED'"
HTML_PAYLOAD = f'<img src=x onerror="{JS}">'
SCRIPT_PAYLOAD = f"<script>{JS}</script>"
TERMINAL_PAYLOAD = "\x1b]0;PWNED\x07\x1b[2J\x1b[31m\x9b1m\u202e"
MARKDOWN_PAYLOAD = "|x|\n| injected | row |\n[click](javascript:alert(1)) *em*"
LATEX_PAYLOAD = r"\input{/etc/passwd} ^^5cinput $x$ {"
HOSTILE = f"run{HTML_PAYLOAD}{SCRIPT_PAYLOAD}{MARKDOWN_PAYLOAD}{TERMINAL_PAYLOAD}{LATEX_PAYLOAD}"
FORMULAS = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1:A9)"]
LEGIT = "CIFAR-10 (JPEG q75 copy) max_y p(y|x) jem_digits"


# ----------------------------------------------------------------------------------------------- helpers
def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own errors (exit 2 after one line)
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file, folder and link under ``folder`` with its size, mode, inode and modification time — what
    "untouched" means (an atomic replace changes the inode, any write the time), without reading the files."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mode, st.st_ino,
                                           st.st_mtime_ns)
    return out


def assert_one_error(code: int, err: str, needle: str, name: str = "") -> str:
    assert code == 2, (name, err)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("jembench") and "error: " in errors[0], (name, err)
    assert needle in errors[0], (name, needle, errors[0])
    assert "Traceback" not in err, (name, err)
    assert "\x1b" not in err and "\x9b" not in err, (name, err)
    return errors[0]


def save_state(path: Path, state) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        torch.save(state, fh)
    return path


def png(path: Path, size: tuple[int, int] = (8, 8), value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, dtype=np.uint8)).save(path)
    return path


def write_record(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def set_path(obj: dict, key: str, value) -> None:
    """``obj["a"]["b"] = value`` for ``key = "a.b"`` (``DELETE`` removes the entry)."""
    *parents, leaf = key.split(".")
    for part in parents:
        obj = obj[part]
    if value is DELETE:
        del obj[leaf]
    else:
        obj[leaf] = value


def good_record(**changes) -> dict:
    rec = make_record(suite="accuracy", model={"name": "jem-digits", "method": "jem", "dataset": "digits",
                                               "sha256": "a" * 64},
                      dataset="digits", protocol=load_protocol("accuracy-tiny"), metrics={"accuracy": 90.0})
    for key, value in changes.items():
        set_path(rec, key, value)
    return rec


DELETE = object()


class _Dom(HTMLParser):
    """Elements, attributes and text of an HTML document."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.title = ""
        self.text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        self.text.append(data)


def dom(text: str) -> _Dom:
    d = _Dom()
    d.feed(text)
    return d


def assert_inert_html(text: str, allowed_scripts: int = 0) -> None:
    """No element or attribute that runs code: no <img> but data: PNGs, no <script> beyond the page's own, no
    on* handler, no javascript: URL."""
    d = dom(text)
    scripts = [t for t, _ in d.tags if t == "script"]
    assert len(scripts) <= allowed_scripts, scripts
    for tag, attrs in d.tags:
        assert not any(k.lower().startswith("on") for k in attrs), (tag, attrs)
        assert not any("javascript:" in (v or "").lower() for v in attrs.values()), (tag, attrs)
        if tag == "img":
            assert attrs.get("src", "").startswith("data:image/png;base64,"), attrs
        assert tag not in ("iframe", "object", "embed", "a"), (tag, attrs)


# ----------------------------------------------------------------------------------------------- the lab
@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_jem_checkpoint) -> Path:
    """Every crafted input of the matrix, under one folder, plus out/ with the files a run must never touch."""
    root = tmp_path_factory.mktemp("hostile")
    good = torch.load(tiny_jem_checkpoint, map_location="cpu", weights_only=True)
    ck = root / "ckpt"

    def mutate(name: str, change: Callable[[dict], None]) -> None:
        state = copy.deepcopy(good)
        change(state)
        save_state(ck / name, state)

    def setter(key, value):
        return lambda state: set_path(state, key, value)

    first = next(k for k, v in good["model_state"].items() if v.is_floating_point())

    def poison(value):
        def change(state):
            state["model_state"][first].view(-1)[0] = value
        return change

    kwargs = good["arch_kwargs"]
    mutate("no-arch.pt", setter("arch", DELETE))
    mutate("kwargs-list.pt", setter("arch_kwargs", [10, 1]))
    mutate("state-list.pt", setter("model_state", [1, 2, 3]))
    mutate("state-not-tensor.pt", lambda state: state["model_state"].__setitem__(first, "weights"))
    mutate("classes-text.pt", setter("n_classes", "ten"))
    mutate("classes-huge.pt", setter("n_classes", 10**12))
    mutate("shape-2d.pt", setter("image_shape", [8, 8]))
    mutate("shape-negative.pt", setter("image_shape", [1, -8, 8]))
    mutate("absurd-width.pt", setter("arch_kwargs", {**kwargs, "widen_factor": 10**6}))
    mutate("absurd-depth.pt", setter("arch_kwargs", {**kwargs, "depth": 6 * 10**6 + 4}))
    mutate("absurd-classes.pt", setter("arch_kwargs", {**kwargs, "n_classes": 10**9}))
    mutate("unknown-arch.pt", setter("arch", "resnet9000"))
    mutate("kwargs-unknown.pt", setter("arch_kwargs", {**kwargs, "wings": 2}))
    mutate("kwargs-bad-norm.pt", setter("arch_kwargs", {**kwargs, "norm": "weird"}))
    mutate("version-99.pt", setter("format_version", 99))
    mutate("nan-weights.pt", poison(float("nan")))
    mutate("inf-weights.pt", poison(float("inf")))
    images = good["buffer"]["images"]
    mutate("buffer-shape.pt", setter("buffer.images", torch.zeros(len(images), 3, 32, 32)))
    mutate("buffer-dtype.pt", setter("buffer.images", torch.zeros(images.shape, dtype=torch.int32)))
    mutate("buffer-labels-float.pt", setter("buffer.labels", torch.zeros(len(images))))
    mutate("buffer-labels-range.pt", setter("buffer.labels", torch.full((len(images),), 99)))
    mutate("buffer-list.pt", setter("buffer", [1, 2]))
    mutate("config-name-list.pt", setter("config.name", ["a", "b"]))
    mutate("config-text.pt", setter("config", "lr=0.1"))
    mutate("other-method.pt", setter("config.method", "softmax"))
    mutate("config-bad-type.pt", setter("config.lr", "fast"))
    mutate("epoch-text.pt", setter("epoch", "three"))
    mutate("state-empty.pt", setter("model_state", {}))
    mutate("no-weights.pt", setter("model_state", DELETE))
    mutate("method-int.pt", setter("method", 3))
    mutate("shape-channels.pt", setter("image_shape", [1000, 8, 8]))
    save_state(ck / "top-list.pt", [1, 2, 3])
    save_state(ck / "official-ish.pt", {"model_state_dict": good["model_state"], "replay_buffer": None})
    (ck / "zero.pt").write_bytes(b"")

    class Evil:  # a pickle that needs code to load
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    save_state(ck / "code.pt", {"format": "jembench", "payload": Evil()})
    # a network whose output count (3) differs from the class count the checkpoint declares (10)
    three = dict(kwargs, n_classes=3)
    save_checkpoint(ck / "outputs-3-declares-10.pt", arch="wrn", arch_kwargs=three, model=wide_resnet(**three),
                    method="jem", dataset="digits", n_classes=10, image_shape=(1, 8, 8), config={})
    # an RGB 8x8 two-class network for the folder datasets
    rgb = dict(kwargs, n_classes=2, in_channels=3)
    save_checkpoint(ck / "rgb8.pt", arch="wrn", arch_kwargs=rgb, model=wide_resnet(**rgb), method="softmax",
                    dataset="folder", n_classes=2, image_shape=(3, 8, 8), config={"name": "rgb8"})
    # replay buffers for --buffer
    bf = root / "buffers"
    save_state(bf / "dict.pt", {"nothing": 1})
    save_state(bf / "shape.pt", torch.zeros(4, 3, 32, 32))
    save_state(bf / "int.pt", torch.zeros(4, 1, 8, 8, dtype=torch.int64))
    save_state(bf / "flat.pt", torch.zeros(64))
    # image folders (ImageFolder layout)
    fo = root / "folders"
    for split in ("train", "test"):
        for c in ("a", "b"):
            png(fo / "ok" / split / c / "0.png")
            png(fo / "mixed" / split / c / "0.png")
            png(fo / "truncated" / split / c / "0.png")
            png(fo / "zero" / split / c / "0.png")
            png(fo / "extra" / split / c / "0.png")
    png(fo / "mixed" / "test" / "b" / "1.png", size=(12, 12))
    data = (fo / "truncated" / "test" / "b" / "0.png").read_bytes()
    (fo / "truncated" / "test" / "b" / "0.png").write_bytes(data[: len(data) // 2])
    (fo / "zero" / "test" / "b" / "0.png").write_bytes(b"")
    for c in ("a", "b", "c"):
        png(fo / "lacking" / "train" / c / "0.png")
    for c in ("a", "b"):
        png(fo / "lacking" / "test" / c / "0.png")
    png(fo / "extra" / "test" / "c" / "0.png")
    for split in ("train", "test"):
        png(fo / "empty-class" / split / "a" / "0.png")
        (fo / "empty-class" / split / "b").mkdir(parents=True)
    (fo / "a-file").write_text("not a folder")
    # protocols
    pr = root / "protocols"
    pr.mkdir()
    (pr / "typo.toml").write_text('suite = "calibration"\nn_binz = 10\n')
    (pr / "negative.toml").write_text('suite = "accuracy"\nn = -5\n')
    (pr / "text-count.toml").write_text('suite = "accuracy"\nn = "all"\n')
    (pr / "bool-count.toml").write_text('suite = "accuracy"\nn = true\n')
    (pr / "inf-noise.toml").write_text('suite = "accuracy"\ninput_noise = inf\n')
    (pr / "zero-bins.toml").write_text('suite = "calibration"\nn_bins = 0\n')
    (pr / "other-suite.toml").write_text('suite = "speed"\nn = 10\n')
    # records, each bad one alone in its folder
    rc = root / "records"
    write_record(rc / "good" / "r.json", good_record())
    bad = {
        "not-json": "{not json",
        "deep-json": "[" * 100_000 + "]" * 100_000,
        "deep-record": good_record(details=json.loads('{"a":' * 40 + "1" + "}" * 40)),
        "metrics-list": good_record(metrics=[1, 2]),
        "metric-text": good_record(metrics={"accuracy": "90%"}),
        "metric-bool": good_record(metrics={"accuracy": True}),
        "name-int": good_record(**{"model.name": 7}),
        "name-list": good_record(**{"model.name": ["a"]}),
        "name-long": good_record(**{"model.name": "x" * 5000}),
        "no-model": good_record(model=DELETE),
        "hash-int": good_record(**{"protocol.hash": 5}),
        "protocol-list": good_record(protocol=["accuracy"]),
        "figures-dict": good_record(figures={"a": "b.png"}),
        "seed-text": good_record(seed="zero"),
        "suite-int": good_record(suite=3),
        "dataset-list": good_record(dataset=["digits"]),
        "huge-int": json.dumps(good_record()).replace('"seed": 0', '"seed": ' + "9" * 5000),
        "wrong-schema": good_record(schema="jembench-record/999"),
        "metric-nested": good_record(metrics={"accuracy": {"value": 90}}),
        "protocol-name-int": good_record(**{"protocol.name": 4}),
        "versions-list": good_record(versions=["torch"]),
        "figure-int": good_record(figures=[3]),
        "wall-time-text": good_record(wall_time_s="1s"),
        "name-empty": good_record(**{"model.name": ""}),
    }
    for name, obj in bad.items():
        write_record(rc / name / "r.json", obj)
    (rc / "latin1" / "r.json").parent.mkdir()
    (rc / "latin1" / "r.json").write_bytes(json.dumps(good_record()).encode().replace(b"jem-digits", b"j\xe9m"))
    (rc / "dir-named-json" / "r.json").mkdir(parents=True)
    (rc / "huge-file").mkdir()
    with open(rc / "huge-file" / "r.json", "wb") as fh:
        fh.truncate(65 * 2**20)  # sparse: costs no disk
    # report folders with hostile figure lists
    rp = root / "reports"
    png(root / "secret.png", value=200)  # outside every reported folder
    for name, figures in {"parent": ["../../secret.png"], "absolute": [str(root / "secret.png")],
                          "symlink": ["link.png"], "not-png": ["fig.png"]}.items():
        write_record(rp / name / "r.json", good_record(figures=figures))
    (rp / "symlink" / "link.png").symlink_to(root / "secret.png")
    (rp / "not-png" / "fig.png").write_text("<svg onload=alert(1)>")
    # resume folders
    rs = root / "resume"
    (rs / "empty").mkdir(parents=True)
    for name in ("other-method", "config-bad-type", "official-ish", "zero", "config-text"):
        (rs / name).mkdir()
        shutil.copy(ck / f"{name}.pt", rs / name / "last.pt")
    # the outputs a failed command must leave alone
    out = root / "out"
    out.mkdir()
    for name in ("record.json", "board.md", "report.html", "compact.pt"):
        (out / name).write_text(KEEP)
    (out / "a-folder.md").mkdir()
    return root


# ----------------------------------------------------------------------------------------------- the matrix
@dataclass(frozen=True)
class Row:
    cls: str  # issue 15 class: security, numbers, faults, one-line
    name: str
    args: tuple[str, ...]
    needle: str  # must appear in the one error line


def _rows(lab: Path, ckpt: str) -> list[Row]:
    ck, bf, fo, pr, rc, rp, rs, out = (lab / d for d in ("ckpt", "buffers", "folders", "protocols", "records",
                                                         "reports", "resume", "out"))
    rec = str(out / "record.json")

    def ev(path, *extra):
        return ("eval", str(path), "--preset", "tiny", "--out", rec, *extra)

    def on_folder(folder):
        return ev(ck / "rgb8.pt", "--dataset", f"folder:{fo / folder}")

    def board(path):
        return ("leaderboard", str(path), "--no-published", "--out", str(out / "board.md"))

    def train(*extra):
        return ("train", "jem", "--max-iters", "1", "--out", str(out / "run"), "--no-progress", *extra)

    rows = [
        # -- 3: silently wrong numbers
        Row("numbers", "NaN weights", ev(ck / "nan-weights.pt"), "non-finite weights"),
        Row("numbers", "Inf weights", ev(ck / "inf-weights.pt"), "non-finite weights"),
        Row("numbers", "network outputs != declared classes", ev(ck / "outputs-3-declares-10.pt"),
            "declares 10 classes"),
        Row("numbers", "checkpoint image shape != dataset's", ev(ck / "rgb8.pt", "--dataset", "digits"),
            "takes 3x8x8 images"),
        Row("numbers", "protocol key typo", ev(ckpt, "--suite", "calibration", "--protocol", pr / "typo.toml"),
            "unknown key 'n_binz'"),
        Row("numbers", "negative count", ev(ckpt, "--protocol", pr / "negative.toml"),
            "n = -5 must be in [0, 1000000]"),
        Row("numbers", "count as text", ev(ckpt, "--protocol", pr / "text-count.toml"), "must be an integer"),
        Row("numbers", "count as bool", ev(ckpt, "--protocol", pr / "bool-count.toml"), "must be an integer"),
        Row("numbers", "infinite noise", ev(ckpt, "--protocol", pr / "inf-noise.toml"), "finite number"),
        Row("numbers", "zero bins", ev(ckpt, "--suite", "calibration", "--protocol", pr / "zero-bins.toml"),
            "n_bins = 0 must be in [1, 10000]"),
        Row("numbers", "protocol of an unknown suite", ev(ckpt, "--protocol", pr / "other-suite.toml"),
            "is for suite 'speed'"),
        Row("numbers", "negative --n-samples", ev(ckpt, "--suite", "generation", "--n-samples", "-5"),
            "--n-samples -5 must be >= 1"),
        # -- 5: malformed checkpoints
        Row("one-line", "checkpoint without architecture", ev(ck / "no-arch.pt"), "no 'arch' field"),
        Row("one-line", "arch_kwargs a list", ev(ck / "kwargs-list.pt"), "'arch_kwargs' is list"),
        Row("one-line", "model_state a list", ev(ck / "state-list.pt"), "'model_state' is list"),
        Row("one-line", "weight not a tensor", ev(ck / "state-not-tensor.pt"), "must map names to tensors"),
        Row("one-line", "n_classes text", ev(ck / "classes-text.pt"), "'n_classes' is 'ten'"),
        Row("one-line", "n_classes absurd", ev(ck / "classes-huge.pt"), "'n_classes' is 1000000000000"),
        Row("one-line", "image_shape 2-D", ev(ck / "shape-2d.pt"), "'image_shape' is [8, 8]"),
        Row("one-line", "image_shape negative", ev(ck / "shape-negative.pt"), "'image_shape'"),
        Row("one-line", "absurd width", ev(ck / "absurd-width.pt"), "needs more than"),
        Row("one-line", "absurd depth", ev(ck / "absurd-depth.pt"), "needs more than"),
        Row("one-line", "absurd classes in arch", ev(ck / "absurd-classes.pt"), "needs more than"),
        Row("one-line", "unknown architecture", ev(ck / "unknown-arch.pt"), "unknown architecture 'resnet9000'"),
        Row("one-line", "unknown arch kwarg", ev(ck / "kwargs-unknown.pt"), "does not accept"),
        Row("one-line", "bad arch kwarg value", ev(ck / "kwargs-bad-norm.pt"), "cannot be built"),
        Row("one-line", "format version 99", ev(ck / "version-99.pt"), "format version 99"),
        Row("one-line", "epoch as text", ev(ck / "epoch-text.pt"), "'epoch' is 'three'"),
        Row("one-line", "no weights", ev(ck / "state-empty.pt"), "holds no weights"),
        Row("one-line", "no model_state", ev(ck / "no-weights.pt"), "no 'model_state' field"),
        Row("one-line", "method an int", ev(ck / "method-int.pt"), "'method' is int"),
        Row("one-line", "1000 channels", ev(ck / "shape-channels.pt"), "'image_shape' is [1000, 8, 8]"),
        Row("one-line", "buffer of another shape", ev(ck / "buffer-shape.pt"), "replay buffer images are"),
        Row("one-line", "buffer of ints", ev(ck / "buffer-dtype.pt"), "not float or uint8"),
        Row("one-line", "buffer labels float", ev(ck / "buffer-labels-float.pt"), "replay buffer labels"),
        Row("one-line", "buffer labels out of range", ev(ck / "buffer-labels-range.pt"), "outside [0, 10)"),
        Row("one-line", "buffer a list", ev(ck / "buffer-list.pt"), "'buffer' is list"),
        Row("one-line", "config name a list", ev(ck / "config-name-list.pt"), "config 'name'"),
        Row("one-line", "config a string", ev(ck / "config-text.pt"), "'config' is str"),
        Row("one-line", "checkpoint a list", ev(ck / "top-list.pt"), "holds a list"),
        Row("one-line", "zero-byte checkpoint", ev(ck / "zero.pt"), "zero.pt is truncated"),
        Row("one-line", "code-carrying pickle", ev(ck / "code.pt"), "refusing to load"),
        Row("one-line", "checkpoint is a folder", ev(out / "a-folder.md"), "is a folder, not a regular file"),
        # -- 5: malformed replay buffers (--buffer)
        Row("one-line", "--buffer without tensor", ev(ckpt, "--buffer", bf / "dict.pt"), "holds no tensor"),
        Row("one-line", "--buffer wrong shape", ev(ckpt, "--buffer", bf / "shape.pt"), "not float images"),
        Row("one-line", "--buffer of ints", ev(ckpt, "--buffer", bf / "int.pt"), "torch.int64"),
        Row("one-line", "--buffer 1-D", ev(ckpt, "--buffer", bf / "flat.pt"), "replay buffer of"),
        # -- 5: image folders
        Row("one-line", "mixed image sizes", on_folder("mixed"), "is 12x12 but the folder's images are 8x8"),
        Row("one-line", "truncated image", on_folder("truncated"), "0.png is unreadable"),
        Row("one-line", "zero-byte image", on_folder("zero"), "0.png is unreadable"),
        Row("one-line", "test split lacks a class", on_folder("lacking"), "test/ lacks ['c']"),
        Row("one-line", "test split has an extra class", on_folder("extra"), "test/ has extra ['c']"),
        Row("one-line", "empty class folder", on_folder("empty-class"), "holds no images"),
        Row("one-line", "folder is a file", on_folder("a-file"), "does not exist"),
        Row("one-line", "training on lacking test split", train("--dataset", f"folder:{fo / 'lacking'}"),
            "test/ lacks ['c']"),
        # -- 5: records
        *[Row("one-line", f"record: {name}", board(rc / name / "r.json"), needle) for name, needle in [
            ("not-json", "is not valid JSON"), ("deep-json", "nested too deeply"),
            ("deep-record", "nested more than 32 levels"), ("metrics-list", "'metrics' must be a mapping"),
            ("metric-text", "metric 'accuracy' is '90%'"), ("metric-bool", "metric 'accuracy' is True"),
            ("name-int", "model 'name' is int"), ("name-list", "model 'name' is list"),
            ("name-long", "5000 characters long"), ("no-model", "has no 'model' field"),
            ("hash-int", "protocol 'hash' is int"), ("protocol-list", "'protocol' must hold a 'hash'"),
            ("figures-dict", "'figures' is dict"), ("seed-text", "'seed' is 'zero'"), ("suite-int", "'suite' is int"),
            ("dataset-list", "'dataset' is list"), ("huge-int", "is not valid JSON"),
            ("wrong-schema", "is not a jembench record"), ("latin1", "is not valid JSON"),
            ("huge-file", "larger than any record"), ("metric-nested", "metric 'accuracy' is {'value': 90}"),
            ("protocol-name-int", "protocol 'name' is int"), ("versions-list", "'versions' is list"),
            ("figure-int", "'figures'[0] is int"), ("wall-time-text", "'wall_time_s' is '1s'"),
            ("name-empty", "'model' must hold a 'name'")]],
        Row("one-line", "record path missing", board(rc / "absent.json"), "does not exist"),
        Row("one-line", "report of a folder without records", ("report", str(rs / "empty"), "-o",
                                                               str(out / "report.html")), "no jembench records"),
        Row("one-line", "record folder with a folder named *.json", board(rc / "dir-named-json"), "is a folder"),
        Row("one-line", "check of a malformed record", ("check", str(rc / "metric-text" / "r.json")),
            "not a number"),
        Row("one-line", "report of a malformed record",
            ("report", str(rc / "name-int"), "-o", str(out / "report.html")), "model 'name' is int"),
        # -- 1: report figures outside the reported folder
        *[Row("security", f"report figure: {name}", ("report", str(rp / name), "-o", str(out / "report.html")),
              needle) for name, needle in [("parent", "outside the reported folder"),
                                           ("absolute", "outside the reported folder"),
                                           ("symlink", "outside the reported folder"),
                                           ("not-png", "is not a PNG file")]],
        # -- 5: options
        Row("one-line", "eval --seed beyond 64 bits", ev(ckpt, "--seed", str(2**70)), "must be in [0, 2**63)"),
        Row("one-line", "eval --seed negative", ev(ckpt, "--seed", "-1"), "--seed -1 must be in [0, 2**63)"),
        Row("one-line", "eval --batch-size 0", ev(ckpt, "--batch-size", "0"), "--batch-size 0 must be >= 1"),
        Row("one-line", "eval --device nonsense", ev(ckpt, "--device", "toaster"), "is not a torch device"),
        Row("one-line", "eval --seed text", ev(ckpt, "--seed", "zero"), "invalid int value: 'zero'"),
        Row("one-line", "train --seed beyond 64 bits", train("--seed", str(2**70)),
            f"--seed {2**70} must be in [0, 2**63)"),
        Row("one-line", "train --dropout 2", train("--dropout", "2"), "--dropout 2.0 must be in [0, 1)"),
        Row("one-line", "train --buffer-size 10**12", train("--buffer-size", str(10**12)), "lower --buffer-size"),
        Row("one-line", "train --device nonsense", train("--device", "toaster"), "is not a torch device"),
        Row("one-line", "export --buffer-n -1", ("export", ckpt, str(out / "compact.pt"), "--buffer-n", "-1"),
            "--buffer-n must be >= 0"),
        Row("one-line", "leaderboard --out a folder", ("leaderboard", "--no-published", str(rc / "good"), "--out",
                                                       str(out / "a-folder.md")), "is a folder"),
        Row("one-line", "report -o a folder", ("report", str(rc / "good"), "-o", str(out / "a-folder.md")),
            "is a folder"),
        # -- 5: --resume of an incompatible folder
        Row("one-line", "resume: no checkpoint", ("train", "jem", "--resume", str(rs / "empty")), "cannot resume"),
        Row("one-line", "resume: another method", ("train", "jem", "--resume", str(rs / "other-method")),
            "holds a 'softmax' run"),
        Row("one-line", "resume: malformed config", ("train", "jem", "--resume", str(rs / "config-bad-type")),
            "is malformed"),
        Row("one-line", "resume: config a string", ("train", "jem", "--resume", str(rs / "config-text")),
            "'config' is str"),
        Row("one-line", "resume: official checkpoint", ("train", "jem", "--resume", str(rs / "official-ish")),
            "not a jembench training checkpoint"),
        Row("one-line", "resume: zero-byte checkpoint", ("train", "jem", "--resume", str(rs / "zero")),
            "truncated"),
    ]
    if not torch.cuda.is_available():
        rows += [Row("one-line", "eval --device cuda without GPU", ev(ckpt, "--device", "cuda"), "no CUDA GPU"),
                 Row("one-line", "train --device cuda without GPU", train("--device", "cuda"), "no CUDA GPU")]
    return rows


ROW_NAMES = [r.name for r in _rows(Path("lab"), "ckpt.pt")]


@pytest.mark.parametrize("row", ROW_NAMES)
def test_bad_input_is_one_line_and_touches_nothing(row, lab, tiny_jem_checkpoint, capsys, monkeypatch):
    spec = next(r for r in _rows(lab, str(tiny_jem_checkpoint)) if r.name == row)
    monkeypatch.chdir(lab / "out")
    before = snapshot(lab)
    ckpt_before = Path(tiny_jem_checkpoint).read_bytes()
    code, out, err = run(capsys, *spec.args)
    assert_one_error(code, err, spec.needle, spec.name)
    assert snapshot(lab) == before, spec.name  # nothing created, changed or left half-written
    assert Path(tiny_jem_checkpoint).read_bytes() == ckpt_before


def test_the_matrix_covers_every_class():
    rows = _rows(Path("lab"), "ckpt.pt")
    counts = {c: sum(r.cls == c for r in rows) for c in ("security", "numbers", "one-line")}
    assert len(rows) >= 100 and all(n >= 4 for n in counts.values()), counts
    assert len(set(ROW_NAMES)) == len(ROW_NAMES)


# ------------------------------------------------------------------------- faults: real processes, real limits
def _cli(*args, preexec=None, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "jembench", *map(str, args)], capture_output=True, cwd=cwd or REPO,
                          env=env, timeout=300, preexec_fn=preexec)


def _file_size_limit(nbytes: int):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _decode(out: subprocess.CompletedProcess) -> str:
    return out.stderr.decode("utf-8", "replace")


def test_exit_code_and_inert_error_line_in_a_real_process(lab, tmp_path):
    """A shell sees exit 2 and one line; an escape sequence in the file name reaches the terminal inert."""
    evil = tmp_path / f"evil{TERMINAL_PAYLOAD.replace(chr(0x9b), '')}.pt"
    evil.write_bytes(b"PK\x03\x04 truncated")
    out = _cli("eval", evil, "--out", tmp_path / "r.json")
    assert out.returncode == 2
    assert b"\x1b" not in out.stderr and b"\x07" not in out.stderr
    line = assert_one_error(2, _decode(out), "is truncated or not a PyTorch file")
    assert "evil\\x1b]0;PWNED\\x07" in line  # shown, visibly escaped
    assert sorted(p.name for p in tmp_path.iterdir()) == [evil.name]


def test_file_size_limit_while_writing_the_leaderboard(lab, tmp_path):
    """RLIMIT_FSIZE (EFBIG; SIGXFSZ is ignored by the CLI): one line naming the file, old file intact, no temp."""
    target = tmp_path / "board.md"
    target.write_text(KEEP)
    out = _cli("leaderboard", lab / "records" / "good", "--out", target, preexec=_file_size_limit(4096))
    assert_one_error(out.returncode, _decode(out), f"cannot write {target}")
    assert "ulimit -f" in _decode(out)
    assert target.read_text() == KEEP and sorted(p.name for p in tmp_path.iterdir()) == ["board.md"]


def test_file_size_limit_while_writing_a_record_after_the_run(tiny_jem_checkpoint, tmp_path):
    """The suite runs, then the record write hits the limit: one line, previous record intact, no temp file. (The
    per-input evidence is written first, so it is the file that hits the limit: the record never names a file
    that is not there.)"""
    target = tmp_path / "accuracy.json"
    target.write_text(KEEP)
    out = _cli("eval", tiny_jem_checkpoint, "--preset", "tiny", "--out", target, preexec=_file_size_limit(512))
    assert_one_error(out.returncode, _decode(out), f"cannot write {tmp_path / 'accuracy.evidence.npz'}")
    assert target.read_text() == KEEP and sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.json"]


def _can_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces (unshare -m) for a "
                                                          "full / read-only tmpfs")


def _in_namespace(tmp_path: Path, setup: str, *args) -> tuple[int, str, str]:
    """Run jembench with ``tmp_path/mnt`` a small tmpfs in a private mount namespace after ``setup`` (shell);
    returns (exit code, stderr, listing + contents of the mount afterwards)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cmd = " ".join(f"'{a}'" for a in [sys.executable, "-m", "jembench", *map(str, args)])
    script = (f"mount -t tmpfs -o size=256k tmpfs '{mnt}' && printf '{KEEP.strip()}' > '{mnt}/out' && {setup}; "
              f"{cmd} 2>'{tmp_path}/err'; echo \"RC=$?\"; ls -A '{mnt}'; cat '{mnt}/out'")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    code = int(res.stdout.split("RC=")[1].split()[0])
    return code, (tmp_path / "err").read_text(), res.stdout.split("RC=")[1].split("\n", 1)[1]


@needs_mount
def test_full_disk_while_writing_the_report(lab, tmp_path):
    code, err, after = _in_namespace(tmp_path, f"dd if=/dev/zero of='{tmp_path}/mnt/fill' bs=4k 2>/dev/null",
                                     "report", lab / "records" / "good", "-o", tmp_path / "mnt" / "out")
    assert_one_error(code, err, "No space left on device")
    assert "the disk is full" in err
    assert after.split() == ["fill", "out", *KEEP.split()]  # no temp file; the old report intact


@needs_mount
def test_read_only_folder_while_writing_the_leaderboard(lab, tmp_path):
    code, err, after = _in_namespace(tmp_path, f"mount -o remount,ro '{tmp_path}/mnt'",
                                     "leaderboard", lab / "records" / "good", "--out", tmp_path / "mnt" / "out")
    assert_one_error(code, err, "Read-only file system")
    assert after.split() == ["out", *KEEP.split()]


# ----------------------------------------------------------------------------------------------- umask
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_umask_permissions(mask, lab, tiny_jem_checkpoint, tmp_path, capsys):
    old = os.umask(mask)
    try:
        record = str(tmp_path / "r" / "a.json")
        assert main(["eval", str(tiny_jem_checkpoint), "--preset", "tiny", "--out", record]) == 0
        assert main(["leaderboard", str(tmp_path / "r"), "--out", str(tmp_path / "board.md")]) == 0
        assert main(["report", str(tmp_path / "r"), "-o", str(tmp_path / "report.html")]) == 0
        assert main(["export", str(tiny_jem_checkpoint), str(tmp_path / "compact.pt"), "--buffer-n", "4"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for name in ("r/a.json", "board.md", "report.html", "compact.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, (name, oct(mask))


# ----------------------------------------------------------------------------------------------- numbers
def _shared_name_records(folder: Path) -> None:
    proto = load_protocol("accuracy-tiny")
    for name, digest, acc in (("a.json", "a" * 64, 90.0), ("b.json", "b" * 64, 50.0), ("c.json", "a" * 64, 80.0)):
        write_record(folder / name, make_record(suite="accuracy", model={"name": "jem-digits", "method": "jem",
                                                                         "dataset": "digits", "sha256": digest},
                                                dataset="digits", protocol=proto, metrics={"accuracy": acc}))


def test_records_of_different_models_sharing_a_name_are_never_averaged(tmp_path, capsys):
    _shared_name_records(tmp_path / "r")
    code, out, _ = run(capsys, "leaderboard", tmp_path / "r", "--no-published", "--format", "csv")
    assert code == 0
    rows = {r["model"]: float(r["accuracy"]) for r in csv.DictReader(io.StringIO(out))}
    assert rows == {"jem-digits@aaaaaaaa (ours)": 85.0, "jem-digits@bbbbbbbb (ours)": 50.0}  # not 73.33


def test_glob_characters_in_the_record_path_keep_resume_bookkeeping(tiny_jem_checkpoint, tmp_path, capsys):
    """``r[1].json``: the stale partial results beside it are recognised (a glob would not match them)."""
    out = tmp_path / "r[1].json"
    digest = load_protocol("accuracy-tiny").hash
    stale = tmp_path / f"r[1].partial.{digest}.unit.json"
    stale.write_text("{}")
    other = tmp_path / f"r1.partial.{digest}.unit.json"  # what the unescaped pattern r[1] would have matched
    other.write_text("{}")
    code, _, err = run(capsys, "eval", tiny_jem_checkpoint, "--preset", "tiny", "--out", out)
    assert code == 0, err
    assert out.is_file() and not stale.exists() and other.exists()


# ----------------------------------------------------------------------------------------------- security
@pytest.fixture(scope="module")
def hostile_run(lab, tiny_jem_checkpoint, tmp_path_factory) -> Path:
    """A run folder whose records carry payloads: one made by `jembench eval` of a checkpoint whose run name is
    hostile, and crafted ones with hostile dataset, protocol and model names (CSV formulas, legitimate text)."""
    root = tmp_path_factory.mktemp("hostile-run")
    state = torch.load(tiny_jem_checkpoint, map_location="cpu", weights_only=True)
    state["config"]["name"] = HOSTILE
    save_state(root / "ckpt" / "hostile.pt", state)
    capture = io.StringIO()
    saved = sys.stdout
    sys.stdout = capture
    try:
        assert main(["eval", str(root / "ckpt" / "hostile.pt"), "--preset", "tiny", "--out",
                     str(root / "run" / "eval.json")]) == 0
    finally:
        sys.stdout = saved
    (root / "eval-stdout.txt").write_text(capture.getvalue(), encoding="utf-8")
    proto = load_protocol("accuracy-tiny")
    models = [HOSTILE + " crafted", *FORMULAS, LEGIT]
    for i, name in enumerate(models):
        rec = make_record(suite="accuracy", model={"name": name, "method": "jem", "dataset": "digits",
                                                   "sha256": f"{i:064x}"},
                          dataset="folder:/data/" + HOSTILE, protocol=proto,
                          metrics={"accuracy": 50.0 + i}, figures=["fig.png"])
        rec["protocol"]["name"] = HOSTILE
        write_record(root / "run" / f"crafted{i}.json", rec)
    png(root / "run" / "fig.png", value=90)
    return root


def _board(capsys, run_dir: Path, fmt: str) -> str:
    code, out, err = run(capsys, "leaderboard", run_dir / "run", "--format", fmt)
    assert code == 0, err
    return out


def test_eval_prints_the_hostile_run_name_inert(hostile_run):
    text = (hostile_run / "eval-stdout.txt").read_text(encoding="utf-8")
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text and "\u202e" not in text
    assert "\\x1b]0;PWNED\\x07" in text and "\\u202e" in text
    record = json.loads((hostile_run / "run" / "eval.json").read_text(encoding="utf-8"))
    assert record["model"]["name"] == HOSTILE  # the record keeps the data as it is; outputs escape it


def test_markdown_leaderboard_keeps_payloads_inert(hostile_run, capsys):
    import markdown

    md = _board(capsys, hostile_run, "md")
    assert "\x1b" not in md and "<img" not in md and "<script" not in md
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.rstrip().endswith("|") for line in table_lines)
    assert not any("injected" in line and line.startswith("| injected") for line in md.splitlines())
    page = markdown.markdown(md, extensions=["tables"])
    assert_inert_html(page)
    cells = dom(page).text
    assert any(HTML_PAYLOAD in c for c in cells)  # shown as text, exactly as written
    assert any(LEGIT + " (ours)" in c for c in cells)  # legitimate text reads as written


def test_html_csv_latex_and_console_keep_payloads_inert(hostile_run, capsys):
    page = _board(capsys, hostile_run, "html")
    assert_inert_html(page)
    assert "Content-Security-Policy" in page and "script-src 'none'" in page
    assert any(HTML_PAYLOAD in t for t in dom(page).text) and any(LEGIT in t for t in dom(page).text)

    text = _board(capsys, hostile_run, "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert len({len(r) for r in rows}) == 1  # no newline split a row
    for row in rows:
        for cell in row:
            try:
                float(cell)
                continue
            except ValueError:
                pass
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
            assert "\n" not in cell and "\x1b" not in cell
    models = {r[4] for r in rows[1:]}
    assert {f"'{f} (ours)" for f in FORMULAS} <= models and f"{LEGIT} (ours)" in models

    tex = _board(capsys, hostile_run, "latex")
    assert r"\input{" not in tex and "^^5c" not in tex and "\x1b" not in tex
    assert r"\textbackslash{}input\{/etc/passwd\}" in tex
    assert r"CIFAR-10 (JPEG q75 copy) max\_y p(y$|$x) jem\_digits" in tex

    md = _board(capsys, hostile_run, "md")  # printed to the console
    assert "\x1b" not in md and "\x07" not in md and "\\x1b" in md


def test_check_table_on_the_console_is_inert(hostile_run, capsys):
    code, out, err = run(capsys, "check", hostile_run / "run", "--baseline", hostile_run / "run", "--all")
    assert code in (0, 1), err
    assert "\x1b" not in out + err and "\x07" not in out + err


def _chromium(pages: list[Path], tmp_path: Path) -> list[str]:
    """The DOM of each page after load, one headless Chromium at a time (a few seconds each on a quiet machine;
    several at once starve each other on two busy cores)."""
    doms = []
    for page in pages:
        profile = tempfile.mkdtemp(dir=tmp_path)
        res = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                              page.resolve().as_uri()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=300)
        doms.append(res.stdout)
    return doms


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium); "
                                             "the headless-browser security check needs it")
def test_payloads_do_not_execute_in_headless_chromium(hostile_run, tmp_path, capsys):
    """Markdown leaderboard (python-markdown, no sanitiser), HTML leaderboard and the HTML report, opened in
    Chromium: the payload never runs. Controls: the raw payload in a Markdown table does run (the check can
    fail), and the report stays inert with its Content-Security-Policy removed (escaping alone holds) and with
    the raw payload injected but the policy kept (the policy alone holds)."""
    import markdown

    def html_doc(body: str) -> str:
        return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>board</title></head><body>{body}</body></html>"

    md = _board(capsys, hostile_run, "md")
    pages = {"md": html_doc(markdown.markdown(md, extensions=["tables"])),
             "control": html_doc(markdown.markdown(f"| a |\n|---|\n| {HTML_PAYLOAD} |\n\n{SCRIPT_PAYLOAD}",
                                                   extensions=["tables"])),
             "html": _board(capsys, hostile_run, "html")}
    assert main(["report", str(hostile_run / "run"), "-o", str(tmp_path / "report.html")]) == 0
    capsys.readouterr()
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    no_csp = "\n".join(line for line in report.splitlines() if "Content-Security-Policy" not in line)
    pages["report-no-csp"] = no_csp
    pages["report-raw-payload-with-csp"] = report.replace("<h2>Records</h2>", f"<h2>Records</h2>{HTML_PAYLOAD}"
                                                          f"{SCRIPT_PAYLOAD}", 1)
    paths = []
    for name, text in pages.items():
        paths.append(tmp_path / f"{name}.html")
        paths[-1].write_text(text, encoding="utf-8")
    doms = dict(zip(pages, _chromium(paths, tmp_path)))
    assert dom(doms["control"]).title == "PWNED"  # the harness sees execution when there is some
    for name in ("md", "html", "report-no-csp", "report-raw-payload-with-csp"):
        assert dom(doms[name]).title != "PWNED", name
    report_dom = dom(doms["report-no-csp"])
    body = next(attrs for tag, attrs in report_dom.tags if tag == "body")
    assert body.get("data-report-ready") == "yes"  # the page's own script still runs (allowed by its hash)
    assert any(HTML_PAYLOAD in t for t in report_dom.text)


def test_legitimate_text_stays_readable_in_every_format():
    label, score = "CIFAR-10 (JPEG q75 copy)", "max_y p(y|x)"
    assert escape.markdown(label) == label and escape.html(label) == label and escape.csv_cell(label) == label
    assert escape.markdown(score) == r"max_y p(y\|x)" and escape.html(score) == score
    assert escape.latex(score) == r"max\_y p(y$|$x)" and escape.terminal(score) == score
    assert escape.markdown("Tiny ImageNet 32 (CIFAR-100 stand-in)") == "Tiny ImageNet 32 (CIFAR-100 stand-in)"
    assert escape.terminal("ε=8/255 ↑ ×\nnext") == "ε=8/255 ↑ ×\nnext"
    assert escape.csv_cell(-0.5) == -0.5 and escape.csv_cell("-0.5 loss") == "'-0.5 loss"
