"""The hostile matrix of issue 21: the crafted inputs (``build_lab``), the cases (``CASES``) and the worker that
runs every case in one memory-bounded process (``python tests/hostile_lab.py LAB CKPT OUT.json``).

Why one worker process: a fresh ``python -m jembench`` costs ~6 s of imports, so a hundred subprocesses would take
ten minutes; one process under ``RLIMIT_AS`` (what ``ulimit -v`` sets) runs every case through the real CLI
(``jembench.cli.main``), each under a SIGALRM deadline, and records for each: the exit code, what was printed, a
traceback if one escaped, the seconds it took, and whether any file of the lab changed. A case that tried to
allocate tens of GB fails inside the limit instead of taking the machine; one that hangs is stopped by the alarm
(a blocking ``open()`` of a FIFO is interrupted too: Python retries it only after the handler ran). The verdicts
are asserted in ``tests/test_hostile_matrix.py``.

Case placeholders: ``{lab}`` (the crafted inputs), ``{ckpt}`` (a tiny trained JEM on digits), ``{out}`` (a
folder outside the lab for the outputs of cases that must succeed).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import resource
import shutil
import signal
import stat
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEADLINE_S = 60  # per case; a case that takes longer is a hang
MEMORY_LIMIT = 6 * 2**30  # RLIMIT_AS of the worker: ~3.7 GB are torch's imports (virtual), the rest is headroom


@dataclass(frozen=True)
class Case:
    """One hostile input and the verdict it must get.

    ``expect``: ``error`` — exit 2, exactly one ``jembench: error:`` line containing ``needle``, no traceback,
    no file of the lab created, changed or deleted (the run folder's lock file excepted: each writer rewrites
    its note); ``ok`` — exit 0, no traceback, ``needle`` (a note) on stderr when given; ``exit1`` — exit 1 (a
    regression found), no error line, ``needle`` on stdout; ``raises`` — the Python expression ``api`` raises a
    ``JembenchError`` containing ``needle``; ``true`` — the expression ``api`` is true. ``needle`` may join
    several required parts with `` && ``. ``env``: environment variables for the case (``cwd`` is the folder it
    runs in; default the lab's ``out/``)."""

    cls: str
    name: str
    argv: tuple[str, ...] = ()
    needle: str = ""
    expect: str = "error"
    api: str = ""
    env: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- the lab
def _save(path: Path, obj) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _png(path: Path, size=(8, 8), value=0, mode="RGB") -> Path:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    arr = np.full((size[1], size[0], channels), value, dtype=np.uint8)
    Image.fromarray(arr if channels == 3 else arr[..., 0]).save(path)
    return path


def _sparse(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)  # no disk used
    return path


def _record(**changes) -> dict:
    from jembench.protocols import load_protocol
    from jembench.records import make_record

    suite = changes.pop("suite", "accuracy")
    proto = changes.pop("proto", f"{suite}-tiny")
    rec = make_record(suite=suite, model={"name": "jem-digits", "method": "jem", "dataset": "digits",
                                          "sha256": "a" * 64},
                      dataset="digits", protocol=load_protocol(proto), metrics={})
    rec["metrics"] = changes.pop("metrics", {"accuracy": 90.0, "n": 360.0})  # as given, even if not numbers
    for key, value in changes.items():
        node = rec
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return rec


def _write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


_NET = ("import torch\n\ndef build():\n    return Net()\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.lin = torch.nn.Linear(64, 10)\n\n    def forward(self, x):\n")
MODULES = {
    "m_raises": "def build():\n    raise RuntimeError('boom')\n",
    "m_needs_args": "import torch\n\ndef build(n_classes):\n    return torch.nn.Linear(64, n_classes)\n",
    "m_import_fails": "import jembench_no_such_dependency\n\ndef build():\n    pass\n",
    "m_import_raises": "raise ValueError('configuration missing')\n",
    "m_syntax": "def build(:\n    pass\n",
    "m_exits": "import sys\nsys.exit(3)\n",
    "m_not_module": "def build():\n    return 42\n",
    "m_nan_logits": _NET + ("        # finite on blank images, NaN where a pixel is below -0.5 (most digits pixels)\n"
                            "        return self.lin(x.flatten(1)) * torch.log(x.flatten(1)[:, :1] + 0.5)\n"),
    "m_batch_of_two": _NET + "        return self.lin(x.reshape(2, 64))  # passes the 2-image probe only\n",
    "m_int_logits": _NET + "        return self.lin(x.flatten(1)).round().long()\n",
}


def build_lab(lab: Path, ckpt: Path) -> dict:
    """Write every crafted input under ``lab``; returns facts the cases' expressions use."""
    import numpy as np
    import torch

    from jembench import run_lock
    from jembench.protocols import load_protocol
    from jembench.records import sha256_file

    sys.path.insert(0, str(HERE))
    from official_models import official_model

    good = torch.load(ckpt, map_location="cpu", weights_only=True)
    first = next(k for k, v in good["model_state"].items() if v.is_floating_point() and v.dim() == 4)

    # -- our checkpoints, mutated
    ck = lab / "ckpt"

    def ours(name, change):
        state = copy.deepcopy(good)
        change(state["model_state"])
        _save(ck / name, state)

    ours("int-weights.pt", lambda s: s.__setitem__(first, s[first].round().to(torch.int32)))
    ours("bool-weights.pt", lambda s: s.__setitem__(first, s[first] > 0))
    ours("complex-weights.pt", lambda s: s.__setitem__(first, s[first].to(torch.complex64)))
    ours("zero-d-weight.pt", lambda s: s.__setitem__(first, torch.tensor(1.0)))
    ours("expanded-weight.pt", lambda s: s.__setitem__(first, torch.zeros(1).expand(10**6, *s[first].shape[1:])))
    # the training block (jembench/training_block.py): how a stranger's run says its training went
    for name, block in (("training-str.pt", "recovered"),
                        ("training-long-list.pt", {"recovered_divergences": 1, "recovered_at": list(range(10**5))}),
                        ("training-text-count.pt", {"recovered_divergences": "1e9"})):
        _save(ck / name, dict(copy.deepcopy(good), training=block))
    _sparse(ck / "five-gib.pt", 5 * 2**30)
    (ck / "dir.pt").mkdir(parents=True)
    os.mkfifo(ck / "fifo.pt")
    (ck / "zero-dev.pt").symlink_to("/dev/zero")
    (ck / "loop-a.pt").symlink_to(ck / "loop-b.pt")
    (ck / "loop-b.pt").symlink_to(ck / "loop-a.pt")

    # -- official checkpoints (independent transcription of the official classes), mutated
    of = lab / "official"
    base = dict(official_model("sada_jem", depth=10, width=1, norm="batch").state_dict())

    def official(name, change):
        state = dict(base)
        change(state)
        _save(of / name, {"model_state_dict": state, "replay_buffer": None})

    official("int-weights.pt", lambda s: s.__setitem__("f.conv1.weight", s["f.conv1.weight"].round().to(torch.int64)))
    official("bool-weights.pt", lambda s: s.__setitem__("class_output.weight", s["class_output.weight"] > 0))
    official("complex-weights.pt", lambda s: s.__setitem__("class_output.weight",
                                                           s["class_output.weight"].to(torch.complex64)))
    official("zero-d-conv.pt", lambda s: s.__setitem__("f.layer1.0.conv1.weight", torch.tensor(0.5)))
    official("one-d-head.pt", lambda s: s.__setitem__("class_output.weight", s["class_output.weight"][0]))
    official("huge-head.pt", lambda s: s.__setitem__("class_output.weight", torch.zeros(1).expand(10**9, 64)))
    official("huge-width.pt", lambda s: s.__setitem__("f.layer1.0.conv1.weight",
                                                      torch.zeros(1).expand(16 * 10**4, 16, 3, 3)))
    official("nan-weights.pt", lambda s: s.__setitem__("f.conv1.weight", torch.full_like(s["f.conv1.weight"],
                                                                                          float("nan"))))
    official("nan-running-var.pt", lambda s: s.__setitem__("f.bn1.running_var",
                                                           torch.full_like(s["f.bn1.running_var"], float("nan"))))
    official("good.pt", lambda s: None)

    # -- class statistics for --informative-stats (digits: 10 classes, D = 64)
    st = lab / "stats"
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(10, 64, generator=gen) * 0.1
    a = torch.randn(10, 64, 64, generator=gen) * 0.1
    covs = a @ a.transpose(1, 2)
    _save(st / "mean.pt", means)
    _save(st / "cov.pt", covs)
    _save(st / "mean-nan.pt", means.clone().index_fill_(1, torch.tensor([3]), float("nan")))
    _save(st / "cov-inf.pt", covs.clone().index_fill_(1, torch.tensor([5]), float("inf")))
    skew = covs.clone()
    skew[2, 0, 1] += 0.5
    _save(st / "cov-asymmetric.pt", skew)
    _save(st / "cov-negative.pt", -covs - torch.eye(64))
    _save(st / "cov-int.pt", covs.round().long())
    _save(st / "cov-shape.pt", covs[:, :10, :10].contiguous())
    os.mkfifo(st / "cov-fifo.pt")

    # -- replay buffers for --buffer
    bf = lab / "buffers"
    bf.mkdir()
    os.mkfifo(bf / "fifo.pt")
    (bf / "urandom.pt").symlink_to("/dev/urandom")
    _sparse(bf / "five-gib.pt", 5 * 2**30)

    # -- records
    rc = lab / "records"
    _write_json(rc / "good" / "r.json", _record())
    (rc / "fifo-folder").mkdir(parents=True)
    _write_json(rc / "fifo-folder" / "r.json", _record())
    os.mkfifo(rc / "fifo-folder" / "pipe.json")
    (rc / "device-folder").mkdir()
    _write_json(rc / "device-folder" / "r.json", _record())
    (rc / "device-folder" / "zero.json").symlink_to("/dev/zero")
    (rc / "loop-folder" / "sub").mkdir(parents=True)
    _write_json(rc / "loop-folder" / "r.json", _record())
    (rc / "loop-folder" / "sub" / "loop").symlink_to(rc / "loop-folder")
    (rc / "loop-folder" / "sub" / "root").symlink_to("/")
    os.mkfifo(rc / "pipe.json")
    (rc / "zero.json").symlink_to("/dev/zero")
    _sparse(rc / "sparse.json", 65 * 2**20)
    _write_json(rc / "nul-figure" / "r.json", _record(figures=["fig\x00.png"]))
    bad = os.fsencode(str(rc / "undecodable")) + b"/\xff\xfe-r.json"
    os.makedirs(os.fsdecode(os.path.dirname(bad)), exist_ok=True)
    with open(bad, "w") as fh:
        fh.write(json.dumps(_record(metrics={"accuracy": "high"})))
    good_name = os.fsencode(str(rc / "undecodable-good")) + b"/\xff\xfe-r.json"
    os.makedirs(os.fsdecode(os.path.dirname(good_name)), exist_ok=True)
    with open(good_name, "w") as fh:
        fh.write(json.dumps(_record()))
    _write_json(rc / "steps-text" / "r.json", _record(**{"model.sgld_steps": "five"}))
    _write_json(rc / "steps-list" / "r.json", _record(**{"model.sgld_steps": [5]}))
    _write_json(rc / "label-list" / "r.json", _record(dataset_label=["CIFAR"]))
    # numbers that only a recomputation from n and the metric table's ranges can catch (issue 21 item 3)
    _write_json(rc / "acc-1e308" / "r.json", _record(metrics={"accuracy": 1e308, "n": 360.0}))
    _write_json(rc / "acc-negative" / "r.json", _record(metrics={"accuracy": -5.0, "n": 360.0}))
    (rc / "acc-huge-int").mkdir()
    (rc / "acc-huge-int" / "r.json").write_text(json.dumps(_record()).replace('"accuracy": 90.0',
                                                                             '"accuracy": 1' + "0" * 400))
    ood = dict(suite="ood", metrics={"auroc/uniform/log_px": 0.95},
               details={"n_in": 360, "sets": {"uniform": {"n": 360, "scores": {"log_px": {"auroc_se": 1e6}}}}})
    _write_json(rc / "auroc-own-se" / "baseline" / "r.json", _record(**copy.deepcopy(ood)))
    _write_json(rc / "auroc-own-se" / "now" / "r.json",
                _record(**{**copy.deepcopy(ood), "metrics": {"auroc/uniform/log_px": 0.0}}))
    _write_json(rc / "auroc-5" / "r.json", _record(suite="ood", metrics={"auroc/uniform/log_px": 5.0}))
    # a baseline claiming one test image: its error would be ±50 points if check believed it
    _write_json(rc / "acc-own-n" / "baseline" / "r.json", _record(metrics={"accuracy": 90.0, "n": 1.0}))
    _write_json(rc / "acc-own-n" / "now" / "r.json", _record(metrics={"accuracy": 10.0, "n": 360.0}))
    _write_json(rc / "n-huge" / "r.json", _record(metrics={"accuracy": 90.0, "n": 1e12}))
    _write_json(rc / "set-n-half" / "r.json", _record(**{**copy.deepcopy(ood), "details": {
        "n_in": 360, "sets": {"uniform": {"n": 0.5}}}}))

    # -- tolerance files
    tl = lab / "tolerances"
    (tl / "dir.toml").mkdir(parents=True)
    os.mkfifo(tl / "fifo.toml")
    (tl / "zero.toml").symlink_to("/dev/zero")
    _sparse(tl / "sparse.toml", 2 * 2**20)
    (tl / "latin1.toml").write_bytes(b'[metrics."accuracy"]\ndirection = "h\xe9igher"\n')

    # -- protocols
    pr = lab / "protocols"
    pr.mkdir()
    os.mkfifo(pr / "fifo.toml")
    (pr / "zero.toml").symlink_to("/dev/zero")
    (pr / "dir.toml").mkdir()
    _sparse(pr / "sparse.toml", 2 * 2**20)
    for name, text in {
        "ood-hist-bins": 'suite = "ood"\nhist_bins = 1_000_000_000_000\n',
        "ood-n-out": 'suite = "ood"\nn_out = 10_000_000_000\n',
        "ood-noise": 'suite = "ood"\ninput_noise = 1e9\n',
        "cal-bins": 'suite = "calibration"\nn_bins = 1_000_000_000\n',
        "acc-batch": 'suite = "accuracy"\nbatch_size = 1_000_000_000\n',
        "acc-n": 'suite = "accuracy"\nn = 10_000_000_000\n',
        "gen-kid": 'suite = "generation"\nkid_subsets = 1_000_000_000\n',
        "gen-ref": 'suite = "generation"\nreference_n = 1_000_000_000\n',
        "gen-grid": 'suite = "generation"\ngrid_n = 1_000_000_000\n',
        "gen-steps": 'suite = "generation"\n[sgld]\nn_steps = 1_000_000_000\n',
        "rob-eot": 'suite = "robustness"\n[refine]\neot_defense = 1_000_000_000\n',
        "rob-k": 'suite = "robustness"\n[refine]\nsteps = [0, 1_000_000_000]\n',
        "rob-linf": 'suite = "robustness"\n[pgd]\nlinf_eps = [0, 5]\n',
        "rob-restarts": 'suite = "robustness"\n[pgd]\nrestarts = 1_000_000\n',
        "rob-n": 'suite = "robustness"\nn = 1_000_000_000\n',
        "rob-seed": 'suite = "robustness"\ninput_seed = -1\n',
        "rob-queries": 'suite = "robustness"\n[boundary]\nmax_queries = 10_000_000_000\n',
        "deep": 'suite = "accuracy"\nx = ' + "[" * 5000 + "]" * 5000 + "\n",
        # fast protocols for the cases that must run (caches, partial files)
        "gen-fast": ('suite = "generation"\nsources = ["buffer"]\nfeature_extractor = "jembench-tiny-conv"\n'
                     'reference_split = "train"\nreference_n = 64\nisc_splits = 1\nkid_subsets = 2\n'
                     'kid_subset_size = 16\ngrid_n = 0\n'),
        "gen-informative": ('suite = "generation"\nsources = ["fresh"]\nfeature_extractor = "jembench-tiny-conv"\n'
                            'reference_n = 64\nn_samples = 8\ninit = "informative"\ninformative_fit_n = 200\n'
                            'isc_splits = 1\nkid_subsets = 2\nkid_subset_size = 8\ngrid_n = 0\n'
                            '[sgld]\nn_steps = 1\n'),
        "rob-fast": ('suite = "robustness"\nn = 4\nbatch_size = 2\n[refine]\nsteps = [0]\neot_attack = 1\n'
                     'eot_defense = 1\n[pgd]\nnorms = ["linf"]\nsteps = 2\nrestarts = 1\nsearch_steps = 0\n'
                     'linf_eps = [0, "8/255"]\n[boundary]\nenabled = false\n[pointwise]\nenabled = false\n'),
    }.items():
        (pr / f"{name}.toml").write_text(text)

    # -- published numbers
    pb = lab / "published"
    (pb / "fifo-only").mkdir(parents=True)
    os.mkfifo(pb / "fifo-only" / "numbers.csv")
    (pb / "device-only").mkdir()
    (pb / "device-only" / "numbers.csv").symlink_to("/dev/zero")
    (pb / "loop-only").mkdir()
    (pb / "loop-only" / "numbers.csv").symlink_to(pb / "loop-only" / "numbers.csv")

    # -- image folders (ImageFolder layout), 8x8 RGB for the rgb8 checkpoint
    from jembench.models import save_checkpoint
    from jembench.reference_models.wideresnet import wide_resnet

    kwargs = dict(good["arch_kwargs"], n_classes=2, in_channels=3)
    save_checkpoint(ck / "rgb8.pt", arch="wrn", arch_kwargs=kwargs, model=wide_resnet(**kwargs), method="softmax",
                    dataset="folder", n_classes=2, image_shape=(3, 8, 8), config={"name": "rgb8"})
    fo = lab / "folders"

    def folder(name):
        for split in ("train", "test"):
            for c in ("a", "b"):
                _png(fo / name / split / c / "0.png", value=40 * (c == "b"))
                _png(fo / name / split / c / "1.png", value=200)
        return fo / name

    folder("ok")
    for split in ("train", "test"):  # 32x32 RGB, 10 classes: what the official WRN takes
        for c in range(10):
            _png(fo / "rgb32" / split / f"c{c}" / "0.png", size=(32, 32), value=20 * c)
    (folder("loop") / "test" / "a" / "again").symlink_to(fo / "loop" / "test")  # a loop, ImageFolder follows it
    (folder("dup") / "test" / "a" / "2.png").symlink_to(fo / "dup" / "test" / "a" / "0.png")
    os.mkfifo(folder("fifo") / "test" / "a" / "pipe.png")
    (folder("device") / "test" / "a" / "zero.png").symlink_to("/dev/zero")
    (folder("outside") / "test" / "a" / "secret.png").symlink_to(lab / "folders" / "ok" / "test" / "a" / "0.png")
    bomb = folder("bomb") / "test" / "b" / "0.png"
    from PIL import Image

    Image.new("1", (9000, 9000)).save(bomb)  # 81 M pixels, a few KiB on disk
    shutil.rmtree(folder("linked-class") / "test" / "b")
    (fo / "linked-class" / "test" / "b").symlink_to(fo / "ok" / "test" / "b")
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F").save(folder("float") / "test" / "a" / "2.tiff")
    sixteen = folder("sixteen") / "test" / "a" / "2.png"
    Image.fromarray(np.full((8, 8), 1000 * 65, dtype=np.uint16)).save(sixteen)

    # -- runs for --resume, one of them locked by this process while the cases run
    rs = lab / "resume"
    for name in ("run", "locked", "events-fifo"):  # each with the lock file its training left
        (rs / name).mkdir(parents=True)
        shutil.copy(ckpt, rs / name / "last.pt")
        (rs / name / ".jembench.lock").write_text("")
    os.mkfifo(rs / "events-fifo" / "events.jsonl")
    # -- a torchvision data root whose files are a FIFO and a device
    dr = lab / "dataroot"
    (dr / "cifar-10-batches-py").mkdir(parents=True)
    os.mkfifo(dr / "cifar-10-batches-py" / "test_batch")
    (dr / "svhn").mkdir()
    (dr / "svhn" / "test_32x32.mat").symlink_to("/dev/zero")
    held = run_lock.hold(rs / "locked")
    held.__enter__()

    # -- model factories (--model), importable from the lab's models/ folder (the cwd of their cases)
    md = lab / "models"
    md.mkdir()
    for name, text in MODULES.items():
        (md / f"{name}.py").write_text(text)

    # -- several checkpoints with one file name, for one --out folder
    for who in ("a", "b"):
        (lab / "names" / who).mkdir(parents=True)
        shutil.copy(ckpt, lab / "names" / who / "last.pt")

    # -- outputs a failed command must not touch
    out = lab / "out"
    out.mkdir()
    (out / "record.json").write_text("precious\n")
    (lab / "a-file").write_text("not a folder\n")

    rob = load_protocol(pr / "rob-fast.toml")
    return {"held": held, "rob_hash": rob.hash, "ckpt_sha": sha256_file(ckpt)}


def prepare_runs(lab: Path, ckpt: Path, out: Path, facts: dict) -> None:
    """State the recompute cases start from: a populated FID feature cache, then truncated; an informative-init
    cache, then corrupted; robustness partial files that are malformed (their key matches the run)."""
    from jembench.cli import main

    cache = out / "cache"
    with _quiet():
        assert main(["eval", str(ckpt), "--suite", "generation", "--protocol", str(lab / "protocols" / "gen-fast.toml"),
                     "--out", str(out / "prep" / "gen.json"), "--no-progress"]) == 0
        assert main(["eval", str(ckpt), "--suite", "generation", "--protocol",
                     str(lab / "protocols" / "gen-informative.toml"), "--out", str(out / "prep" / "inf.json"),
                     "--no-progress"]) == 0
        for name in ("a", "b"):  # two records with per-input evidence, the first one's sidecar then a FIFO
            assert main(["eval", str(ckpt), "--preset", "tiny", "--out", str(out / "evidence" / f"{name}.json"),
                         "--no-progress"]) == 0
    sidecar = out / "evidence" / "a.evidence.npz"
    assert sidecar.is_file(), sorted(p.name for p in (out / "evidence").iterdir())
    sidecar.unlink()
    os.mkfifo(sidecar)
    features = sorted((cache / "fidelity").glob("*features*.pt"))
    assert features, list((cache / "fidelity").iterdir())
    for f in features:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    for f in (cache / "informative-init").glob("*.pt"):
        f.write_bytes(b"PK\x03\x04 not a torch file")
    key = {"protocol_hash": facts["rob_hash"], "checkpoint_sha256": facts["ckpt_sha"], "seed": 0,
           "dataset": "digits", "device": "cpu", "precision": "fp32", "unit": "k0/pgd-linf/b0"}
    unit = out / "rob" / "{case}" / f"r.partial.{facts['rob_hash']}.k0_pgd-linf_b0.json"
    ok = {"correct": [True, True], "forward_passes": 4, "min_eps": [0.1, None], "attack_calls": 3}
    for name, data in {"unit-text": {"key": key, "result": "done"},
                       "unit-short": {"key": key, "result": dict(ok, correct=[True])},
                       "unit-lacks": {"key": key, "result": {k: v for k, v in ok.items() if k != "min_eps"}},
                       "unit-nan": {"key": key, "result": dict(ok, min_eps=[float("nan"), 0.1])},
                       "other-seed": {"key": dict(key, seed=1), "result": ok}}.items():
        path = Path(str(unit).replace("{case}", name))
        _write_json(path, data)
    fifo = Path(str(unit).replace("{case}", "fifo"))
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    garbled = Path(str(unit).replace("{case}", "not-json"))
    garbled.parent.mkdir(parents=True)
    garbled.write_text("{units: ")


# ------------------------------------------------------------------------------------------- the cases
def _cases() -> list[Case]:
    ck, of, st, bf, rc, tl, pr, pb, fo = ("{lab}/" + d for d in ("ckpt", "official", "stats", "buffers", "records",
                                                                 "tolerances", "protocols", "published", "folders"))
    rec = "{lab}/out/record.json"

    def ev(path, *extra):
        return ("eval", path, "--preset", "tiny", "--out", rec, "--no-progress", *extra)

    def ofl(name, *extra):  # an official checkpoint on a 32x32 RGB folder of 10 classes is not needed: it fails first
        return ("eval", f"{of}/{name}", "--dataset", "digits", "--method", "sada_jem", "--out", rec, *extra)

    def stats(mean, cov):
        return ev("{ckpt}", "--suite", "generation", "--init", "informative", "--informative-stats",
                  f"{st}/{mean}", f"{st}/{cov}")

    def board(path, *extra):
        return ("leaderboard", path, "--no-published", "--out", "{lab}/out/board.md", *extra)

    def folder(name, *extra):
        return ev(f"{ck}/rgb8.pt", "--dataset", f"folder:{fo}/{name}", *extra)

    def model(name, *extra):
        return ("eval", "--model", f"{name}:build", "--dataset", "digits", "--preset", "tiny", "--out", rec,
                "--no-progress", *extra)

    cases = [
        # ---- one file hangs or exhausts the job
        Case("hang", "record is a FIFO", board(f"{rc}/pipe.json"), "is a FIFO (named pipe), not a regular file"),
        Case("hang", "record is /dev/zero", board(f"{rc}/zero.json"), "is a character device, not a regular file"),
        Case("hang", "record is 65 MiB", board(f"{rc}/sparse.json"), "larger than any record"),
        Case("hang", "records folder holds a FIFO", board(f"{rc}/fifo-folder"), "FIFO", expect="ok"),
        Case("hang", "records folder holds a link to /dev/zero", board(f"{rc}/device-folder"), "outside",
             expect="ok"),
        Case("hang", "records folder links back to itself and to /", board(f"{rc}/loop-folder"),
             "symlinked folder: not followed", expect="ok"),
        Case("hang", "check record is a FIFO", ("check", f"{rc}/pipe.json"), "is a FIFO"),
        Case("hang", "report of a folder of FIFOs and devices", ("report", f"{rc}/fifo-folder", "-o",
                                                                  "{out}/report.html"), "FIFO", expect="ok"),
        Case("hang", "tolerances is a FIFO", ("check", f"{rc}/good/r.json", "--tolerances", f"{tl}/fifo.toml"),
             "tolerance file"),
        Case("hang", "tolerances is /dev/zero", ("check", f"{rc}/good/r.json", "--tolerances", f"{tl}/zero.toml"),
             "is a character device"),
        Case("hang", "tolerances is 2 MiB", ("check", f"{rc}/good/r.json", "--tolerances", f"{tl}/sparse.toml"),
             "larger than any tolerance file"),
        Case("hang", "protocol is a FIFO", ev("{ckpt}", "--protocol", f"{pr}/fifo.toml"), "is a FIFO (named pipe)"),
        Case("hang", "protocol is /dev/zero", ev("{ckpt}", "--protocol", f"{pr}/zero.toml"),
             "is a character device"),
        Case("hang", "protocol is 2 MiB", ev("{ckpt}", "--protocol", f"{pr}/sparse.toml"), "larger than any"),
        Case("hang", "protocol nested 5000 deep", ev("{ckpt}", "--protocol", f"{pr}/deep.toml"), "not valid TOML"),
        Case("hang", "checkpoint is a FIFO", ev(f"{ck}/fifo.pt"), "is a FIFO (named pipe)"),
        Case("hang", "checkpoint is /dev/zero", ev(f"{ck}/zero-dev.pt"), "is a character device"),
        Case("hang", "checkpoint is a symlink loop", ev(f"{ck}/loop-a.pt"), "symbolic link loop"),
        Case("hang", "checkpoint is a folder", ev(f"{ck}/dir.pt"), "is a folder, not a regular file"),
        Case("hang", "checkpoint is 5 GiB", ev(f"{ck}/five-gib.pt"), "larger than any checkpoint"),
        Case("hang", "--buffer is a FIFO", ev("{ckpt}", "--buffer", f"{bf}/fifo.pt"), "is a FIFO"),
        Case("hang", "--buffer is /dev/urandom", ev("{ckpt}", "--buffer", f"{bf}/urandom.pt"),
             "is a character device"),
        Case("hang", "--buffer is 5 GiB", ev("{ckpt}", "--buffer", f"{bf}/five-gib.pt"), "larger than any"),
        Case("hang", "--weights is a FIFO", model("m_nan_logits", "--weights", f"{bf}/fifo.pt"), "is a FIFO",
             env={"cwd": "{lab}/models"}),
        Case("hang", "--informative-stats cov is a FIFO", stats("mean.pt", "cov-fifo.pt"), "is a FIFO"),
        Case("hang", "official head of 10^9 classes in 4 bytes", ofl("huge-head.pt"), "an expanded or overlapping"),
        Case("hang", "official width 10^4 in 4 bytes", ofl("huge-width.pt"), "an expanded or overlapping"),
        Case("hang", "our weight of 10^6 rows in 4 bytes", ev(f"{ck}/expanded-weight.pt"),
             "an expanded or overlapping"),
        Case("hang", "image folder with a symlink loop", folder("loop"), "symlinked folder: not followed",
             expect="ok"),
        Case("hang", "image folder holds a FIFO", folder("fifo"), "FIFO", expect="ok"),
        Case("hang", "image folder links to /dev/zero", folder("device"), "outside", expect="ok"),
        Case("hang", "decompression bomb image", folder("bomb"), "too many pixels"),
        Case("hang", "published folder with only a FIFO", ("leaderboard", f"{rc}/good", "--published",
                                                           f"{pb}/fifo-only"), "no *.csv files"),
        Case("hang", "published folder with only /dev/zero", ("leaderboard", f"{rc}/good", "--published",
                                                              f"{pb}/device-only"), "no *.csv files"),
        Case("hang", "published csv that links to itself", ("leaderboard", f"{rc}/good", "--published",
                                                            f"{pb}/loop-only"), "no *.csv files"),
        *[Case("hang", f"protocol bound: {name}", ev("{ckpt}", "--suite", suite, "--protocol", f"{pr}/{name}.toml"),
               needle) for name, suite, needle in [
                   ("ood-hist-bins", "ood", "hist_bins = 1000000000000 must be in [1, 10000]"),
                   ("ood-n-out", "ood", "n_out = 10000000000 must be in [0, 1000000]"),
                   ("ood-noise", "ood", "input_noise = 1000000000.0 must be in [0, 10]"),
                   ("cal-bins", "calibration", "n_bins = 1000000000 must be in [1, 10000]"),
                   ("acc-batch", "accuracy", "batch_size = 1000000000 must be in [0, 100000]"),
                   ("acc-n", "accuracy", "n = 10000000000 must be in [0, 1000000]"),
                   ("gen-kid", "generation", "kid_subsets = 1000000000 must be in [1, 100000]"),
                   ("gen-ref", "generation", "reference_n = 1000000000 must be in [0, 1000000]"),
                   ("gen-grid", "generation", "grid_n = 1000000000 must be in [0, 10000]"),
                   ("gen-steps", "generation", "sgld.n_steps = 1000000000 must be in [0, 100000]"),
                   ("rob-eot", "robustness", "refine.eot_defense = 1000000000 must be in [1, 1000]"),
                   ("rob-k", "robustness", "refine.steps[1] = 1000000000 must be in [0, 100000]"),
                   ("rob-linf", "robustness", "pgd.linf_eps[1] = 5 must be <= 1"),
                   ("rob-restarts", "robustness", "pgd.restarts = 1000000 must be in [1, 1000]"),
                   ("rob-n", "robustness", "n = 1000000000 must be in [1, 1000000]"),
                   ("rob-seed", "robustness", "input_seed = -1 must be in [0, "),
                   ("rob-queries", "robustness", "boundary.max_queries = 10000000000 must be in [0, 1000000000]")]],
        Case("hang", "--n-samples 10^12", ev("{ckpt}", "--suite", "generation", "--n-samples", str(10**12)),
             "n_samples = 1000000000000 must be in [2, 1000000]"),
        Case("hang", "--steps 10^9", ev("{ckpt}", "--suite", "generation", "--steps", str(10**9)),
             "sgld.n_steps = 1000000000 must be in [0, 100000]"),
        # ---- two runs lose each other's work
        Case("lose", "resume a run another process writes", ("train", "jem", "--resume", "{lab}/resume/locked",
                                                             "--no-progress"), "being written by another jembench"),
        Case("hang", "resume a run whose events.jsonl is a FIFO", ("train", "jem", "--resume",
                                                                   "{lab}/resume/events-fifo", "--no-progress"),
             "events log"),
        Case("hang", "cifar10 test_batch is a FIFO", ofl("good.pt", "--dataset", "cifar10", "--data-root",
                                                         "{lab}/dataroot", "--no-download"),
             "test_batch is a FIFO (named pipe)"),
        Case("hang", "svhn file is /dev/zero", ofl("good.pt", "--dataset", "svhn", "--data-root", "{lab}/dataroot",
                                                   "--no-download"), "test_32x32.mat is a character device"),
        Case("lose", "the same checkpoint twice into one folder",
             ("eval", "{lab}/names/a/last.pt", "{lab}/names/a/last.pt", "--preset", "tiny", "--out", "{out}/twice"),
             "is given twice"),
        Case("lose", "two last.pt into one folder", ("eval", "{lab}/names/a/last.pt", "{lab}/names/b/last.pt",
                                                    "--preset", "tiny", "--out", "{out}/names", "--no-progress"),
             expect="ok"),
        Case("lose", "two last.pt get two records", api="sorted(p.name for p in (out / 'names').glob('*.json')) == "
                                                        "['a-last-accuracy.json', 'b-last-accuracy.json']",
             expect="true"),
        Case("lose", "truncated FID feature cache is recomputed",
             ("eval", "{ckpt}", "--suite", "generation", "--protocol", f"{pr}/gen-fast.toml", "--out",
              "{out}/gen-again.json", "--no-progress"), "feature cache", expect="ok"),
        Case("lose", "the recomputed feature cache is whole",
             api="all(zipfile.ZipFile(p).testzip() is None for p in (out / 'cache' / 'fidelity').glob('*.pt'))",
             expect="true"),
        Case("lose", "corrupt informative-init cache is refitted",
             ("eval", "{ckpt}", "--suite", "generation", "--protocol", f"{pr}/gen-informative.toml", "--out",
              "{out}/inf-again.json", "--no-progress"), "informative-init cache", expect="ok"),
        *[Case("lose", f"robustness partial file: {name}",
               ("eval", "{ckpt}", "--suite", "robustness", "--protocol", f"{pr}/rob-fast.toml", "--out",
                f"{{out}}/rob/{name}/r.json", "--no-progress"), needle, expect="ok")
          for name, needle in [("unit-text", "is a str, not a result"),
                               ("unit-short", "'correct' is not a list of 2 values"),
                               ("unit-lacks", "lacks 'min_eps'"), ("unit-nan", "'min_eps' is not a list of 2"),
                               ("other-seed", "another protocol, checkpoint, seed, dataset, device or precision"),
                               ("fifo", "robustness k0/pgd-linf/b0"), ("not-json", "is not valid JSON")]],
        Case("hang", "an evidence sidecar is a FIFO", ("compare", "{out}/evidence/a.json", "{out}/evidence/b.json"),
             "its evidence file && is a FIFO (named pipe)"),
        Case("lose", "cache folder cannot be created",
             ("eval", "{ckpt}", "--suite", "generation", "--protocol", f"{pr}/gen-fast.toml", "--out", rec,
              "--no-progress"), "feature cache folder", env={"JEMBENCH_CACHE": "{lab}/a-file"}),
        # ---- a number changes silently
        Case("numbers", "official int weights", ofl("int-weights.pt"), "is torch.int64, not floating point"),
        Case("numbers", "official bool weights", ofl("bool-weights.pt"), "is torch.bool, not floating point"),
        Case("numbers", "official complex weights", ofl("complex-weights.pt"), "is torch.complex64, not floating"),
        Case("numbers", "our int weights", ev(f"{ck}/int-weights.pt"), "is torch.int32, not floating point"),
        Case("numbers", "our bool weights", ev(f"{ck}/bool-weights.pt"), "is torch.bool, not floating point"),
        Case("numbers", "our complex weights", ev(f"{ck}/complex-weights.pt"), "is torch.complex64"),
        Case("numbers", "official NaN weights", ofl("nan-weights.pt", "--dataset", f"folder:{fo}/rgb32"),
             "non-finite weights (NaN or Inf in f.conv1.weight)"),
        Case("numbers", "official NaN batch-norm statistics", ofl("nan-running-var.pt", "--dataset",
                                                                  f"folder:{fo}/rgb32"), "non-finite weights"),
        Case("numbers", "official checkpoint on images of another size", ofl("good.pt", "--dataset",
                                                                            f"folder:{fo}/ok"),
             "takes 3x32x32 images"),
        Case("numbers", "official checkpoint evaluates", ofl("good.pt", "--dataset", f"folder:{fo}/rgb32",
                                                             "--out", "{out}/official.json"), expect="ok"),
        Case("numbers", "stats: NaN means", stats("mean-nan.pt", "cov.pt"), "holds NaN or Inf values"),
        Case("numbers", "stats: Inf covariance", stats("mean.pt", "cov-inf.pt"), "holds NaN or Inf values"),
        Case("numbers", "stats: asymmetric covariance", stats("mean.pt", "cov-asymmetric.pt"), "is not symmetric"),
        Case("numbers", "stats: negative definite covariance", stats("mean.pt", "cov-negative.pt"),
             "not positive semi-definite"),
        Case("numbers", "stats: integer covariance", stats("mean.pt", "cov-int.pt"), "got torch.int64 (10, 64, 64)"),
        Case("numbers", "stats: covariance of the wrong size", stats("mean.pt", "cov-shape.pt"),
             "must hold a float tensor of shape (10, 64, 64)"),
        Case("numbers", "module with finite weights and NaN logits", model("m_nan_logits"),
             "logits are NaN or Inf for", env={"cwd": "{lab}/models"}),
        Case("numbers", "module returning integer logits", model("m_int_logits"), "returns torch.int64 logits",
             env={"cwd": "{lab}/models"}),
        Case("numbers", "16-bit PNGs are scaled, not clipped",
             api="abs(float(load_dataset(f'folder:{lab}/folders/sixteen', 'test')[2][0].mean()) - "
                 "(round(65000 / 65535 * 255) / 127.5 - 1)) < 1e-6", expect="true"),
        Case("numbers", "16-bit PNG folder evaluates", folder("sixteen"), expect="ok"),
        Case("numbers", "a symlink back into its folder counts once",
             api="len(load_dataset(f'folder:{lab}/folders/dup', 'test')) == 4", expect="true"),
        Case("numbers", "a symlinked class folder is not followed", folder("linked-class"), "lacks ['b']"),
        Case("numbers", "a float TIFF is refused", folder("float"), "floating-point image"),
        Case("numbers", "an image linked from outside the split is not read",
             api="len(load_dataset(f'folder:{lab}/folders/outside', 'test')) == 4", expect="true"),
        Case("numbers", "baseline carries its own huge standard error",
             ("check", f"{rc}/auroc-own-se/now", "--baseline", f"{rc}/auroc-own-se/baseline"),
             "REGRESSION && hanley-mcneil z=3", expect="exit1"),
        Case("numbers", "accuracy 1e308", ("check", f"{rc}/acc-1e308", "--baseline", f"{rc}/good"),
             "r.json && 'accuracy'"),
        Case("numbers", "accuracy -5", ("check", f"{rc}/acc-negative", "--baseline", f"{rc}/good"),
             "r.json && 'accuracy'"),
        Case("numbers", "accuracy beyond float range", board(f"{rc}/acc-huge-int"), "r.json && 'accuracy'"),
        Case("numbers", "AUROC 5", board(f"{rc}/auroc-5"), "r.json && 'auroc/uniform/log_px'"),
        Case("numbers", "baseline claims n = 1", ("check", f"{rc}/acc-own-n/now", "--baseline",
                                                  f"{rc}/acc-own-n/baseline"), "REGRESSION && binomial z=3",
             expect="exit1"),
        Case("numbers", "record claims n = 1e12", ("check", f"{rc}/n-huge", "--baseline", f"{rc}/good"),
             "r.json && metric 'n' = 1e+12 is outside"),
        Case("numbers", "OOD set of half an image", board(f"{rc}/set-n-half"),
             "r.json && sets['uniform'] 'n' && not a sample size"),
        # ---- tracebacks instead of one line
        Case("traceback", "--model factory raises", model("m_raises"), "build() fails (RuntimeError: boom)",
             env={"cwd": "{lab}/models"}),
        Case("traceback", "--model factory needs arguments", model("m_needs_args"),
             "cannot be called without arguments", env={"cwd": "{lab}/models"}),
        Case("traceback", "--model import fails", model("m_import_fails"), "No module named",
             env={"cwd": "{lab}/models"}),
        Case("traceback", "--model module raises at import", model("m_import_raises"),
             "fails (ValueError: configuration missing)", env={"cwd": "{lab}/models"}),
        Case("traceback", "--model syntax error", model("m_syntax"), "has a syntax error",
             env={"cwd": "{lab}/models"}),
        Case("traceback", "--model module calls sys.exit", model("m_exits"), "(SystemExit: 3)",
             env={"cwd": "{lab}/models"}),
        Case("traceback", "--model returns no module", model("m_not_module"), "not a torch.nn.Module",
             env={"cwd": "{lab}/models"}),
        Case("traceback", "--model fails on a full batch", model("m_batch_of_two"),
             "although it passed the 2-image probe", env={"cwd": "{lab}/models"}),
        Case("traceback", "0-d weight in our checkpoint", ev(f"{ck}/zero-d-weight.pt"),
             "does not match its architecture"),
        Case("traceback", "0-d convolution in an official checkpoint", ofl("zero-d-conv.pt"), "is 0-dimensional ()"),
        Case("traceback", "1-d head in an official checkpoint", ofl("one-d-head.pt"), "is 1-dimensional (64,)"),
        Case("traceback", "--device meta", ev("{ckpt}", "--device", "meta"), "--device meta is a device without data"),
        Case("traceback", "train --device meta", ("train", "jem", "--device", "meta", "--out", "{lab}/out/run"),
             "--device meta is a device without data"),
        Case("traceback", "record with a NUL byte in a figure name", ("report", f"{rc}/nul-figure", "-o",
                                                                      "{lab}/out/report.html"), "NUL byte"),
        Case("traceback", "undecodable file name of a bad record", board(f"{rc}/undecodable"),
             "is 'high', not a number"),
        Case("traceback", "undecodable file name of a good record", board(f"{rc}/undecodable-good", "--format",
                                                                          "md"), expect="ok"),
        Case("traceback", "undecodable record name in a report", ("report", f"{rc}/undecodable-good", "-o",
                                                                  "{out}/undecodable.html"), expect="ok"),
        Case("traceback", "tolerances path is a folder",
             ("check", f"{rc}/good/r.json", "--tolerances", f"{tl}/dir.toml"), "is a folder, not a regular file"),
        Case("traceback", "tolerances not UTF-8", ("check", f"{rc}/good/r.json", "--tolerances",
                                                   f"{tl}/latin1.toml"), "is not UTF-8 text"),
        Case("traceback", "protocol path is a folder", ev("{ckpt}", "--protocol", f"{pr}/dir.toml"),
             "is a folder, not a regular file"),
        Case("traceback", "record sgld_steps is text", ("check", f"{rc}/steps-text/r.json"),
             "'sgld_steps' is 'five'"),
        Case("traceback", "record sgld_steps is a list", ("check", f"{rc}/steps-list/r.json"),
             "'sgld_steps' is '[5]'"),
        Case("traceback", "record dataset_label is a list", board(f"{rc}/label-list"), "'dataset_label' is list"),
        Case("traceback", "checkpoint training block is text", ev(f"{ck}/training-str.pt"),
             "is malformed: 'training' is str, not a mapping"),
        Case("hang", "checkpoint training block lists 10^5 recoveries", ev(f"{ck}/training-long-list.pt"),
             "training 'recovered_at' is not a list of integers"),
        Case("numbers", "checkpoint training block counts in text", ev(f"{ck}/training-text-count.pt"),
             "training 'recovered_divergences' is '1e9', not an integer >= 0"),
        Case("traceback", "resume with another width", ("train", "jem", "--resume", "{lab}/resume/run", "--width",
                                                        "3"), "--width 1 -> 3"),
        Case("traceback", "resume with another depth", ("train", "jem", "--resume", "{lab}/resume/run", "--depth",
                                                        "16"), "--depth 10 -> 16"),
        Case("traceback", "resume with another norm", ("train", "jem", "--resume", "{lab}/resume/run", "--norm",
                                                       "batch"), "--norm"),
        Case("traceback", "resume with another optimizer", ("train", "jem", "--resume", "{lab}/resume/run",
                                                            "--optimizer", "sgd"), "--optimizer"),
        # ---- the Python API speaks like the CLI (issue 21 item 5)
        *[Case("api", f"evaluate({arg})", api=f"jembench.evaluate(ckpt, preset='tiny', out=out / 'api.json', {arg})",
               needle=needle, expect="raises")
          for arg, needle in [("suite=['accuracy']", "suite=['accuracy'] must be one suite name"),
                              ("batch_size='64'", "batch_size='64' must be an integer"),
                              ("seed='0'", "seed='0' must be an integer"),
                              ("buffer=str(ckpt)", "--buffer file && holds no tensor"),
                              ("device=5", "device=5 must be a torch device name"),
                              ("workers='2'", "workers='2' must be an integer"),
                              ("dataset=7", "dataset=7 must be a string"),
                              ("n_samples='10'", "n_samples='10' must be an integer"),
                              ("suite='speed'", "unknown suite 'speed'"),
                              ("batch_size=0", "batch_size=0 must be >= 1"),
                              ("seed=-1", "seed=-1 must be in [0, 2**63)"),
                              ("device='meta'", "device='meta' is a device without data")]],
        Case("api", "evaluate(preset='huge')", api="jembench.evaluate(ckpt, preset='huge', out=out / 'api.json')",
             needle="preset='huge' must be one of", expect="raises"),
        Case("api", "train(max_iters='3')", api="jembench.train('softmax', out=out / 'api-run', max_iters='3')",
             needle="max_iters='3' must be an integer", expect="raises"),
        Case("api", "train(lr=-1)", api="jembench.train('softmax', out=out / 'api-run', lr=-1.0)", needle="lr",
             expect="raises"),
    ]
    return cases


CASES = _cases()


# ------------------------------------------------------------------------------------------- the worker
class _Deadline(BaseException):
    """Raised by SIGALRM: the case did not finish in time (BaseException, so no ``except Exception`` hides it)."""


def _on_alarm(signum, frame):
    raise _Deadline


@contextlib.contextmanager
def _quiet():
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    try:
        yield sys.stdout, sys.stderr
    finally:
        sys.stdout, sys.stderr = saved


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (type, size, mode, inode, mtime; never following links, never reading a
    file), the run folders' lock files excepted."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            if name == ".jembench.lock":
                continue
            st = os.lstat(path)
            out[os.fsdecode(os.path.relpath(path, folder))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mode,
                                                               st.st_ino, st.st_mtime_ns)
    return out


def run_case(case: Case, lab: Path, ckpt: Path, out: Path) -> dict:
    import zipfile  # noqa: F401 - used by the cases' expressions

    import jembench
    from jembench.cli import main
    from jembench.data import load_dataset  # noqa: F401 - used by the cases' expressions
    from jembench.errors import JembenchError

    fill = {"lab": str(lab), "ckpt": str(ckpt), "out": str(out)}
    argv = [a.format(**fill) for a in case.argv]
    env = {k: v.format(**fill) for k, v in case.env.items()}
    cwd = env.pop("cwd", str(lab / "out"))
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    saved_cwd = os.getcwd()
    os.chdir(cwd)
    sys.path.insert(0, cwd)
    before = snapshot(lab)
    result = {"name": case.name, "code": None, "out": "", "err": "", "traceback": "", "raised": "", "value": None}
    start = time.perf_counter()
    signal.alarm(DEADLINE_S)
    try:
        with _quiet() as (stdout, stderr):
            try:
                if case.api:
                    scope = {"jembench": jembench, "lab": lab, "ckpt": ckpt, "out": out, "load_dataset": load_dataset,
                             "zipfile": zipfile}
                    result["value"] = bool(eval(case.api, scope))  # noqa: S307 - the cases are ours
                else:
                    try:
                        result["code"] = main(argv)
                    except SystemExit as exc:  # argparse's own errors
                        result["code"] = exc.code
            except JembenchError as exc:
                result["raised"] = f"JembenchError: {exc}"
            except _Deadline:
                result["traceback"] = f"HANG: no verdict within {DEADLINE_S} s"
            except BaseException as exc:  # noqa: BLE001 - every escape is a finding
                result["traceback"] = "".join(traceback.format_exception(exc))[-3000:]
            finally:
                signal.alarm(0)
        result["out"], result["err"] = stdout.getvalue()[-4000:], stderr.getvalue()[-4000:]
    finally:
        os.chdir(saved_cwd)
        sys.path.remove(cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result["seconds"] = round(time.perf_counter() - start, 2)
    after = snapshot(lab)
    result["changed"] = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))[:10]
    return result


def main(lab: Path, ckpt: Path, report: Path) -> None:
    sys.dont_write_bytecode = True  # importing the --model modules must not write into the lab
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _on_alarm)
    out = lab.parent / "outputs"
    out.mkdir()
    os.environ["JEMBENCH_CACHE"] = str(out / "cache")  # never the user's ~/.cache
    facts = build_lab(lab, ckpt)
    prepare_runs(lab, ckpt, out, facts)
    results = [run_case(case, lab, ckpt, out) for case in CASES]
    report.write_text(json.dumps({"results": results, "cases": [asdict(c) for c in CASES],
                                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
