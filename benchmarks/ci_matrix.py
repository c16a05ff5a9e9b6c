"""Does the documented CI job (docs/check.md) pass on fresh retrainings and fail on a degraded model? Measured.

``python -m benchmarks.ci_matrix [--seeds 101-110] [--threads 1 2] [--verbatim] [--degraded] [--out FILE]``

Each cell is the documented job (:mod:`benchmarks.ci_job`: its own ``train``, ``eval`` and ``check`` lines) run with its
folders moved to ``runs/ci-matrix/<cell>``, a training seed the committed baseline was not made with (``--seed S``)
and ``OMP_NUM_THREADS=T`` (thread count changes float reduction order: 1 and 2 threads give other weights from the
tenth iteration on). The ``check`` line runs verbatim against the committed baseline; its exit code is the cell's
verdict (0 pass, 1 regression, 4 stale baseline). ``--verbatim`` adds the job's lines exactly as written (the
default seed 0, the baseline's seed-0 recipe: on the same thread count its weights must be the baseline's, bit for
bit). ``--degraded`` adds models that must fail: the job's training cut
to one epoch (``--epochs 1``), and the first cell's checkpoint with Gaussian noise of ``--noise`` × each weight
tensor's standard deviation added to every kernel / matrix (one model per level). For every cell the JSON also
holds the metric closest to failing (largest shortfall / allowed), how many tolerances the between-seed spread
set, and what the check would have said against one baseline record (seed 0) with the sampling error alone — the
job's rule before its baseline was a distribution (``against_seed0_only``).

Cells run one at a time under ``nice`` (a shared machine); finished cells are kept in the output file and skipped
when it is run again (``--force`` redoes them), so an interrupted matrix continues. Writes
``benchmarks/results/ci-matrix.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.ci_job import REPO, Job, jembench, relocate
from benchmarks.seed_baseline import seed_list

RESULTS = Path(__file__).resolve().parent / "results"
WORK = REPO / "runs" / "ci-matrix"


def perturb(checkpoint: Path, out: Path, level: float, seed: int = 0) -> Path:
    """``checkpoint`` with N(0, (level · std(W))²) added to every weight kernel / matrix W (a seeded draw)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    gen = torch.Generator().manual_seed(seed)
    for value in state["model_state"].values():
        if value.is_floating_point() and value.dim() > 1:
            value.add_(level * value.std() * torch.randn(value.shape, generator=gen))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def details(records: Path, baseline: str, tolerances: str | None) -> dict[str, Any]:
    """What ``check`` decided, row by row (the API ``check`` runs): the metric closest to failing, the
    regressions, which source of variance set the tolerances, and the accuracy."""
    from jembench.check import compare_baseline, load_rules
    from jembench.records import load_records

    refs, rules = load_records([records]), load_rules(tolerances)
    comps, _ = compare_baseline(refs, load_records([REPO / baseline]), rules, allow_missing=True)
    # what the job decided before its baseline was a distribution: one record (seed 0), sampling error only
    one, _ = compare_baseline(refs, load_records([REPO / baseline / "seed-0"]), rules, allow_missing=True,
                              paired=False)

    def ratio(c) -> float:
        shortfall = c.reference - c.value if c.direction == "higher" else c.value - c.reference
        return shortfall / c.allowed if c.allowed > 0 else (float("inf") if shortfall > 0 else 0.0)

    closest = max(comps, key=ratio)
    accuracy = next((c.value for c in comps if c.metric == "accuracy" and "accuracy" in Path(c.record).name), None)
    return {"compared": len(comps), "regressions": [f"{Path(c.record).stem}:{c.metric}" for c in comps
                                                    if c.regression],
            "closest": {"metric": f"{Path(closest.record).stem}:{closest.metric}", "value": closest.value,
                        "reference": closest.reference, "allowed": closest.allowed, "rule": closest.rule,
                        "shortfall_over_allowed": round(ratio(closest), 3)},
            "set_by": {k: sum(c.decided_by == k for c in comps) for k in ("seeds", "sampling", "both")},
            "against_seed0_only": [f"{Path(c.record).stem}:{c.metric}" for c in one if c.regression],
            "accuracy": accuracy}


