"""``jembench demo``: the main job on the embedded real dataset, offline, in minutes on a CPU.

Trains the five reference methods — the softmax baseline (the same network with the generative term off),
softmax + SAM, JEM, JEM++ and SADA-JEM — with their ``tiny`` presets on scikit-learn's digits, evaluates each with
every suite under the demo protocols (``--preset demo``: suites/<suite>-demo.toml, the tiny protocols with the
robustness suite cut to a budget that fits the demo; the full tiny protocols stay --preset tiny; --suites picks
some), and prints a paper-style table, one row per method, and the time each phase took. A suite that cannot run
here (e.g. generation without Inception weights) is skipped with a visible note; when every requested suite is
skipped the demo fails (exit 2).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from .. import atomic, progress, summary_table
from ..errors import JembenchError
from ._common import add_progress_argument

NAME = "demo"
ORDER = 1
HELP = "train the five methods on the embedded digits dataset, run every suite, print a paper-style table"
DESCRIPTION = __doc__.split("\n\n", 1)[1].strip()

#: the protocols the demo evaluates with (suites/<suite>-demo.toml)
PRESET = "demo"
#: method → its row label in the table (the papers' names)
METHODS = {"softmax": "Softmax", "softmax_sam": "Softmax+SAM", "jem": "JEM", "jempp": "JEM++", "sada_jem": "SADA-JEM"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the checkpoints, logs, records and figures")
    p.add_argument("--records", default=None,
                   help="also copy every record (and its figures) into this folder, e.g. results/runs/demo")
    p.add_argument("--epochs", type=int, default=None, help="override the tiny presets' number of epochs")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop each training after this many iterations (a quick smoke run)")
    p.add_argument("--suites", nargs="+", default=None, metavar="SUITE",
                   help="suites to run, e.g. --suites accuracy calibration (default: all available)")
    p.add_argument("--data-root", default=None,
                   help="the data root: folder holding torchvision datasets and the image folders protocols name, "
                        "for OOD sets (default: $JEMBENCH_DATA, else data)")
    p.add_argument("--seed", type=int, default=0, help="seed for training and evaluation")
    p.add_argument("--device", default="cpu", help="torch device")
    add_progress_argument(p, "hide progress bars (default: bars when stderr is a terminal, else one line per "
                             "finished unit and a heartbeat line with ETA every $JEMBENCH_HEARTBEAT s, default 30)")


def run(args) -> int:
    from ..defaults import data_root
    from ..evaluation import protocol_for, run_suite
    from ..models import load_checkpoint
    from ..runtime import configure_torch
    from ..suites import available_suites, get_suite
    from ..suites.robustness import sanity
    from ..training import train

    configure_torch()
    root = args.data_root or data_root()

    suites = args.suites if args.suites is not None else available_suites()
    for s in suites:
        get_suite(s)
    out = Path(args.out)
    atomic.ensure_writable_dir(out)
    if args.records:
        atomic.ensure_writable_dir(args.records, flag="--records")
    started = time.perf_counter()
    rows, notes, ran = [], [], 0
    phases: dict[str, float] = {}  # phase → seconds, summed over the methods
    with progress.configured(None if args.progress else False):  # bars on a terminal unless --no-progress
        for method in METHODS:
            overrides = {"dataset": "digits", "seed": args.seed, "device": args.device, "data_root": root}
            if args.epochs is not None:
                overrides["epochs"] = args.epochs
            if args.max_iters is not None:
                overrides["max_iters"] = args.max_iters
            progress.info(f"== training {method} (tiny preset, digits)")
            t0 = time.perf_counter()
            ckpt_path = train(method, "tiny", out / method, progress=args.progress, **overrides)
            ckpt = load_checkpoint(ckpt_path, device=args.device)
            phases["training"] = phases.get("training", 0.0) + time.perf_counter() - t0
            row = {"Model": METHODS[method]}
            for suite_name in suites:
                progress.info(f"== {method}: {suite_name} suite")
                record_path = out / method / "eval" / f"{suite_name}.json"
                t0 = time.perf_counter()
                try:
                    record = run_suite(ckpt, suite_name, protocol_for(suite_name, PRESET), record_path,
                                       data_root=root, device=args.device, seed=args.seed)
                except JembenchError as exc:
                    notes.append(f"{method}/{suite_name} skipped: {exc}")
                    progress.warning(f"note: {notes[-1]}")
                    continue
                finally:
                    phases[suite_name] = phases.get(suite_name, 0.0) + time.perf_counter() - t0
                ran += 1
                failed = summary_table.add_record(row, record)
                if failed:
                    where = sanity.listing(failed)
                    notes.append(f"{sanity.MARK} {METHODS[method]}: attack sanity checks failed ({where}); its "
                                 f"robust accuracies are upper bounds — see its robustness table ({record_path})")
                if args.records:
                    _copy_record(record_path, record, Path(args.records) / method)
            rows.append(row)
    print(f"\njembench demo — digits (scikit-learn, 8x8), tiny training presets, {PRESET} protocols\n")
    print(summary_table.markdown(rows))
    for note in notes:
        print(note if note.startswith(sanity.MARK) else f"note: {note}")
    times = " · ".join(f"{phase} {seconds:.0f} s" for phase, seconds in phases.items())
    print(f"\nrecords and figures: {out}/<method>/eval/   wall time: {time.perf_counter() - started:.0f} s "
          f"({times}; {threads_note()})")
    if not ran:
        raise JembenchError(f"every requested suite ({', '.join(suites)}) was skipped; see the notes above")
    return 0


def threads_note() -> str:
    """How many CPU threads the demo ran on (its small-batch work is single-threaded: jembench.threads)."""
    import torch

    from ..threads import choose

    return f"torch threads {torch.get_num_threads()}, its small-batch units on {choose(0.0)}"


def _copy_record(record_path: Path, record: dict, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    from ..figures import files_of

    for fig in record.get("figures", []):
        for src in files_of(record_path.parent / fig):  # the PNG and its PDF
            with atomic.atomic_path(dest / src.name) as tmp:
                shutil.copyfile(src, tmp)
    evidence = record.get("evidence")
    if isinstance(evidence, dict):  # the per-input arrays, before the record that names them
        with atomic.atomic_path(dest / evidence["file"]) as tmp:
            shutil.copyfile(record_path.parent / evidence["file"], tmp)
    atomic.write_json(dest / record_path.name, record)
