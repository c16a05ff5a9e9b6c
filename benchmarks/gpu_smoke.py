"""``make gpu-smoke`` (``python -m benchmarks.gpu_smoke``): jembench end to end on a GPU in under ten minutes.

Steps (each timed; the first failure stops the run, exit 1, naming the step):

1. ``trainers``    every method (jem, jempp, sada_jem, softmax, softmax_sam) on the tiny preset, 4 iterations, then
                   resumed to 8; the resumed JEM is compared with an uninterrupted 8-iteration run (bit for bit on
                   the CPU; on a GPU the largest weight difference is printed: cuDNN may pick other algorithms);
2. ``paper-iter``  one JEM iteration at paper scale — WRN-28-10, K = 20, batch 64, buffer 10,000 — with its time
                   and peak GPU memory (the CPU dry run keeps the network but uses batch 2 and K = 2, labelled);
3. ``suites``      every suite under its tiny protocol on the device and on the CPU, the records compared within
                   the tolerances of :mod:`benchmarks.device_compare` (the dry run runs each suite once and
                   compares the record with itself: the comparison runs, it cannot fail);
4. ``compile``     accuracy and OOD with ``--compile`` against the eager records (same tolerances);
5. ``ddp``         with two or more GPUs: ``torchrun --nproc_per_node=2`` (nccl) training, its resume, and a
                   robustness run sharded over both ranks; the CPU dry run does the same with gloo;
6. ``bench``       ``python -m benchmarks --device DEVICE --quick`` (skip with ``--no-bench``).

Without a GPU it stops at once (one line, exit 2) unless ``--device cpu`` (``make gpu-smoke DEVICE=cpu``): the
dry run, the same steps on the CPU at reduced size. Scratch files go to ``--scratch`` (default a temporary folder,
deleted afterwards). Data: the embedded digits set and a generated folder of random 32×32 PNGs — nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
METHODS = ("jem", "jempp", "sada_jem", "softmax", "softmax_sam")
SUITES = ("accuracy", "calibration", "ood", "generation", "robustness")
COMPILED = ("accuracy", "ood")


class StepFailed(Exception):
    pass


def log(message: str) -> None:
    print(f"[gpu-smoke {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_smoke", description=__doc__.split("\n")[0])
    p.add_argument("--device", default=os.environ.get("DEVICE", "cuda"),
                   help="cuda (default; $DEVICE), cuda:N, or cpu for the dry run")
    p.add_argument("--scratch", default=None, help="folder for runs and records (default: a temporary folder)")
    p.add_argument("--no-bench", dest="bench", action="store_false", help="skip step 6 (python -m benchmarks)")
    p.add_argument("--no-ddp", dest="ddp", action="store_false", help="skip step 5 (torchrun)")
    return p.parse_args(argv)


def require_gpu(device: str) -> str | None:
    """Why this machine cannot run the GPU smoke test (one line), or None."""
    import torch

    if device == "cpu":
        return None
    if not device.startswith("cuda"):
        return f"--device {device}: the smoke test is for CUDA GPUs (or cpu for the dry run)"
    if not torch.cuda.is_available():
        return ("no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a GPU machine, or "
                "`make gpu-smoke DEVICE=cpu` for the CPU dry run")
    return None


# ------------------------------------------------------------------------------------------------ steps
class Smoke:
    def __init__(self, device: str, scratch: Path):
        self.device, self.scratch = device, scratch
        self.dry = device == "cpu"
        self.lines: list[str] = []

    def note(self, text: str) -> None:
        log(text)
        self.lines.append(text)

    def trainers(self) -> None:
        import torch

        import jembench

        for method in METHODS:
            out = self.scratch / "train" / method
            jembench.train(method, "tiny", out, progress=False, device=self.device, dataset="digits", max_iters=4,
                           log_every=2)
            jembench.train(method, "tiny", out, resume=True, progress=False, device=self.device, max_iters=8,
                           log_every=2)
            self.note(f"{method}: 4 iterations, resumed to 8")
        straight = jembench.train("jem", "tiny", self.scratch / "train" / "jem-straight", progress=False,
                                  device=self.device, dataset="digits", max_iters=8, log_every=2)
        a = torch.load(self.scratch / "train" / "jem" / "last.pt", map_location="cpu", weights_only=True)
        b = torch.load(straight, map_location="cpu", weights_only=True)
        diff = max(float((a["model_state"][k].float() - v.float()).abs().max()) for k, v in b["model_state"].items())
        if self.dry and diff != 0:
            raise StepFailed(f"jem resumed at 4 differs from an uninterrupted run by {diff:.3g} on the CPU "
                             f"(must be bit-identical)")
        self.note(f"jem 4 + 4 resumed vs 8 uninterrupted: largest weight difference {diff:.3g}"
                  + (" (bit-identical)" if diff == 0 else ""))

    def paper_iteration(self) -> None:
        import jembench
        from jembench import devices

        folder = random_image_folder(self.scratch / "png32", n_train=128, n_test=32)
        batch, steps = (2, 2) if self.dry else (64, 20)
        label = ("WRN-28-10, K = 2, batch 2 (reduced for the CPU dry run; the paper: K = 20, batch 64)" if self.dry
                 else "WRN-28-10, K = 20, batch 64 (paper scale)")
        if not self.dry:
            devices.reset_peak_memory(self.device)
        start = time.perf_counter()
        jembench.train("jem", "paper", self.scratch / "paper-iter", progress=False, device=self.device,
                       dataset=f"folder:{folder}", max_iters=1, batch_size=batch, sgld_steps=steps, holdout=0,
                       select_best="none", workers=0, sample_every=0)
        devices.synchronize(self.device)
        seconds = time.perf_counter() - start
        peak = devices.peak_memory(self.device)
        memory = (f"peak GPU memory {peak / 2**30:.2f} GiB" if peak is not None else
                  f"peak host RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
        self.note(f"one JEM iteration, {label}: {seconds:.1f} s including setup, {memory}")

    def suites(self) -> None:
        from benchmarks.device_compare import compare

        import jembench

        ckpt = self.scratch / "train" / "jem" / "last.pt"
        for suite in SUITES:
            dev = jembench.evaluate(ckpt, suite, preset="tiny", device=self.device, out=self.scratch / "eval-dev" /
                                    f"{suite}.json")
            cpu = dev if self.dry else jembench.evaluate(ckpt, suite, preset="tiny", device="cpu",
                                                         out=self.scratch / "eval-cpu" / f"{suite}.json")
            failures, reported = compare(cpu, dev)
            if failures:
                raise StepFailed(f"{suite} on {self.device} vs the CPU: " + "; ".join(failures))
            env = dev.get("environment", {})
            self.note(f"{suite}: {len(cpu['metrics']) - len(reported)} metrics within tolerance of the CPU's"
                      f"{' (dry run: the record against itself)' if self.dry else ''}, {len(reported)} reported only; "
                      f"record: device {env.get('device', '?')}, precision {env.get('precision', '?')}")

    def compile(self) -> None:
        from benchmarks.device_compare import compare

        import jembench

        ckpt = self.scratch / "train" / "jem" / "last.pt"
        for suite in COMPILED:
            eager = jembench.evaluate(ckpt, suite, preset="tiny", device=self.device,
                                      out=self.scratch / "eval-eager" / f"{suite}.json")
            compiled = jembench.evaluate(ckpt, suite, preset="tiny", device=self.device, compile=True,
                                         out=self.scratch / "eval-compiled" / f"{suite}.json")
            failures, _ = compare(eager, compiled)
            if failures:
                raise StepFailed(f"{suite} compiled vs eager: " + "; ".join(failures))
            self.note(f"{suite} --compile: within tolerance of eager")

    def ddp(self) -> None:
        import torch

        if not self.dry and torch.cuda.device_count() < 2:
            self.note(f"ddp: skipped, {torch.cuda.device_count()} GPU visible (needs 2)")
            return
        device = "cpu" if self.dry else "cuda"  # each rank takes cuda:<LOCAL_RANK>
        out = self.scratch / "ddp"
        common = ["--preset", "tiny", "--dataset", "digits", "--device", device, "--no-progress", "--out", str(out)]
        torchrun(["train", "jem", *common, "--max-iters", "4"])
        torchrun(["train", "jem", "--resume", str(out), "--device", device, "--no-progress", "--max-iters", "8"])
        torchrun(["eval", str(out / "last.pt"), "--suite", "robustness", "--preset", "tiny", "--device", device,
                  "--no-progress", "--out", str(out / "robustness.json")])
        self.note(f"ddp: torchrun 2 processes ({'gloo, CPU dry run' if self.dry else 'nccl'}): train 4, resume to "
                  f"8, robustness sharded over both ranks")

    def bench(self) -> None:
        cmd = [sys.executable, "-m", "benchmarks", "--device", self.device, "--quick",
               "--out", str(self.scratch / "bench.json")]
        run_or_fail(cmd, "python -m benchmarks --quick")
        self.note("python -m benchmarks --quick: done (table above)")


def torchrun(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "jembench",
           *args]
    run_or_fail(cmd, "torchrun " + " ".join(args[:2]))


def run_or_fail(cmd: list[str], what: str) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(cmd, cwd=REPO, env=env)
    if done.returncode != 0:
        raise StepFailed(f"{what} exited with {done.returncode}")


def random_image_folder(root: Path, n_train: int, n_test: int) -> Path:
    """An ImageFolder of random 32×32 RGB PNGs, 10 classes, with train/ and test/ (no download needed)."""
    from benchmarks.suites import random_image_folder as make

    if not (root / "train").is_dir():
        make(root, n_test=n_test, n_train=n_train)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    reason = require_gpu(args.device)
    if reason is not None:
        print(f"gpu-smoke: {reason}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    scratch = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="jembench-gpu-smoke-"))
    smoke = Smoke(args.device, scratch)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("trainers", smoke.trainers), ("paper-iter", smoke.paper_iteration), ("suites", smoke.suites),
        ("compile", smoke.compile)]
    steps += [("ddp", smoke.ddp)] * args.ddp + [("bench", smoke.bench)] * args.bench
    what = f"{args.device} ({'CPU dry run' if smoke.dry else torch.cuda.get_device_name(args.device)})"
    log(f"device {what}, scratch {scratch}")
    started, times = time.perf_counter(), []
    try:
        for name, step in steps:
            t0 = time.perf_counter()
            log(f"step {name} ...")
            try:
                step()
            except StepFailed as exc:
                print(f"gpu-smoke: step {name} failed: {exc}", file=sys.stderr)
                return 1
            times.append((name, time.perf_counter() - t0))
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - started
    print(f"\ngpu-smoke on {what}: all {len(steps)} steps passed in {total / 60:.1f} min")
    for name, seconds in times:
        print(f"  {name:<11} {seconds:7.1f} s")
    for line in smoke.lines:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