def run_cell(job: Job, name: str, seed: int | None, threads: int, extra: list[str] | None = None,
             checkpoint: Path | None = None) -> dict[str, Any]:
    """One run of the job: train (unless ``checkpoint`` is given; ``seed`` None: the job's line as it is), eval,
    check. Returns the cell's entry."""
    run = WORK / name
    records = run / "eval"
    cell: dict[str, Any] = {"cell": name, "seed": seed, "threads": threads, "train_extra": extra or []}
    if checkpoint is None:
        seeded = [] if seed is None else ["--seed", str(seed)]
        code, cell["train_s"] = jembench(relocate(job.train, run, records) + [*seeded, "--no-progress",
                                                                             *(extra or [])], threads,
                                         run / "train.log")
        if code:
            return {**cell, "error": f"train exit {code} (see {run / 'train.log'})"}
    code, cell["eval_s"] = jembench(relocate(job.eval, run, records) + ["--no-progress"], threads, run / "eval.log")
    if code:
        return {**cell, "error": f"eval exit {code} (see {run / 'eval.log'})"}
    check = relocate(job.check, run, records)
    cell["check_exit"], _ = jembench(check, threads, run / "check.log")
    lines = (run / "check.log").read_text(encoding="utf-8").splitlines()
    cell["check_summary"] = lines[-1] if lines else ""
    cell["stale"] = [line for line in lines if line.startswith("stale:")]
    tolerances = check[check.index("--tolerances") + 1] if "--tolerances" in check else None
    cell.update(details(records, job.baseline(), tolerances))
    ckpt = run / "last.pt"
    cell["checkpoint_sha256"] = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16] if ckpt.is_file() else None
    mine = json.loads((records / "last-accuracy.json").read_text(encoding="utf-8"))["model"]
    seed0 = REPO / job.baseline() / "seed-0" / "last-accuracy.json"
    if seed0.is_file():  # the job's own seed: the baseline's seed-0 weights, when the recipe is the same
        theirs = json.loads(seed0.read_text(encoding="utf-8"))["model"]
        cell["same_recipe_as_baseline_seed0"] = mine.get("recipe") == theirs.get("recipe")
        cell["same_weights_as_baseline_seed0"] = mine.get("weights_sha256") == theirs.get("weights_sha256")
    return cell


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    fresh = [c for c in cells if c.get("kind") == "retrained"]
    bad = [c for c in cells if c.get("kind") == "degraded"]
    verbatim = [c for c in cells if c.get("kind") == "verbatim"]
    return {"verbatim": len(verbatim), "verbatim_passed": sum(c.get("check_exit") == 0 for c in verbatim),
            "retrained": len(fresh), "retrained_passed": sum(c.get("check_exit") == 0 for c in fresh),
            "retrained_failing_against_seed0_only": sum(bool(c.get("against_seed0_only")) for c in fresh),
            "degraded_failing_against_seed0_only": sum(bool(c.get("against_seed0_only")) for c in bad),
            "degraded": len(bad), "degraded_failed": sum(c.get("check_exit") == 1 for c in bad),
            "distinct_checkpoints": len({c.get("checkpoint_sha256") for c in fresh}),
            "worst_retrained": max((c["closest"]["shortfall_over_allowed"] for c in fresh if "closest" in c),
                                   default=None)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ci_matrix", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=seed_list, default=seed_list("101-110"), help="training seeds, e.g. 101-110")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OMP_NUM_THREADS values")
    p.add_argument("--degraded", action="store_true", help="add the 1-epoch and the weight-perturbed model")
    p.add_argument("--noise", type=float, nargs="+", default=[0.5],
                   help="weight noise of the perturbed models (× each tensor's std), one model per level")
    p.add_argument("--verbatim", action="store_true",
                   help="add the job's lines exactly as written (the default seed, 0: the baseline's seed-0 recipe)")
    p.add_argument("--out", type=Path, default=RESULTS / "ci-matrix.json")
    p.add_argument("--force", action="store_true", help="redo cells already in --out")
    p.add_argument("--redecide", action="store_true",
                   help="decide the finished cells again from their kept records (after a change of check's rules)")
    args = p.parse_args(argv)
    job = Job.from_docs()
    previous = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() and not args.force else {}
    done = {c["cell"]: c for c in previous.get("cells", []) if "error" not in c}
    plan: list[tuple[str, dict[str, Any]]] = [(f"s{s}-t{t}", {"kind": "retrained", "seed": s, "threads": t})
                                              for t in args.threads for s in args.seeds]
    if args.verbatim:
        plan += [(f"verbatim-t{t}", {"kind": "verbatim", "seed": None, "threads": t}) for t in args.threads]
    if args.degraded:
        first = plan[0][1]
        plan.append((f"s{first['seed']}-t{first['threads']}-1epoch",
                     {"kind": "degraded", "seed": first["seed"], "threads": first["threads"],
                      "extra": ["--epochs", "1"]}))
        plan += [(f"s{first['seed']}-t{first['threads']}-noise{level:g}",
                  {"kind": "degraded", "seed": first["seed"], "threads": first["threads"], "perturb": plan[0][0],
                   "noise": level}) for level in args.noise]
    cells = []
    for name, spec in plan:
        if name in done:
            cell = done[name]
            if args.redecide and (WORK / name / "eval").is_dir():
                check = relocate(job.check, WORK / name, WORK / name / "eval")
                tolerances = check[check.index("--tolerances") + 1] if "--tolerances" in check else None
                cell.update(details(WORK / name / "eval", job.baseline(), tolerances))
            cells.append(cell)
            continue
        checkpoint = None
        if "perturb" in spec:
            checkpoint = perturb(WORK / spec["perturb"] / "last.pt", WORK / name / "last.pt", spec["noise"])
        cell = run_cell(job, name, spec["seed"], spec["threads"], spec.get("extra"), checkpoint)
        cell["kind"] = spec["kind"]
        if checkpoint is not None:
            cell["perturbed"] = {"from": spec["perturb"], "noise_x_std": spec["noise"]}
        cells.append(cell)
        print(f"{name}: check exit {cell.get('check_exit', cell.get('error'))} — {cell.get('check_summary', '')}",
              flush=True)
        write(args.out, job, cells)
    write(args.out, job, cells)
    summary = summarize(cells)
    print(json.dumps(summary))
    return 0


def write(out: Path, job: Job, cells: list[dict[str, Any]]) -> None:
    from jembench.atomic import write_json

    import torch

    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    write_json(out, {"benchmark": "ci-matrix", "created": created,
                     "command": "python -m benchmarks.ci_matrix " + " ".join(sys.argv[1:]),
                     "job": {"train": job.train, "eval": job.eval, "check": job.check},
                     "torch": torch.__version__, "summary": summarize(cells), "cells": cells})


if __name__ == "__main__":
    sys.exit(main())
