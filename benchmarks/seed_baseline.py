"""The committed baseline of the documented CI job (docs/check.md): its model trained with k seeds, every suite run.

``python -m benchmarks.seed_baseline [--seeds 0-9] [--threads 1]`` (``make baseline-seeds``)

A CI job that retrains its model gets another model each run (seed, thread count, float reduction order), so its
baseline is a distribution: the documented job's own ``train`` and ``eval`` lines (:mod:`benchmarks.ci_job`) run once
per seed — ``train … --seed N`` into ``runs/demo-seeds/jem/seed-N`` (checkpoints stay out of the repository), ``eval``
into ``results/runs/demo-seeds/jem/seed-N`` (the records and their per-input evidence are committed; the figures are
dropped). ``jembench check --baseline results/runs/demo-seeds/jem`` then compares a new run with the seeds' mean and
their spread (:mod:`jembench.seed_spread`). Runs one training or evaluation at a time, under ``nice``; a seed whose
records exist is skipped (``--force`` redoes it), so an interrupted run continues. ``--eval-only`` re-evaluates the
kept checkpoints (after a protocol change) without training again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmarks.ci_job import REPO, Job, drop_figures, jembench, relocate

SUITES = ("accuracy", "calibration", "ood", "generation", "robustness")


def seed_list(text: str) -> list[int]:
    """``0-9`` or ``0,3,5`` → seeds."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=seed_list, default=seed_list("0-9"), help="seeds, e.g. 0-9 or 0,2,4")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "demo-seeds" / "jem", help="checkpoints go here")
    p.add_argument("--force", action="store_true", help="redo seeds whose records exist")
    p.add_argument("--eval-only", action="store_true", help="re-evaluate the kept checkpoints, never train")
    args = p.parse_args(argv)
    job = Job.from_docs()
    out = REPO / job.baseline()
    for seed in args.seeds:
        run, records = args.work / f"seed-{seed}", out / f"seed-{seed}"
        if not args.force and all((records / f"last-{s}.json").is_file() for s in SUITES):
            print(f"seed {seed}: records exist ({records}); skipped")
            continue
        if not args.eval_only:
            code, wall = jembench(relocate(job.train, run, records) + ["--seed", str(seed), "--no-progress"],
                                  args.threads, run / "train.log")
            print(f"seed {seed}: train exit {code}, {wall:.0f} s", flush=True)
            if code:
                return code
        if records.exists():
            shutil.rmtree(records)
        code, wall = jembench(relocate(job.eval, run, records) + ["--no-progress"], args.threads, run / "eval.log")
        print(f"seed {seed}: eval exit {code}, {wall:.0f} s", flush=True)
        if code:
            return code
        drop_figures(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
