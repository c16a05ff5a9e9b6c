"""The committed baseline of the documented fixed-checkpoint CI job (docs/check.md): a checkpoint and its records.

``python -m benchmarks.fixed_baseline [--threads 1]`` (``make baseline-fixed``)

The fixed-checkpoint job (:class:`benchmarks.ci_job.FixedJob`) re-evaluates a committed checkpoint and checks the
records against the committed records of that very checkpoint with ``--paired``. This makes both: the retrained
job's model with its default seed — the job's own ``train`` line (:class:`benchmarks.ci_job.Job`) on one thread, the
weights of ``results/runs/demo-seeds/jem/seed-0`` bit for bit (checked here against that record's
``model.weights_sha256``) — exported compact to the path the fixed job's eval line names (``jembench export
--buffer-n 0``: weights, architecture and settings, no optimizer state or replay buffer: the suites it runs need
none), then the fixed job's ``eval`` line with its output moved to the baseline folder (records with their per-input
evidence; the figures are dropped). The training runs in ``runs/demo-fixed/jem`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.ci_job import REPO, FixedJob, Job, drop_figures, jembench, relocate
from jembench import evidence, recipe

SEED_BASELINE = "seed-0"  # the seed baseline's run with the job's default seed: the same weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fixed_baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "demo-fixed" / "jem", help="training goes here")
    args = p.parse_args(argv)
    retrained, fixed = Job.from_docs(), FixedJob.from_docs()
    out = REPO / fixed.baseline()
    if not args.work.joinpath("last.pt").is_file():
        code, wall = jembench(relocate(retrained.train, args.work, args.work) + ["--no-progress"], args.threads,
                              args.work / "train.log")
        print(f"train exit {code}, {wall:.0f} s", flush=True)
        if code:
            return code
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.json"), *out.glob(f"*{evidence.SUFFIX}")]:
        old.unlink()
    code, _ = jembench(["jembench", "export", str(args.work / "last.pt"), fixed.checkpoint(), "--buffer-n", "0"],
                       args.threads, args.work / "export.log")
    if code:
        return code
    state = torch.load(REPO / fixed.checkpoint(), map_location="cpu", weights_only=True)
    seed_record = REPO / retrained.baseline() / SEED_BASELINE / "last-accuracy.json"
    expected = json.loads(seed_record.read_text(encoding="utf-8"))["model"]["weights_sha256"]
    if recipe.weights_digest(state["model_state"]) != expected:
        print(f"note: these weights are not {seed_record}'s (another thread count, CPU or torch trained them)")
    code, wall = jembench(fixed.eval_into(fixed.baseline()) + ["--no-progress"], args.threads, args.work / "eval.log")
    print(f"eval exit {code}, {wall:.0f} s", flush=True)
    if code:
        return code
    drop_figures(out)
    print(f"{fixed.checkpoint()}: {(REPO / fixed.checkpoint()).stat().st_size / 1e6:.2f} MB; records in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
