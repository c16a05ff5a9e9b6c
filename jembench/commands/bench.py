"""``jembench bench``: speed and memory ratios against the physical limit (the ``benchmarks/`` package)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import JembenchError

NAME = "bench"
ORDER = 70
HELP = "benchmark SGLD, training iterations, suites and DDP against the physical limit (ratios)"
DESCRIPTION = ("Print a table of ratios measured in one run — SGLD step / bare input-gradient loop, training "
               "iteration / ((K+1) x plain classifier step), each suite's throughput and peak RSS at N and 4N "
               "images, 2-process DDP / 1 process on half the batch — on the tiny presets and a WRN-16-4 on 32x32 "
               "inputs, and write it as JSON. Same as `python -m benchmarks` in a source checkout; see "
               "benchmarks/README.md.")

FAMILIES = ("sgld", "train", "profile", "suites", "ddp")


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
    p.add_argument("--no-wrn", dest="wrn", action="store_false", help="skip the WRN-16-4 rows")
    p.add_argument("--cifar", default=None,
                   help="ImageFolder with train/ and test/ of 32x32 images (default ../shared/data/cifar10-jpeg; "
                        "random PNGs when absent)")
    p.add_argument("--out", default=None,
                   help="JSON output (default benchmarks/results/latest.json; --quick: benchmarks/results/quick.json)")


def _import_runner():
    """``benchmarks`` lives in the source checkout, beside the ``jembench`` package."""
    try:
        from benchmarks import runner
    except ImportError:
        checkout = Path(__file__).resolve().parents[2]
        if not (checkout / "benchmarks" / "runner.py").is_file():
            raise JembenchError("jembench bench needs a source checkout (the benchmarks/ folder is not installed); "
                                "run it from a clone of the repository") from None
        sys.path.insert(0, str(checkout))
        from benchmarks import runner
    return runner


def run(args) -> int:
    if args.threads < 1:
        raise JembenchError(f"--threads must be >= 1, got {args.threads}")
    if args.wrn_batch < 2:
        raise JembenchError(f"--wrn-batch must be >= 2, got {args.wrn_batch}")
    return _import_runner().run_benchmarks(args)
