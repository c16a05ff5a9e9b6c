"""Suites: throughput (images/s) and peak RSS at N and 4N images, each run in a fresh process; and, in this
process, each streaming suite's run time against a bare forward loop over the same images (:func:`overhead_rows`).

Every run is the real command line — ``jembench eval CKPT --suite S --protocol P.toml`` — with the
suite's tiny protocol (``suites/<suite>-tiny.toml``) and only its image counts (and, for generation and
robustness, a few cost knobs) changed, written to a temporary TOML file. The child's peak resident set size
is its ``VmHWM`` (:mod:`benchmarks.child`; ``ru_maxrss`` would include the parent's), its throughput comes
from the record's own ``wall_time_s`` (the suite's run, without interpreter start-up and checkpoint loading).
The children run with
glibc's mmap threshold fixed (see :data:`MMAP_THRESHOLD`), so that peak RSS tracks live memory.

Memory must stay flat: a suite that streams its inputs holds a batch, not the set. "Flat" here means
RSS(4N) − RSS(N) is under half of what keeping the extra 3N input images as float32 tensors would take
(or under 32 MiB, the run-to-run noise of peak RSS here, for sets so small that half of that is less). N is
at least the evaluation batch size, so both runs hold equally large batches.

Data: 32×32 RGB images (the CIFAR-10 JPEG copy in ``../shared/data/cifar10-jpeg``, else a generated folder of
random PNGs), so N can be large; networks: the tiny presets' WRN-10-1 and a WRN-16-4 (3 input channels),
random weights (throughput and memory do not depend on what the weights learned).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from jembench.resources import protocol_dir

from .common import REPO, SHARED_CIFAR, ModelSpec, Row, interleaved, log, paired_ratio

MIB = 1024 * 1024
# glibc raises its mmap threshold when large blocks are freed, after which freed tensors stay in the heap and
# later ones reuse them: peak RSS then hides (or, with fragmentation, inflates) what a suite keeps alive. A
# fixed threshold (glibc's initial 128 KiB) turns that off, so peak RSS follows live memory. It costs up to
# ~30 % throughput on activation-heavy suites (page faults on every large allocation): the img/s here are a
# little below what a default `jembench eval` reaches.
MMAP_THRESHOLD = 128 * 1024

# per suite: protocol changes for n images, and how many images one run processes
SUITES = ("accuracy", "calibration", "ood", "generation", "robustness")


def protocol_changes(suite: str, n: int, sgld_steps: int = 10) -> dict[str, Any]:
    """The tiny protocol's fields changed for a run on ``n`` images (the rest stays as in the file)."""
    if suite in ("accuracy", "calibration"):
        return {"n": n}
    if suite == "ood":
        return {"n_in": n, "n_out": n, "sets": ["uniform", "constant", "interp"]}
    if suite == "generation":
        return {"sources": ["fresh"], "n_samples": n, "sgld": {"n_steps": sgld_steps}, "reference_split": "test",
                "reference_n": 100, "isc_splits": 2, "kid_subsets": 2, "kid_subset_size": 16, "grid_n": 0}
    if suite == "robustness":
        return {"n": n, "batch_size": 8, "refine": {"steps": [0, 1], "eot_attack": 1, "eot_defense": 2},
                "pgd": {"norms": ["linf"], "steps": 2, "restarts": 1, "search_steps": 0, "linf_eps": [0, "8/255"]},
                "boundary": {"enabled": False}, "pointwise": {"enabled": False},
                "start": {"pool": 20, "candidates": 2}}
    raise ValueError(suite)


def images_processed(suite: str, n: int) -> int:
    """Images one run pushes through the suite (OOD: the in-distribution set plus three OOD sets)."""
    return 4 * n if suite == "ood" else n


def plan(spec: ModelSpec, quick: bool) -> dict[str, tuple[int, int]]:
    """suite -> (N, evaluation batch size): N >= the batch, so both runs use full batches and RSS compares
    data handling, not batch size; N is scaled to the network's cost (the run at 4N follows)."""
    if spec.key == "tiny":
        full = {"accuracy": (1500, 256), "calibration": (1500, 256), "ood": (256, 256), "generation": (64, 64),
                "robustness": (8, 8)}
        return {k: full[k] for k in ("accuracy", "ood")} if quick else full
    return {} if quick else {"accuracy": (64, 16), "calibration": (64, 16), "ood": (16, 16), "generation": (16, 16)}


