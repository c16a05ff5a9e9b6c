"""``jembench bench``: speed and memory ratios against the physical limit — runs ``python -m benchmarks`` in the
source checkout (``benchmarks/`` is not installed with the package)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ..errors import JembenchError

NAME = "bench"
ORDER = 70
HELP = "benchmark SGLD, training iterations, suites and DDP against the physical limit (ratios)"
DESCRIPTION = ("Print a table of ratios measured in one run — SGLD step / bare input-gradient loop, training "
               "iteration / ((K+1) x plain classifier step), each suite's throughput and peak RSS at N and 4N "
               "images, 2-process DDP / 1 process on half the batch, the demo's robustness suite with two competing "
               "CPU-bound processes / without — on the tiny presets and a WRN-16-4 on 32x32 inputs, and write it as "
               "JSON. Same as `python -m benchmarks` in a source checkout; see "
               "benchmarks/README.md.")

FAMILIES = ("sgld", "train", "profile", "suites", "ddp", "attacks", "threads")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke run (< 2 min on 2 CPU cores): tiny presets only, fewer repeats and suites")
    p.add_argument("--only", nargs="+", choices=FAMILIES, default=None, metavar="FAMILY",
                   help=f"run only these families ({', '.join(FAMILIES)}); default all")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile'd SGLD against the eager bare loop (adds about a minute of "
                        "compilation per network on a CPU)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per process (every process, both sides of every ratio); 1 keeps the "
                        "numbers stable when other processes share the cores")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (suites and DDP follow it)")
    p.add_argument("--wrn-batch", type=int, default=16,
                   help="batch (= SGLD chains) of the WRN-16-4 rows; the tiny rows use the presets' 64")
    p.add_argument("--no-wrn", dest="wrn", action="store_false", help="skip the WRN-16-4 rows (default: include them)")
    p.add_argument("--cifar", default=None,
                   help="ImageFolder with train/ and test/ of 32x32 images (default ../shared/data/cifar10-jpeg; "
                        "random PNGs when absent)")
    p.add_argument("--out", default=None,
                   help="JSON output (default benchmarks/results/latest.json; --quick: benchmarks/results/quick.json)")


def check_arguments(args) -> None:
    """The checks both entry points (``jembench bench``, ``python -m benchmarks``) make before running."""
    if args.threads < 1:
        raise JembenchError(f"--threads must be >= 1, got {args.threads}")
    if args.wrn_batch < 2:
        raise JembenchError(f"--wrn-batch must be >= 2, got {args.wrn_batch}")


def to_argv(args) -> list[str]:
    """The parsed options as a ``python -m benchmarks`` command line."""
    argv = ["--threads", str(args.threads), "--device", args.device, "--wrn-batch", str(args.wrn_batch)]
    argv += ["--quick"] * args.quick + ["--compile"] * args.compile + ["--no-wrn"] * (not args.wrn)
    argv += ["--only", *args.only] if args.only else []
    argv += ["--cifar", args.cifar] if args.cifar else []
    argv += ["--out", args.out] if args.out else []
    return argv


def run(args) -> int:
    from ..resources import source_checkout

    check_arguments(args)
    root = source_checkout()
    if root is None or not (root / "benchmarks" / "runner.py").is_file():
        raise JembenchError("jembench bench runs the benchmarks/ folder of a source checkout, which an installed "
                            "jembench does not have; clone the repository and run it there (python -m benchmarks)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "benchmarks", *to_argv(args)], cwd=root, env=env).returncode
