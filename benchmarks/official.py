"""Side by side with the official trainers: seconds per iteration of wgrathwohl/JEM ``train_wrn_ebm.py``,
sndnyang/JEMPP ``train_jempp.py`` and sndnyang/SADAJEM ``train_sadajem.py`` against ``jembench train``.

The official scripts are not part of this repository: the user passes the path of a checkout of each
(``--official-jem PATH`` …) and the script there runs unchanged, as a child process in its own process group.
Both sides get the same network (WRN-10-2; JEM without normalisation, JEM++ / SADA-JEM with batch norm), batch,
K, sampler settings, buffer, input noise, augmentation and optimiser, the same CIFAR-10 files (torchvision's
``cifar-10-batches-py`` pickles, converted once from the JPEG copy into a scratch folder outside the repo), the
same torch thread count (2: the JEM++ / SADA-JEM scripts hard-code ``torch.set_num_threads(2)``;
``OMP_NUM_THREADS`` alike) and each side's own DataLoader defaults (official: 4 workers; jembench: 0).

Timing is installed from outside both scripts by the same ``sitecustomize`` (:mod:`benchmarks.official_hooks`):
a global optimizer step post-hook appends ``perf_counter()`` after every optimizer step — once per iteration on
both sides, SAM included — and the sampler (official ``sample_q``, jembench ``train_loop.draw_samples``) is
wrapped to log its calls. Per run: iteration times are the differences of consecutive step timestamps, the
first ``warmup`` are skipped (start-up, first batches, the official warm-up's lr = 0 step) and the next
``iters`` kept; the run is then stopped (SIGINT, then SIGKILL to its process group — never SIGTERM: the JEM++ /
SADA-JEM scripts delete their run folder on SIGTERM). Runs alternate official, jembench / jembench, official
over ``rounds`` rounds, method after method, so drifting load hits both sides alike. The row's value is the
median official s/iter over all timed iterations ÷ the same median for jembench (≥ 1.30 wanted), with each
side's per-run medians as spread and the per-round paired ratios in the JSON.

Arithmetic and data matched (see :func:`commands`): like the official code, the p(x) term sees its own batch from
a second, independently shuffled loader (three network passes per training step, not two), through the same data
pipeline as the official one — JEM / JEM++: the augmented training images (crop + flip + σ noise: JEM
train_wrn_ebm.py:185-193, JEMPP utils.py:128-133; jembench ``--px-separate``, its paper presets' setting), SADA-JEM:
un-augmented images (SADAJEM utils.py:141-154; ``--px-unaugmented``). JEM++ runs the published YOPO sampler
(``--model yopo --n_steps 10 --in_steps 5 --pyld_lr .2``, exactly x ← clip(x + clip(∇, ±1), ±1) per outer step,
= jembench's ``--sgld-grad-clamp 1 --sgld-x-clamp``, plus five conv1-only passes per step). JEM++ / SADA-JEM
use the informative initialisation on both sides; the official scripts read the class means / biased
covariances of the training images from ``./cifar10_{mean,cov}.pt`` (SADA-JEM ``./v<torch minor>/…``), which
are computed here from the same pickles. ``tensorboardX`` (imported by the JEM++ / SADA-JEM scripts, used only
outside the timed window) is a no-op stub module on the official side's ``PYTHONPATH``.

Also (in-process, 2 threads): the per-phase profile of jembench's JEM iteration on this WRN-10-2
(:func:`benchmarks.profiling.profile_steps`), its data-loading time per iteration, and what-if measurements of
changes that keep the arithmetic: one forward over the concatenated batches of a norm-free JEM, channels-last,
weights without ``requires_grad`` during SGLD, the official SGLD step's ``retain_graph`` / ``.data`` update.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import REPO, Row, fmt_ms, log, median

TARGET = 1.30  # official s/iter ÷ jembench s/iter must be at least this
THREADS = 2  # the JEM++ / SADA-JEM scripts hard-code torch.set_num_threads(2)
METHODS = ("jem", "jempp", "sada_jem")
LABELS = {"jem": "JEM", "jempp": "JEM++", "sada_jem": "SADA-JEM"}
SCRIPTS = {"jem": "train_wrn_ebm.py", "jempp": "train_jempp.py", "sada_jem": "train_sadajem.py"}
REPOS = {"jem": "wgrathwohl/JEM", "jempp": "sndnyang/JEMPP", "sada_jem": "sndnyang/SADAJEM"}
SAMPLER_WRAPS = {"jem": "__main__:get_sample_q:factory", "jempp": "__main__:sample_q", "sada_jem": "__main__:sample_q",
                 "jembench": "jembench.reference_models.train_loop:draw_samples"}
HOOKS = Path(__file__).resolve().parent / "official_hooks.py"
MODEL = "WRN-10-2 (3x32x32)"
STOP_GRACE_S = 20.0


# ------------------------------------------------------------------------------------------------- data
def convert_cifar(jpeg_root: Path, dest: Path) -> Path:
    """torchvision's CIFAR-10 layout (``dest/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta``)
    from an ImageFolder copy of 32×32 images (``train/<class>/*``, ``test/<class>/*``; classes in sorted order
    are CIFAR-10's labels 0..9). Images are interleaved by a fixed permutation, as in the original batches.
    Cached: a marker file names the source and counts; returns ``dest`` (the ``root`` torchvision wants)."""
    import numpy as np
    from PIL import Image

    out = dest / "cifar-10-batches-py"
    marker = out / "jembench-source.json"
    source = {"source": str(jpeg_root.resolve()), "format": 1}
    if marker.is_file() and {k: v for k, v in json.loads(marker.read_text()).items() if k in source} == source:
        return dest
    classes = sorted(d.name for d in (jpeg_root / "train").iterdir() if d.is_dir())
    if len(classes) != 10:
        raise ValueError(f"{jpeg_root / 'train'} has {len(classes)} class folders, CIFAR-10 needs 10")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "test"):
        files = [(p, label) for label, c in enumerate(classes)
                 for p in sorted((jpeg_root / split / c).iterdir()) if p.is_file()]
        data = np.empty((len(files), 3072), dtype=np.uint8)
        for i, (path, _) in enumerate(files):
            with Image.open(path) as img:
                arr = np.asarray(img.convert("RGB"))
            if arr.shape != (32, 32, 3):
                raise ValueError(f"{path} is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 needs 32x32")
            data[i] = arr.transpose(2, 0, 1).reshape(-1)  # CIFAR rows: 1024 R, 1024 G, 1024 B
        order = np.random.RandomState(0).permutation(len(files))
        data, labels = data[order], [files[i][1] for i in order]
        names = [files[i][0].name for i in order]
        parts = np.array_split(np.arange(len(files)), 5) if split == "train" else [np.arange(len(files))]
        for k, idx in enumerate(parts):
            name = f"data_batch_{k + 1}" if split == "train" else "test_batch"
            entry = {"batch_label": name, "labels": [labels[i] for i in idx], "data": data[idx],
                     "filenames": [names[i] for i in idx]}
            with open(out / name, "wb") as fh:
                pickle.dump(entry, fh, protocol=2)
        counts[split] = len(files)
    with open(out / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": classes, "num_cases_per_batch": 10000, "num_vis": 3072}, fh, protocol=2)
    marker.write_text(json.dumps({**source, **counts}))
    return dest


def class_statistics(data_root: Path, dest: Path) -> tuple[Path, Path]:
    """``cifar10_mean.pt`` [10, 3072] and ``cifar10_cov.pt`` [10, 3072, 3072]: per-class mean and biased
    covariance (1/N, as the official ``category_mean``) of the un-augmented training images in [-1, 1]."""
    import torch
    import torchvision

    mean_file, cov_file = dest / "cifar10_mean.pt", dest / "cifar10_cov.pt"
    if mean_file.is_file() and cov_file.is_file():
        return mean_file, cov_file
    dest.mkdir(parents=True, exist_ok=True)

    class _Plain(torchvision.datasets.CIFAR10):  # converted pickles: presence check only
        train_list = [(n, None) for n, _ in torchvision.datasets.CIFAR10.train_list]
        test_list = [(n, None) for n, _ in torchvision.datasets.CIFAR10.test_list]
        meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}

    ds = _Plain(str(data_root), train=True, download=False)
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).reshape(len(ds.data), -1).float() / 255 * 2 - 1
    y = torch.tensor(ds.targets)
    means = torch.zeros(10, x.shape[1])
    covs = torch.zeros(10, x.shape[1], x.shape[1])
    for c in range(10):
        xc = x[y == c]
        means[c] = xc.mean(0)
        sub = xc - means[c]
        covs[c] = sub.T @ sub / len(xc)
    for tensor, path in ((means, mean_file), (covs, cov_file)):
        tmp = path.with_suffix(".tmp")
        torch.save(tensor, tmp)
        os.replace(tmp, path)
    return mean_file, cov_file


# ------------------------------------------------------------------------------------------- commands
def _flags(d: dict) -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out.append(k)
        if v is not None:
            out += [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    return out


def commands(method: str, checkout: Path, data_root: Path, out: Path, max_iters: int) -> dict[str, list[str]]:
    """The two command lines (after the interpreter) of one method: same network, batch, K, sampler, buffer,
    noise, augmentation and optimiser. Prints and plots are moved out of the timed window on both sides
    (official ``--print_every`` huge: its print iterations add a whole extra SGLD chain; jembench
    ``--log-every`` huge; neither writes a checkpoint or a sample grid before iteration 100)."""
    script = str(checkout / SCRIPTS[method])
    quiet = 10 ** 7
    common_jb = {"--preset": "paper", "--dataset": "cifar10", "--data-root": data_root, "--no-download": None,
                 "--depth": 10, "--width": 2, "--buffer-size": 10000, "--reinit-freq": 0.05, "--warmup-iters": 1000,
                 "--max-iters": max_iters, "--log-every": quiet, "--sample-every": 0, "--workers": 0,
                 "--out": out / "jembench"}
    if method == "jem":  # README command (WRN-28-10 there), norm None, K=20, alpha 1, sigma .01, Adam 1e-4
        official = {"--dataset": "cifar10", "--data_root": data_root, "--save_dir": out / "official", "--lr": 1e-4,
                    "--optimizer": "adam", "--p_x_weight": 1.0, "--p_y_given_x_weight": 1.0, "--p_x_y_weight": 0.0,
                    "--sigma": 0.03, "--depth": 10, "--width": 2, "--batch_size": 64, "--n_steps": 20,
                    "--sgld_lr": 1.0, "--sgld_std": 0.01, "--buffer_size": 10000, "--reinit_freq": 0.05,
                    "--warmup_iters": 1000, "--print_every": quiet, "--n_epochs": 1}
        jb = {**common_jb, "--batch-size": 64, "--norm": "none", "--optimizer": "adam", "--lr": 1e-4,
              "--sgld-steps": 20, "--sgld-step-size": 1.0, "--sgld-noise": 0.01, "--input-noise": 0.03,
              "--px-separate": None}  # dload_train: augmented, like the labelled loader (train_wrn_ebm.py:185-193)
    elif method == "jempp":  # scripts/jempp_cifar10.sh (WRN-28-10 there): YOPO sampler, M=10, SGD .1, BN
        official = {"--dataset": "cifar10", "--data_root": data_root, "--lr": 0.1, "--optimizer": "sgd",
                    "--p_x_weight": 1.0, "--p_y_given_x_weight": 1.0, "--p_x_y_weight": 0.0, "--sigma": 0.03,
                    "--width": 2, "--depth": 10, "--batch_size": 64, "--warmup_iters": 1000, "--model": "yopo",
                    "--norm": "batch", "--print_every": quiet, "--n_epochs": 150, "--decay_epochs": [50, 100, 125],
                    "--n_steps": 10, "--in_steps": 5, "--pyld_lr": 0.2, "--buffer_size": 10000,
                    "--reinit_freq": 0.05, "--log_dir": out / "official", "--gpu-id": "0"}
        jb = {**common_jb, "--batch-size": 64, "--norm": "batch", "--optimizer": "sgd", "--lr": 0.1,
              "--weight-decay": 4e-4, "--sgld-steps": 10, "--sgld-step-size": 1.0, "--sgld-noise": 0.0,
              "--sgld-grad-clamp": 1.0, "--sgld-x-clamp": None, "--sgld-train-mode": None,
              "--init": "class_gaussian", "--input-noise": 0.03, "--px-separate": None}  # augmented (utils.py:128)
    elif method == "sada_jem":  # scripts/sadajem_cifar10.sh (WRN-28-10 there): K=5, ASAM rho 2, labelled 128
        official = {"--dataset": "cifar10", "--data_root": data_root, "--lr": 0.1, "--optimizer": "sgd",
                    "--px": 1.0, "--pyx": 1.0, "--sigma": 0.0, "--width": 2, "--depth": 10, "--warmup_iters": 1000,
                    "--model": "wrn", "--norm": "batch", "--print_every": quiet, "--n_epochs": 200,
                    "--decay_epochs": [60, 120, 180], "--n_steps": 5, "--sgld_lr": 1, "--sgld_std": 0.0,
                    "--batch_size": 64, "--init": "gm", "--buffer_size": 10000, "--reinit_freq": 0.05,
                    "--no_fid": None, "--log_dir": out / "official", "--gpu-id": "0"}
        jb = {**common_jb, "--batch-size": 128, "--px-batch-size": 64, "--norm": "batch", "--optimizer": "sgd",
              "--lr": 0.1, "--weight-decay": 5e-4, "--sgld-steps": 5, "--sgld-step-size": 1.0, "--sgld-noise": 0.0,
              "--sgld-grad-clamp": 1.0, "--sgld-x-clamp": None, "--sgld-train-mode": None,
              "--init": "class_gaussian", "--input-noise": 0.0, "--px-unaugmented": None, "--sam-rho": 2.0,
              "--sam-adaptive": None}
    else:
        raise ValueError(method)
    return {"official": ["-u", script, *_flags(official)],
            "jembench": ["-u", "-m", "jembench", "train", method, *_flags(jb)]}


# ------------------------------------------------------------------------------------------ reduction
def read_stamps(path: Path) -> list[float]:
    if not path.is_file():
        return []
    return [float(line) for line in path.read_text().split() if line.strip()]


def read_phases(path: Path) -> list[tuple[float, float]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append((float(parts[0]), float(parts[1])))
    return out


def iteration_times(stamps: list[float], warmup: int, iters: int) -> list[float]:
    """Seconds per iteration: differences of consecutive optimizer-step timestamps, the first ``warmup``
    skipped (the first stamp closes iteration 0, which includes start-up, so it never counts), the next
    ``iters`` kept. Needs ``warmup + iters + 1`` stamps."""
    if len(stamps) < warmup + iters + 1:
        raise ValueError(f"{len(stamps)} step timestamps, need {warmup + iters + 1} (warm-up {warmup} + {iters})")
    diffs = [b - a for a, b in zip(stamps, stamps[1:])]
    return diffs[warmup:warmup + iters]


def lockstep_times(stamps: list[float], go: list[float], warmup: int, iters: int) -> list[float]:
    """Gated runs: iteration i runs from its release (``go[i]``, after step i) to step i + 1; the first
    ``warmup`` skipped, the next ``iters`` kept."""
    times = [stamps[i + 1] - go[i] for i in range(min(len(go), len(stamps) - 1))]
    if len(times) < warmup + iters:
        raise ValueError(f"{len(times)} released iterations, need {warmup + iters} (warm-up {warmup} + {iters})")
    return times[warmup:warmup + iters]


def lockstep_phases(go: list[float], stamps: list[float], phases: list[tuple[float, float]], warmup: int,
                    iters: int) -> list[float]:
    """Seconds inside the wrapped function during each timed gated iteration (calls starting in it)."""
    return [sum(end - start for start, end in phases if go[i] <= start < stamps[i + 1])
            for i in range(warmup, warmup + iters)]


def phase_per_iteration(stamps: list[float], phases: list[tuple[float, float]], warmup: int, iters: int
                        ) -> list[float]:
    """Seconds spent inside the wrapped function (the sampler) during each timed iteration: the calls that
    start between the iteration's two step timestamps."""
    out = []
    for j in range(warmup, warmup + iters):
        lo, hi = stamps[j], stamps[j + 1]
        out.append(sum(end - start for start, end in phases if lo <= start < hi))
    return out


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if values else "-"


def quartiles(values: list[float]) -> str:
    """``q1–q3`` (the middle half) of ``values``."""
    import statistics

    if len(values) < 2:
        return spread(values)
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.2f}–{q[2]:.2f}"


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    method: str
    side: str  # official | jembench
    round: int
    iteration_s: list[float] = field(default_factory=list)
    sampler_s: list[float] = field(default_factory=list)
    startup_s: float | None = None  # launch -> first optimizer step
    wall_s: float = 0.0
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        return median(self.iteration_s) if self.iteration_s else None

    def to_dict(self) -> dict:
        return {"method": self.method, "side": self.side, "round": self.round, "iteration_s": self.iteration_s,
                "sampler_s": self.sampler_s, "startup_s": self.startup_s, "wall_s": self.wall_s, "error": self.error}


def write_support(scratch: Path) -> tuple[Path, Path]:
    """``scratch/hooks/sitecustomize.py`` (both sides) and ``scratch/stubs/tensorboardX`` (official side)."""
    hooks, stubs = scratch / "hooks", scratch / "stubs"
    hooks.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOOKS, hooks / "sitecustomize.py")
    (stubs / "tensorboardX").mkdir(parents=True, exist_ok=True)
    (stubs / "tensorboardX" / "__init__.py").write_text(
        '"""No-op stand-in for tensorboardX (benchmarks/official.py): the official scripts import it and log\n'
        'scalars every 100 iterations, outside the timed window."""\n\n\n'
        "class SummaryWriter:\n"
        "    def __init__(self, *args, **kwargs):\n        pass\n\n"
        "    def __getattr__(self, name):\n        return lambda *args, **kwargs: None\n")
    return hooks, stubs


def _tail(path: Path, n: int = 6) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").replace("\r", "\n").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the child's process group (its DataLoader workers too), SIGKILL after a grace period.
    Never SIGTERM: the JEM++ / SADA-JEM scripts delete their run folder on SIGTERM."""
    for sig, wait in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            break
    with contextlib.suppress(ProcessLookupError):  # workers left behind by the group leader
        os.killpg(proc.pid, signal.SIGKILL)


def run_child(argv: list[str], cwd: Path, env: dict, run_dir: Path, needed: int, timeout_s: float,
              wrap: str) -> tuple[list[float], list[tuple[float, float]], float | None, float, str | None]:
    """Start one trainer, wait for ``needed`` optimizer steps, stop it. Returns (stamps, sampler calls,
    start-up seconds, wall seconds, error)."""
    steps, phases, logfile = run_dir / "steps.txt", run_dir / "phases.txt", run_dir / "log.txt"
    for f in (steps, phases):
        f.unlink(missing_ok=True)
    env = {**env, "JEMBENCH_BENCH_STEPS": str(steps), "JEMBENCH_BENCH_PHASES": str(phases),
           "JEMBENCH_BENCH_WRAP": wrap}
    start = time.perf_counter()
    first = None
    error = None
    with open(logfile, "w") as log_fh:
        proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=log_fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                n = len(read_stamps(steps))
                if n and first is None:
                    first = time.perf_counter() - start
                if n >= needed:
                    break
                if proc.poll() is not None:
                    error = f"exited with {proc.returncode} after {n} step(s): {_tail(logfile)}"
                    break
                if time.perf_counter() - start > timeout_s:
                    error = f"timed out after {timeout_s:.0f} s with {n} step(s): {_tail(logfile)}"
                    break
                time.sleep(0.25)
        finally:
            _stop(proc)
    return read_stamps(steps), read_phases(phases), first, time.perf_counter() - start, error


@dataclass
class Setup:
    checkouts: dict[str, Path]
    data_root: Path
    stats: tuple[Path, Path]
    scratch: Path
    hooks: Path
    stubs: Path
    warmup: int
    iters: int
    timeout_s: float
    mode: str = "lockstep"


def _env(setup: Setup, side: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JEMBENCH_BENCH_")}
    path = [setup.hooks, setup.stubs] if side == "official" else [setup.hooks, REPO]
    env.update(PYTHONPATH=os.pathsep.join(str(p) for p in path), OMP_NUM_THREADS=str(THREADS),
               MKL_NUM_THREADS=str(THREADS), PYTHONUNBUFFERED="1", PYTHONWARNINGS="ignore")
    if side == "official":
        env["JEMBENCH_BENCH_NO_MD5"] = "1"
    else:
        env.pop("JEMBENCH_BENCH_NO_MD5", None)
    return env


def _official_cwd(setup: Setup, method: str, run_dir: Path) -> Path:
    """The working directory of an official run: ``utils.py`` (copied into the run folder by the JEM++ /
    SADA-JEM start-up, relative to the cwd) and the informative-init statistics where each script reads them."""
    import torch

    cwd = run_dir / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    checkout = setup.checkouts[method]
    if (checkout / "utils.py").is_file():
        (cwd / "utils.py").symlink_to(checkout / "utils.py")
    mean, cov = setup.stats
    if method == "jempp":
        (cwd / "cifar10_mean.pt").symlink_to(mean)
        (cwd / "cifar10_cov.pt").symlink_to(cov)
    elif method == "sada_jem":
        v = cwd / f"v{torch.__version__.split('.')[1]}"
        v.mkdir()
        (v / "cifar10_mean.pt").symlink_to(mean)
        (v / "cifar10_cov.pt").symlink_to(cov)
    return cwd


def measure_run(setup: Setup, method: str, side: str, rnd: int) -> Run:
    run_dir = setup.scratch / "runs" / f"{method}-{side}-{rnd}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    needed = setup.warmup + setup.iters + 1
    argv = commands(method, setup.checkouts[method], setup.data_root, run_dir, max_iters=needed + 5)[side]
    if side == "official":
        cwd = _official_cwd(setup, method, run_dir)
    else:
        cwd = run_dir
        cache = setup.scratch / "jembench-informative-init.pt"  # fitted once (start-up, not timed), reused
        if method in ("jempp", "sada_jem") and cache.is_file():
            (run_dir / "jembench").mkdir()
            shutil.copyfile(cache, run_dir / "jembench" / "informative_init.pt")
    log(f"official: {LABELS[method]} {side} run {rnd + 1} ({needed} steps)")
    stamps, phases, first, wall, error = run_child(argv, cwd, _env(setup, side), run_dir, needed, setup.timeout_s,
                                                   SAMPLER_WRAPS["jembench" if side == "jembench" else method])
    if side == "jembench":
        made = run_dir / "jembench" / "informative_init.pt"
        cache = setup.scratch / "jembench-informative-init.pt"
        if made.is_file() and not cache.is_file():
            shutil.copyfile(made, cache)
    run = Run(method, side, rnd, startup_s=first, wall_s=wall, error=error)
    if error is None:
        run.iteration_s = iteration_times(stamps, setup.warmup, setup.iters)
        run.sampler_s = phase_per_iteration(stamps, phases, setup.warmup, setup.iters)
        log(f"official: {LABELS[method]} {side}: {median(run.iteration_s):.2f} s/it "
            f"(sampler {median(run.sampler_s):.2f} s), start-up {first:.0f} s")
    else:
        log(f"official: {LABELS[method]} {side} failed: {error}")
    for sub in ("official", "jembench", "cwd"):  # keep steps/phases/log, drop checkpoints and copies
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    return run


def lockstep_pair(setup: Setup, method: str, rnd: int) -> list[Run]:
    """Both trainers of ``method`` started at once; each stops at a gate after every optimizer step, and the
    two are released one iteration at a time, alternately (official, jembench / jembench, official, ...), so
    iteration k of one runs right before or after iteration k of the other and load drift hits both alike.
    The waiting trainer sleeps in its gate (its DataLoader workers may finish prefetching)."""
    needed = setup.warmup + setup.iters + 1
    sides = ("official", "jembench")
    info: dict[str, dict] = {}
    for side in sides:
        run_dir = setup.scratch / "runs" / f"{method}-{side}-{rnd}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        argv = commands(method, setup.checkouts[method], setup.data_root, run_dir, max_iters=needed + 5)[side]
        cwd = _official_cwd(setup, method, run_dir) if side == "official" else run_dir
        cache = setup.scratch / "jembench-informative-init.pt"
        if side == "jembench" and method in ("jempp", "sada_jem") and cache.is_file():
            (run_dir / "jembench").mkdir()
            shutil.copyfile(cache, run_dir / "jembench" / "informative_init.pt")
        gate = run_dir / "gate"
        os.mkfifo(gate)
        env = {**_env(setup, side), "JEMBENCH_BENCH_STEPS": str(run_dir / "steps.txt"),
               "JEMBENCH_BENCH_PHASES": str(run_dir / "phases.txt"), "JEMBENCH_BENCH_GO": str(run_dir / "go.txt"),
               "JEMBENCH_BENCH_GATE": str(gate),
               "JEMBENCH_BENCH_WRAP": SAMPLER_WRAPS["jembench" if side == "jembench" else method]}
        info[side] = {"dir": run_dir, "argv": argv, "cwd": cwd, "env": env,
                      "fd": os.open(gate, os.O_RDWR), "log": open(run_dir / "log.txt", "w")}
    log(f"official: {LABELS[method]} lockstep round {rnd + 1}: both trainers started, {needed - 1} iterations each "
        f"released alternately")
    start = time.perf_counter()
    errors: dict[str, str] = {}
    first: dict[str, float] = {}
    procs = {side: subprocess.Popen([sys.executable, *i["argv"]], cwd=i["cwd"], env=i["env"], stdout=i["log"],
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
             for side, i in info.items()}

    def count(side: str) -> int:
        return len(read_stamps(info[side]["dir"] / "steps.txt"))

    def wait_for(side: str, n: int, limit: float) -> bool:
        t0 = time.perf_counter()
        while count(side) < n:
            if procs[side].poll() is not None:
                errors[side] = f"exited with {procs[side].returncode} after {count(side)} step(s): " \
                               f"{_tail(info[side]['dir'] / 'log.txt')}"
                return False
            if time.perf_counter() - t0 > limit:
                errors[side] = f"timed out after {limit:.0f} s at {count(side)} step(s)"
                return False
            time.sleep(0.1)
        return True

    try:
        for side in sides:  # start-up (concurrent, not timed): until each is parked after its first step
            if wait_for(side, 1, setup.timeout_s):
                first[side] = time.perf_counter() - start
        for k in range(needed - 1) if not errors else ():
            for side in sides if k % 2 == 0 else sides[::-1]:
                os.write(info[side]["fd"], b"x")
                if not wait_for(side, k + 2, setup.timeout_s):
                    break
            if errors:
                break
    finally:
        for side in sides:
            os.close(info[side]["fd"])  # the gate closes: a trainer still running is no longer held
            _stop(procs[side])
            info[side]["log"].close()
    wall = time.perf_counter() - start
    runs = []
    for side in sides:
        d = info[side]["dir"]
        run = Run(method, side, rnd, startup_s=first.get(side), wall_s=wall, error=errors.get(side))
        if run.error is None:
            stamps, go, phases = read_stamps(d / "steps.txt"), read_stamps(d / "go.txt"), read_phases(d / "phases.txt")
            run.iteration_s = lockstep_times(stamps, go, setup.warmup, setup.iters)
            run.sampler_s = lockstep_phases(go, stamps, phases, setup.warmup, setup.iters)
            log(f"official: {LABELS[method]} {side}: {median(run.iteration_s):.2f} s/it "
                f"(sampler {median(run.sampler_s):.2f} s), start-up {run.startup_s:.0f} s")
        else:
            log(f"official: {LABELS[method]} {side} failed: {run.error}")
        if side == "jembench":
            made, cache = d / "jembench" / "informative_init.pt", setup.scratch / "jembench-informative-init.pt"
            if made.is_file() and not cache.is_file():
                shutil.copyfile(made, cache)
        for sub in ("official", "jembench", "cwd"):
            shutil.rmtree(d / sub, ignore_errors=True)
        (d / "gate").unlink(missing_ok=True)
        runs.append(run)
    return runs


def method_row(method: str, runs: list[Run], setup: Setup) -> list[Row]:
    label = LABELS[method]
    off = [r for r in runs if r.side == "official" and r.error is None]
    jb = [r for r in runs if r.side == "jembench" and r.error is None]
    data = {"method": method, "official_repo": REPOS[method], "checkout": str(setup.checkouts[method]),
            "warmup": setup.warmup, "iters": setup.iters, "threads": THREADS,
            "workers": {"official": 4, "jembench": 0}, "runs": [r.to_dict() for r in runs],
            "commands": {side: " ".join(argv) for side, argv in
                         commands(method, setup.checkouts[method], setup.data_root, Path("RUN"), 0).items()}}
    what = f"official {label} s/iter / jembench s/iter"
    if not off or not jb:
        errors = "; ".join(f"{r.side}: {r.error}" for r in runs if r.error)[:400]
        return [Row("official", MODEL, what, None, "x", f">= {TARGET:.2f}", None, f"did not run: {errors}", data)]
    pooled_off = [t for r in off for t in r.iteration_s]
    pooled_jb = [t for r in jb for t in r.iteration_s]
    m_off, m_jb = median(pooled_off), median(pooled_jb)
    ratio = m_off / m_jb
    paired = [o.median_s / j.median_s for o in off for j in jb if o.round == j.round]
    pairs = [a / b for o in off for j in jb if o.round == j.round for a, b in zip(o.iteration_s, j.iteration_s)]
    s_off = median([t for r in off for t in r.sampler_s])
    s_jb = median([t for r in jb for t in r.sampler_s])
    data.update(official_s=m_off, jembench_s=m_jb, paired_ratios=paired, iteration_pair_ratios=pairs,
                official_sampler_s=s_off, jembench_sampler_s=s_jb, mode=setup.mode)
    n_rounds = len({r.round for r in runs})
    rows = [Row("official", MODEL, what, ratio, "x", f">= {TARGET:.2f}", ratio >= TARGET,
                f"{m_off:.2f} s [{quartiles(pooled_off)}] vs {m_jb:.2f} s [{quartiles(pooled_jb)}]; "
                + (f"iteration pairs: median {median(pairs):.2f} [{quartiles(pairs)}]; " if setup.mode == "lockstep"
                   else f"per-round ratios {spread(paired)}; ")
                + f"{setup.mode}, {n_rounds} "
                f"round(s) x {setup.iters} its after {setup.warmup} warm-up; workers 4 vs 0; {THREADS} threads",
                data)]
    rows.append(Row("official", MODEL, f"{label}: sampler / rest of the iteration, official vs jembench",
                    s_off / s_jb if s_jb else None, "x", "", None,
                    f"sampler {s_off:.2f} vs {s_jb:.2f} s, rest {m_off - s_off:.2f} vs {m_jb - s_jb:.2f} s "
                    f"(value: sampler ratio); start-up {median([r.startup_s for r in off]):.0f} vs "
                    f"{median([r.startup_s for r in jb]):.0f} s",
                    {"method": method, "official_sampler_s": s_off, "jembench_sampler_s": s_jb,
                     "official_rest_s": m_off - s_off, "jembench_rest_s": m_jb - s_jb}))
    return rows


# -------------------------------------------------------------------------------- in-process analysis
def _jem_state(data_root: Path, tmp: Path, batch: int = 64):
    """jembench's JEM iteration on the benchmark's WRN-10-2, as the side-by-side run configures it."""
    import torch

    from jembench.commands.train import resolve_config
    from jembench.data import load_dataset

    from .common import ModelSpec
    from .trainstate import build_state

    cfg = resolve_config("jem", "paper", {"dataset": "cifar10", "data_root": str(data_root), "download": False,
                                          "depth": 10, "width": 2, "batch_size": batch, "px_unaugmented": True,
                                          "seed": 0})
    spec = ModelSpec("wrn10-2", MODEL, 10, 2, "cifar10", (3, 32, 32), batch)
    torch.manual_seed(0)
    state = build_state(cfg, spec, tmp / "jem-state")
    ds = load_dataset("cifar10", "train", data_root, download=False)
    items = [ds[i] for i in range(2 * batch)]
    x = torch.stack([a for a, _ in items[:batch]])
    y = torch.tensor([int(b) for _, b in items[:batch]])
    x_px = torch.stack([a for a, _ in items[batch:]])
    return cfg, state, x, y, x_px


def profile_rows(data_root: Path, iters: int) -> tuple[list[Row], dict[str, str]]:
    """torch.profiler phases of jembench's JEM iteration (``train_step``) on WRN-10-2, B=64, K=20, and the data
    loading time per iteration of the loop's two streams (workers 0)."""
    from jembench.reference_models import get_method
    from jembench.reference_models.train_loop import DataStream
    from jembench.data import load_dataset

    from .profiling import PHASES, profile_steps

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jembench-bench-official-") as tmp:
        cfg, state, x, y, x_px = _jem_state(data_root, Path(tmp))
        ms, table = profile_steps(state, get_method("jem").objective, x, y, x_px, iters)
    shares = " + ".join(f"{p} {ms[p] / 1e3:.2f} s" for p in (*PHASES, "other") if ms.get(p))
    rows.append(Row("official", MODEL, "jembench JEM iteration phases (torch.profiler CPU time), K=20, B=64",
                    ms["iteration"], "ms", "", None, f"{shares}; wall {ms['wall_per_iteration'] / 1e3:.2f} s/it; "
                                                     f"n={iters}", {"phases_ms": ms}))
    # data: the loop's labelled stream (crop + flip + noise) and the un-augmented p(x) stream, workers 0
    train = load_dataset("cifar10", "train", data_root, False, augment=True, flip=True, noise_std=0.03)
    px = load_dataset("cifar10", "train", data_root, False, noise_std=0.03)
    times = []
    a, b = DataStream(train, 64, 0).batches(0), DataStream(px, 64, 1).batches(0)
    next(a), next(b)
    for _ in range(10):
        t0 = time.perf_counter()
        next(a), next(b)
        times.append(time.perf_counter() - t0)
    data_s = median(times)
    rows.append(Row("official", MODEL, "jembench data per JEM iteration (2 batches of 64, PIL, workers 0)",
                    data_s * 1e3, "ms", "", None,
                    f"{100 * data_s / (ms['wall_per_iteration'] / 1e3):.2f} % of the iteration; n=10",
                    {"data_s": times}))
    return rows, {"wrn10-2/jem/iteration": table}


def whatif_rows(data_root: Path, repeats: int) -> list[Row]:
    """Changes that keep the arithmetic, each measured as a paired, interleaved ratio (< 1: faster)."""
    import torch
    import torch.nn.functional as F

    from jembench.energy import energy
    from jembench.sampling import SGLDConfig, sgld
    from jembench.reference_models.wideresnet import wide_resnet

    from .common import interleaved, paired_ratio

    def net(norm=None, cl=False):
        torch.manual_seed(0)
        m = wide_resnet(10, 2, 10, 3, norm)
        return m.to(memory_format=torch.channels_last) if cl else m

    g = torch.Generator().manual_seed(1)
    xs = [torch.rand((64, 3, 32, 32), generator=g) * 2 - 1 for _ in range(3)]
    y = torch.randint(0, 10, (64,), generator=g)
    rows: list[Row] = []

    def add(what, t, a, b, note, data=None):
        r = paired_ratio(t[a], t[b])
        rows.append(Row("whatif", MODEL, what, r, "x", "", None,
                        f"{fmt_ms(median(t[a]))} vs {fmt_ms(median(t[b]))}; {note}; n={len(t[a])}",
                        {"a_s": t[a], "b_s": t[b], **(data or {})}))

    # 1. the norm-free JEM training pass: one forward/backward over cat(x_hat, x_px, x) vs three of 64
    model = net()

    def loss_terms(logits_q, logits_px, logits):
        return F.cross_entropy(logits, y) + energy(logits_px).mean() - energy(logits_q).mean()

    def three():
        model.zero_grad(set_to_none=True)
        loss_terms(model(xs[0]), model(xs[1]), model(xs[2])).backward()

    def one():
        model.zero_grad(set_to_none=True)
        lq, lp, lx = model(torch.cat(xs)).split(64)
        loss_terms(lq, lp, lx).backward()

    t = interleaved({"one": one, "three": three}, repeats, warmup=1)
    add("JEM training pass: 1 forward/backward of 192 / 3 of 64 (no batch norm: same gradients)", t, "one", "three",
        "per iteration; x_hat, x_px, x concatenated")
    # 2. channels-last: SGLD (3 steps, eval, sigma .01) and the training pass
    cl = net(cl=True)
    cfg3 = SGLDConfig(n_steps=3, step_size=1.0, noise=0.01)
    model.eval(), cl.eval()
    x_cl = xs[0].contiguous(memory_format=torch.channels_last)
    t = interleaved({"cl": lambda: sgld(cl, x_cl, cfg3), "nchw": lambda: sgld(model, xs[0], cfg3)}, repeats, 1)
    add("SGLD channels-last / NCHW (JEM sampler)", t, "cl", "nchw", "3 steps")
    model.train(), cl.train()

    def three_cl():
        cl.zero_grad(set_to_none=True)
        loss_terms(*(cl(v.contiguous(memory_format=torch.channels_last)) for v in xs)).backward()

    t = interleaved({"cl": three_cl, "nchw": three}, repeats, warmup=1)
    add("JEM training pass channels-last / NCHW", t, "cl", "nchw", "3 forward/backward of 64")

    def one_cl():
        cl.zero_grad(set_to_none=True)
        lq, lp, lx = cl(torch.cat(xs).contiguous(memory_format=torch.channels_last)).split(64)
        loss_terms(lq, lp, lx).backward()

    t = interleaved({"both": one_cl, "now": three}, repeats, warmup=1)
    add("JEM training pass: 1 of 192 channels-last / 3 of 64 NCHW", t, "both", "now", "both changes")
    bn, bn_cl = net("batch"), net("batch", cl=True)
    cfg_pp = SGLDConfig(n_steps=3, step_size=1.0, noise=0.0, grad_clamp=1.0, x_clamp=True)
    from jembench.reference_models.sam import frozen_bn_stats

    with frozen_bn_stats(bn), frozen_bn_stats(bn_cl):
        t = interleaved({"cl": lambda: sgld(bn_cl, x_cl, cfg_pp), "nchw": lambda: sgld(bn, xs[0], cfg_pp)}, repeats, 1)
    add("SGLD channels-last / NCHW (JEM++ / SADA-JEM sampler: train-mode BN, clamps)", t, "cl", "nchw", "3 steps")
    # 3. SGLD with the weights' requires_grad off (autograd then keeps nothing for weight gradients)
    model.eval()

    def frozen():
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            sgld(model, xs[0], cfg3)
        finally:
            for p in model.parameters():
                p.requires_grad_(True)

    t = interleaved({"frozen": frozen, "plain": lambda: sgld(model, xs[0], cfg3)}, repeats, warmup=1)
    add("SGLD with weights requires_grad=False / as now", t, "frozen", "plain", "3 steps")

    # 4. the official JEM SGLD step (retain_graph=True, x.data += ...) against jembench's
    def official_style():
        x_k = xs[0].clone().requires_grad_(True)
        for _ in range(3):
            f_prime = torch.autograd.grad(model(x_k).logsumexp(1).sum(), [x_k], retain_graph=True)[0]
            x_k.data += 1.0 * f_prime + 0.01 * torch.randn_like(x_k)
        return x_k.detach()

    t = interleaved({"official": official_style, "jembench": lambda: sgld(model, xs[0], cfg3)}, repeats, warmup=1)
    add("official SGLD code (retain_graph, .data +=) / jembench sgld", t, "official", "jembench", "3 steps, eval")
    model.train()
    # 5. data: uint8 tensor batch augmentation (crop + flip + noise on the batch) vs the PIL pipeline
    from jembench.data import load_dataset

    ds = load_dataset("cifar10", "train", data_root, False, augment=True, flip=True, noise_std=0.03)
    raw = torch.from_numpy(ds.base.data[:5000]).permute(0, 3, 1, 2).contiguous()  # uint8 N,3,32,32
    gen = torch.Generator().manual_seed(0)

    def pil_batch():
        return torch.stack([ds[i][0] for i in torch.randint(0, 5000, (64,), generator=gen).tolist()])

    def tensor_batch():
        idx = torch.randint(0, 5000, (64,), generator=gen)
        b = F.pad(raw[idx].float(), (4, 4, 4, 4), mode="reflect")
        i, j = torch.randint(0, 9, (2,), generator=gen).tolist()  # one offset per batch here; per image costs ~0
        b = b[:, :, i:i + 32, j:j + 32]
        flip = torch.rand(64, generator=gen) < 0.5
        b = torch.where(flip.view(-1, 1, 1, 1), b.flip(3), b)
        return b / 127.5 - 1 + 0.03 * torch.randn(b.shape, generator=gen)

    t = interleaved({"tensor": tensor_batch, "pil": pil_batch}, max(repeats, 10), warmup=1)
    add("labelled batch of 64: tensor augmentation / PIL transforms", t, "tensor", "pil", "crop + flip + noise")
    return rows


def whatif_iteration_row(data_root: Path, repeats: int) -> Row:
    """A whole JEM iteration (norm-free WRN-10-2, B=64, K=20) with the arithmetic-preserving changes —
    channels-last network, chains and batches; one forward/backward over cat(x_hat, x_px, x) — against
    ``train_loop.train_step`` as it is. Same buffer draw, SGLD, write-back, loss and Adam step; written here,
    outside the loop, only to measure what those changes would buy."""
    import copy

    import torch
    import torch.nn.functional as F

    from jembench.energy import energy
    from jembench.sampling import sgld
    from jembench.reference_models import get_method
    from jembench.reference_models import train_loop as tl

    from .common import interleaved, paired_ratio

    cl = torch.channels_last
    with tempfile.TemporaryDirectory(prefix="jembench-bench-official-") as tmp:
        cfg, state, x, y, x_px = _jem_state(data_root, Path(tmp))
    model = copy.deepcopy(state.model).to(memory_format=cl)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    buffer = copy.deepcopy(state.buffer)
    scfg = cfg.sgld
    n = len(x)
    batch = torch.cat([x_px, x])  # the data part of the concatenated batch (x_hat goes in front)
    objective = get_method("jem").objective

    def changed() -> None:
        x0, idx = buffer.sample(n)
        model.eval()
        x_hat = sgld(model, x0.contiguous(memory_format=cl), scfg)
        model.train()
        buffer.update(idx, x_hat)
        optimizer.zero_grad(set_to_none=True)
        l_hat, l_px, l_x = model(torch.cat([x_hat, batch]).contiguous(memory_format=cl)).split(n)
        loss = F.cross_entropy(l_x, y) + cfg.px_weight * (energy(l_px).mean() - energy(l_hat).mean())
        loss.backward()
        optimizer.step()

    t = interleaved({"changed": changed, "now": lambda: tl.train_step(state, objective, x, y, x_px)}, repeats,
                    warmup=1)
    r = paired_ratio(t["changed"], t["now"])
    return Row("whatif", MODEL, "JEM iteration, channels-last + one forward of 192 / train_step as now", r, "x", "",
               None, f"{fmt_ms(median(t['changed']))} vs {fmt_ms(median(t['now']))}; K=20, B=64; n={repeats}",
               {"a_s": t["changed"], "b_s": t["now"]})


# ------------------------------------------------------------------------------------------------ run
def run(checkouts: dict[str, Path | None], cifar: Path | None, scratch: Path | None, warmup: int, iters: int,
        rounds: int, quick: bool = False, analysis: bool = True, mode: str = "lockstep"
        ) -> tuple[list[Row], dict[str, str]]:

    chosen = {m: Path(p).resolve() for m, p in checkouts.items() if p}
    for method, path in chosen.items():
        if not (path / SCRIPTS[method]).is_file():
            raise FileNotFoundError(f"--official-{method.replace('_', '')}: {path / SCRIPTS[method]} does not exist")
    if cifar is None:
        raise FileNotFoundError("the official family needs the CIFAR-10 JPEG copy (--cifar or "
                                "../shared/data/cifar10-jpeg)")
    if warmup + iters + 1 >= 100:
        raise ValueError("warm-up + iterations must stay below 100: the official scripts plot every 100 iterations")
    scratch = Path(scratch or Path(tempfile.gettempdir()) / "jembench-bench-official")
    scratch.mkdir(parents=True, exist_ok=True)
    log(f"official: CIFAR-10 pickles in {scratch / 'data'} (converted once from {cifar})")
    data_root = convert_cifar(cifar, scratch / "data")
    stats = class_statistics(data_root, scratch / "stats") if {"jempp", "sada_jem"} & set(chosen) else (None, None)
    hooks, stubs = write_support(scratch)
    setup = Setup(chosen, data_root, stats, scratch, hooks, stubs, warmup, iters, timeout_s=3600, mode=mode)
    runs: dict[str, list[Run]] = {m: [] for m in chosen}
    for rnd in range(rounds):
        for method in chosen:
            if mode == "lockstep":
                runs[method] += lockstep_pair(setup, method, rnd)
                continue
            sides = ("official", "jembench") if rnd % 2 == 0 else ("jembench", "official")
            for side in sides:
                runs[method].append(measure_run(setup, method, side, rnd))
    rows = [row for method in chosen for row in method_row(method, runs[method], setup)]
    tables: dict[str, str] = {}
    if analysis:  # after the side-by-side runs, so that a failure here cannot cost them
        rows += analysis_rows(data_root, quick, tables)
    return rows, tables


def analysis_rows(data_root: Path, quick: bool, tables: dict[str, str]) -> list[Row]:
    """The in-process profile and what-if rows at the side-by-side runs' thread count (errors become a row)."""
    import torch

    log("official: jembench JEM iteration profile and what-ifs on WRN-10-2 (in-process, 2 threads)")
    saved = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    rows: list[Row] = []
    try:
        new, profiles = profile_rows(data_root, iters=1 if quick else 2)
        rows += new
        tables.update(profiles)
        rows += whatif_rows(data_root, repeats=3 if quick else 5)
        rows.append(whatif_iteration_row(data_root, repeats=2 if quick else 3))
    except Exception as exc:  # noqa: BLE001 - reported in the table, the timed rows stand
        log(f"official: analysis failed: {type(exc).__name__}: {exc}")
        rows.append(Row("whatif", MODEL, "in-process analysis", None, "x", "", None,
                        f"failed: {type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        torch.set_num_threads(saved)
    return rows
