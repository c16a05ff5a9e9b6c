"""Run the benchmark families, print one table, write it as JSON (atomically)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Row, find_cifar, load_average, log, model_specs

RESULTS = REPO / "benchmarks" / "results"
HEADERS = ["family", "model", "measurement", "value", "target", "holds", "detail"]
# families beyond `jembench bench`'s FAMILIES (jembench/commands/bench.py); `python -m benchmarks` adds them
EXTRA_FAMILIES = ("startup", "official")
OFFICIAL_OPTIONS = {"jem": "official_jem", "jempp": "official_jempp", "sada_jem": "official_sadajem"}


def add_extra_arguments(p) -> None:
    """The ``startup`` and ``official`` families and the official family's options (``python -m benchmarks``)."""
    for action in p._actions:
        if action.dest == "only":
            action.choices = tuple(action.choices) + EXTRA_FAMILIES
            action.help = f"run only these families ({', '.join(action.choices)}); default all but official"
    g = p.add_argument_group("official trainers side by side (family 'official'; runs the checkouts' scripts "
                             "unchanged, see benchmarks/official.py)")
    g.add_argument("--official-jem", metavar="PATH", default=None,
                   help="checkout of wgrathwohl/JEM (train_wrn_ebm.py)")
    g.add_argument("--official-jempp", metavar="PATH", default=None,
                   help="checkout of sndnyang/JEMPP (train_jempp.py)")
    g.add_argument("--official-sadajem", metavar="PATH", default=None,
                   help="checkout of sndnyang/SADAJEM (train_sadajem.py)")
    g.add_argument("--official-warmup", type=int, default=3, metavar="W",
                   help="iterations skipped per run after the first optimizer step")
    g.add_argument("--official-iters", type=int, default=8, metavar="N", help="timed iterations per run")
    g.add_argument("--official-rounds", type=int, default=1, metavar="R",
                   help="rounds: lockstep, one pair of runs per round; sequential, one official and one jembench "
                        "run per round, order alternating")
    g.add_argument("--official-mode", choices=("lockstep", "sequential"), default="lockstep",
                   help="lockstep: both trainers alive, released one iteration at a time, alternately (robust to "
                        "a shared CPU's drifting load); sequential: whole runs alternate")
    g.add_argument("--official-scratch", metavar="DIR", default=None,
                   help="scratch folder outside the repo for the converted CIFAR-10 pickles, class statistics and "
                        "run folders (default $TMPDIR/jembench-bench-official; reused between runs)")
    g.add_argument("--official-no-analysis", dest="official_analysis", action="store_false",
                   help="skip the in-process profile and what-if rows of the official family")


def _value(row: Row) -> str:
    if row.value is None:
        return "-"
    if row.unit == "x" or row.unit.startswith("x "):
        return f"{row.value:.3f}"
    return f"{row.value:.0f} {row.unit}"


def _holds(row: Row) -> str:
    return {True: "yes", False: "NO", None: ""}[row.holds]


def table(rows: list[Row]) -> str:
    from tabulate import tabulate

    return tabulate([[r.family, r.model, r.what, _value(r), r.target, _holds(r), r.detail] for r in rows],
                    headers=HEADERS, tablefmt="github", disable_numparse=True)


def environment(args, threads: int) -> dict:
    import torch

    from jembench import devices

    return {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "threads_per_process": threads, "device": args.device,
            "cuda": devices.name(args.device) if args.device.startswith("cuda") else None}


def run_benchmarks(args) -> int:
    import torch

    from jembench import atomic
    from jembench.errors import JembenchError

    start, load_start = time.perf_counter(), load_average()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    cifar = find_cifar(args.cifar)
    scratch = None
    if cifar is None:
        from .suites import random_image_folder

        scratch = tempfile.TemporaryDirectory(prefix="jembench-bench-data-")
        log("no 32x32 image folder found (--cifar, ../shared/data/cifar10-jpeg): using random 32x32 PNGs")
        cifar = random_image_folder(Path(scratch.name), n_test=4000)
    specs_all = model_specs(args.wrn_batch, cifar)
    specs = [specs_all["tiny"]] + ([specs_all["wrn16-4"]] if args.wrn and not args.quick else [])
    checkouts = {m: getattr(args, opt, None) for m, opt in OFFICIAL_OPTIONS.items()}
    families = args.only or (["sgld", "train", "profile", "suites", "ddp", "startup", "attacks"]
                             + (["official"] if any(checkouts.values()) else []))
    rows: list[Row] = []
    profiles: dict[str, str] = {}
    timings: dict[str, float] = {}
    for family in families:
        t0 = time.perf_counter()
        if family == "sgld":
            from . import allocator, sgld
            rows += sgld.run(specs, args.quick, args.device, args.compile)
            if args.device == "cpu":  # a host-allocator setting: nothing to measure on a GPU's memory
                rows += allocator.run(args.quick, args.threads)
        elif family == "train":
            from . import training
            rows += training.run(specs, args.quick, args.device)
        elif family == "profile":
            from . import profiling
            new, profiles = profiling.run(specs, args.quick, args.device)
            rows += new
        elif family == "suites":
            from . import suites
            rows += suites.run(specs, args.quick, args.device, args.threads, cifar)
        elif family == "ddp":
            from . import ddp
            rows += ddp.run(specs, args.quick, args.device, args.threads, args.wrn_batch, cifar)
        elif family == "startup":
            from . import startup
            rows += startup.run(args.quick)
        elif family == "official":
            from . import official
            if not any(checkouts.values()):
                raise JembenchError("--only official needs at least one of --official-jem / --official-jempp / "
                                    "--official-sadajem PATH (a checkout of the official code)")
            new, tables = official.run(checkouts, find_cifar(args.cifar), getattr(args, "official_scratch", None),
                                       getattr(args, "official_warmup", 3), getattr(args, "official_iters", 8),
                                       getattr(args, "official_rounds", 1), args.quick,
                                       getattr(args, "official_analysis", True),
                                       getattr(args, "official_mode", "lockstep"))
            rows += new
            profiles.update(tables)
        elif family == "attacks":
            from . import attacks
            rows += attacks.run(args.quick, args.device)
        timings[family] = time.perf_counter() - t0
    if scratch is not None:
        scratch.cleanup()
    wall = time.perf_counter() - start
    load_end = load_average()
    env = environment(args, args.threads)
    header = (f"jembench bench — {'quick' if args.quick else 'full'} run, torch {env['torch']}, {env['device']}, "
              f"{env['cpu_count']} cores, {args.threads} thread(s)/process; load average "
              f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end; wall {wall:.0f} s")
    print(header)
    print(table(rows))
    failed = [r for r in rows if r.holds is False]
    print(f"\n{sum(r.holds is True for r in rows)} targets hold, {len(failed)} do not"
          + (": " + "; ".join(f"{r.model} / {r.what}" for r in failed) if failed else ""))
    only_extra = len(families) == 1 and families[0] in EXTRA_FAMILIES  # e.g. --only official: official.json
    default = f"{families[0]}.json" if only_extra else "quick.json" if args.quick else "latest.json"
    out = Path(args.out) if args.out else RESULTS / default
    atomic.write_json(out, {
        "schema": "jembench-bench/1", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full", "command": " ".join(sys.argv), "environment": env,
        "load_average": {"start": list(load_start), "end": list(load_end)}, "wall_time_s": wall,
        "family_wall_time_s": timings, "rows": [r.to_dict() for r in rows], "table": table(rows),
        "profiler_top_ops": profiles})
    print(f"results: {out}")
    return 0