# ------------------------------------------------------------------------------------------------ TOML
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """A TOML writer for protocol tables (scalars, lists, nested sub-tables such as ``[refine.sgld]``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += ["", f"[{prefix}{k}]", to_toml(v, f"{prefix}{k}.").rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_protocol(suite: str, n: int, path: Path, sgld_steps: int = 10) -> Path:
    with open(protocol_dir() / f"{suite}-tiny.toml", "rb") as fh:
        table = tomllib.load(fh)
    for key, value in protocol_changes(suite, n, sgld_steps).items():
        table[key] = {**table.get(key, {}), **value} if isinstance(value, dict) else value  # one level deep
    path.write_text(to_toml(table))
    return path


# ------------------------------------------------------------------------------------------- fixtures
def make_checkpoint(spec: ModelSpec, path: Path) -> Path:
    import torch

    from jembench.models import save_checkpoint
    from jembench.reference_models.wideresnet import wide_resnet

    kwargs = {"depth": spec.depth, "widen_factor": spec.width, "n_classes": 10, "in_channels": 3, "norm": "batch"}
    torch.manual_seed(0)
    model = wide_resnet(**kwargs).eval()
    save_checkpoint(path, arch="wrn", arch_kwargs=kwargs, model=model, method="jem", dataset="bench32",
                    n_classes=10, image_shape=(3, 32, 32), config={"name": f"bench-{spec.key}"})
    return path


def random_image_folder(root: Path, n_test: int, n_train: int = 200) -> Path:
    """An ImageFolder of random 32×32 PNGs (10 classes) when the CIFAR-10 copy is absent."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            folder = root / split / f"c{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return root


# ------------------------------------------------------------------------------------------------- runs
def run_child(args: list[str], env: dict[str, str], log_path: Path, timeout: float = 900) -> tuple[int, float, float]:
    """Run the ``jembench`` command line ARGS in a fresh process (:mod:`benchmarks.child`); returns (exit code,
    the child's own peak RSS in MiB, wall seconds)."""
    rss_file = log_path.with_suffix(".rss")
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.child", str(rss_file), *args], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    rss = float(rss_file.read_text()) if rss_file.is_file() else float("nan")
    return proc.returncode, rss, time.perf_counter() - start


def suite_label(spec: ModelSpec) -> str:
    return f"{'tiny net (WRN-10-1)' if spec.key == 'tiny' else 'WRN-16-4'} on 3x32x32"


def sgld_steps(spec: ModelSpec) -> int:
    return 10 if spec.key == "tiny" else 5


def measure_suite(spec: ModelSpec, suite: str, n: int, batch: int, ckpt: Path, data: str, tmp: Path,
                  env: dict[str, str], device: str) -> Row:
    label = suite_label(spec)
    results = {}
    for size in (n, 4 * n):
        proto = write_protocol(suite, size, tmp / f"{spec.key}-{suite}-{size}.toml", sgld_steps(spec))
        record = tmp / f"{spec.key}-{suite}-{size}.json"
        code, rss, wall = run_child(["eval", str(ckpt), "--suite", suite, "--protocol", str(proto), "--dataset", data,
                                     "--out", str(record), "--no-download", "--device", device, "--seed", "0",
                                     "--batch-size", str(batch)], env, tmp / f"{spec.key}-{suite}-{size}.log")
        if code != 0:
            tail = (tmp / f"{spec.key}-{suite}-{size}.log").read_text()[-1500:]
            log(f"suite {suite} at n={size} failed (exit {code}):\n{tail}")
            return Row("suite", label, f"{suite}: images/s and peak RSS at N / 4N", None, "img/s", "", False,
                       f"failed (exit {code}) at n={size}: {tail.strip().splitlines()[-1][:120] if tail else ''}",
                       {"suite": suite, "n": n})
        suite_s = json.loads(record.read_text()).get("wall_time_s") or wall
        images = images_processed(suite, size)
        results[size] = {"images": images, "suite_s": suite_s, "process_s": wall, "rss_mib": rss,
                         "images_per_s": images / suite_s}
    small, big = results[n], results[4 * n]
    growth = big["rss_mib"] - small["rss_mib"]
    kept = 3 * images_processed(suite, n) * 3 * 32 * 32 * 4 / MIB  # the extra inputs as float32
    flat = growth <= max(32.0, kept / 2)
    return Row("suite", label, f"{suite}: images/s at N / 4N; peak RSS N -> 4N",
               big["images_per_s"], "img/s", "RSS flat", flat,
               f"N={images_processed(suite, n)}: {small['images_per_s']:.0f} / {big['images_per_s']:.0f} img/s; "
               f"RSS {small['rss_mib']:.0f} -> {big['rss_mib']:.0f} MiB ({growth:+.0f}; inputs {kept:.0f})",
               {"suite": suite, "n": n, "runs": {str(k): v for k, v in results.items()},
                "rss_growth_mib": growth, "extra_inputs_float32_mib": kept})


# ---------------------------------------------------------------------------- suite vs bare forward loop
OVERHEAD_TARGET = 1.15
OVERHEAD_SUITES = ("accuracy", "calibration", "ood")


def _bare_loop(model, names: list[str], n: int, batch: int, device: str) -> None:
    """The physical limit of a streaming suite: open each dataset, decode ``n`` of its images and run one forward
    pass per batch, nothing else (no noise, scores, metrics, records or figures)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from jembench.data import load_dataset

    for name in names:
        ds = load_dataset(name, "test")
        for x, _ in DataLoader(Subset(ds, range(min(n, len(ds)))), batch_size=batch, shuffle=False):
            with torch.inference_mode():
                model(x.to(device))


def overhead_rows(quick: bool, device: str, cifar: Path, tmp: Path) -> list[Row]:
    """On a WRN-10-2 (batch norm, random weights) at 32×32: accuracy, calibration and OOD (log p(x) and
    max p(y|x), no gradient score; the in-distribution split and one real OOD folder) on ``n`` images each, against
    :func:`_bare_loop` over the same datasets and counts; paired and interleaved (A B, B A, ...), median of the
    paired ratios. The suite side is the real ``suite.run`` — loading, σ-free streaming, metrics, the record and
    its PNG figures — with the test-logits cache cleared before each run (so calibration does its own pass)."""
    from jembench.models import load_checkpoint
    from jembench.protocols import Protocol
    from jembench.suites import EvalContext, _test_logits_cache, get_suite

    n, batch, repeats = (500, 100, 3) if quick else (2000, 100, 3)  # the figures (~0.2 s) need n in the 1000s
    net = ModelSpec("wrn10-2", "WRN-10-2 (3x32x32)", 10, 2, f"folder:{cifar}", (3, 32, 32), batch)
    ckpt = load_checkpoint(make_checkpoint(net, tmp / f"{net.key}-overhead.pt"), device=device)
    svhn = SHARED_CIFAR.parent / "svhn-test-10k"
    far = svhn if (svhn / "test").is_dir() else random_image_folder(tmp / "far32", n_test=n, n_train=0)
    data = f"folder:{cifar}"
    tables = {"accuracy": {"n": n}, "calibration": {"n": n},
              "ood": {"n_in": n, "n_out": n, "scores": ["log_px", "max_py"], "hist_bins": 50,
                      "sets": [{"folder": str(far), "name": "far", "label": "OOD folder"}]}}
    sources = {"accuracy": [data], "calibration": [data], "ood": [data, f"folder:{far}"]}
    rows = []
    for suite in OVERHEAD_SUITES:
        proto = Protocol.from_table(suite, tables[suite], name=f"{suite}-bench")
        ctx = EvalContext(dataset=data, download=False, device=device, out_dir=tmp, batch_size=batch,
                          record_path=tmp / f"overhead-{suite}.json")
        module = get_suite(suite)
        images = n * len(sources[suite])
        def suite_run() -> None:  # a fresh pass each time: no logits replayed from the previous repeat
            _test_logits_cache.clear()
            module.run(ckpt, proto, ctx)

        times = interleaved({"suite": suite_run,
                             "bare": lambda: _bare_loop(ckpt.model, sources[suite], n, batch, device)}, repeats)
        ratio = paired_ratio(times["suite"], times["bare"])
        suite_ips = images / min(times["suite"])
        bare_ips = images / min(times["bare"])
        what = {"accuracy": "accuracy", "calibration": "calibration", "ood": "ood (no gradient score)"}[suite]
        rows.append(Row("suite", f"WRN-10-2 on 3x32x32, B={batch}", f"{what}: suite run / bare forward loop",
                        ratio, "x", f"<= {OVERHEAD_TARGET}", ratio <= OVERHEAD_TARGET,
                        f"{images} images: {suite_ips:.0f} vs {bare_ips:.0f} img/s (best of {repeats}, paired)",
                        {"suite": suite, "images": images, "suite_s": times["suite"], "bare_s": times["bare"],
                         "suite_images_per_s": suite_ips, "bare_images_per_s": bare_ips}))
    return rows


def run(specs: list[ModelSpec], quick: bool, device: str, threads: int, cifar: Path | None) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jembench-bench-suites-") as tmp:
        tmp_path = Path(tmp)
        if cifar is None:
            cifar = random_image_folder(tmp_path / "random32", n_test=4000)
        data = f"folder:{cifar}"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg", "JEMBENCH_CACHE": str(tmp_path / "cache"),
               "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        warm = False
        for spec in specs:
            runs = plan(spec, quick)
            if not runs:
                continue
            ckpt = make_checkpoint(spec, tmp_path / f"{spec.key}.pt")
            if "generation" in runs and not warm:  # fill the FID/KID reference cache once: N and 4N find it warm
                proto = write_protocol("generation", 2, tmp_path / "warm.toml", 1)
                run_child(["eval", str(ckpt), "--suite", "generation", "--protocol", str(proto), "--dataset", data,
                           "--out", str(tmp_path / "warm.json"), "--no-download", "--device", device],
                          env, tmp_path / "warm.log")
                warm = True
            for suite, (n, batch) in runs.items():
                log(f"suite: {spec.key} {suite} N={n}")
                rows.append(measure_suite(spec, suite, n, batch, ckpt, data, tmp_path, env, device))
            if spec.key == "tiny":
                log("suite: accuracy / calibration / ood against a bare forward loop (in process)")
                rows += overhead_rows(quick, device, cifar, tmp_path)
    return rows

