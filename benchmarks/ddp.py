"""DDP: one 2-process gloo iteration (global batch B, B/2 per rank) / one 1-process iteration on B/2.

Perfect data-parallel scaling is 1.0: each rank does the single process's work (its own B/2 images and B/2
SGLD chains from its own buffer shard) plus one gradient all-reduce. The detail column splits the ratio into
what running two processes at once costs on this machine (both ranks run the plain, unwrapped step, timed
until both are done) and what DDP adds on top (hooks, bucket copies, the all-reduce, waiting for the slower
rank's gradients). One ``torchrun --nproc_per_node=2`` job
(:func:`worker`) measures both, interleaved: a DDP iteration on both ranks, then — while rank 1 waits in a
barrier — a plain single-process iteration on rank 0 with the same per-process batch, threads and network.
The iterations are the loop's own ``train_step`` with the model wrapped by ``jembench.distributed.wrap_ddp`` (as
``train`` does under torchrun); every process uses ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, ModelSpec, Row, fmt_ms, log, median, model_specs, paired_ratio

LABELS = {"jem": "JEM", "jempp": "JEM++", "sada_jem": "SADA-JEM", "softmax": "softmax"}


def plan(specs: list[ModelSpec], quick: bool) -> list[tuple[str, str, int]]:
    """(model key, method, repeats)."""
    out = []
    for spec in specs:
        if spec.key == "tiny":
            out += [("tiny", m, 5 if quick else 9) for m in ("softmax", "jem", "jempp", "sada_jem")]
        elif not quick:
            out += [(spec.key, m, 3) for m in ("softmax", "jem")]
    return out


def worker(argv: list[str]) -> int:
    """Runs under torchrun on every rank; rank 0 writes the timings to ``--out``."""
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--work", required=True, help="a folder every rank sees (informative-init caches)")
    p.add_argument("--plan", required=True, help="JSON list of [model key, method, repeats]")
    p.add_argument("--wrn-batch", type=int, required=True)
    p.add_argument("--cifar", default="")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import torch

    from jembench import distributed
    from jembench.reference_models import get_method
    from jembench.reference_models import train_loop as tl

    from .trainstate import build_state, config_for, iteration_inputs

    torch.set_num_threads(args.threads)
    distributed.init(args.device)
    rank = distributed.rank()
    device = distributed.device_for_rank(args.device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    specs = model_specs(args.wrn_batch, Path(args.cifar) if args.cifar else None)
    results = []
    work = Path(args.work)
    for key, method, repeats in json.loads(args.plan):
        spec = specs[key]
        half = max(1, spec.batch_size // 2)
        cfg = config_for(spec, method, device=args.device, batch_size=half)
        torch.manual_seed(0)
        ddp_state = build_state(cfg, spec, work / f"{key}-{method}-ddp", device, ddp=True)
        torch.manual_seed(0)
        single = build_state(cfg, spec, work / f"{key}-{method}-single", device, ddp=False)
        x, y, x_px = iteration_inputs(cfg, spec, device, batch=half)
        objective = get_method(method).objective
        t_ddp, t_single, t_both = [], [], []

        def timed(state, together: bool) -> float:
            sync()
            start = time.perf_counter()
            tl.train_step(state, objective, x, y, x_px)
            sync()
            if together:  # until both ranks are done: an iteration of two processes ends with the slower one
                distributed.barrier()
            return time.perf_counter() - start

        for r in range(repeats + 1):  # round 0 is the warm-up
            distributed.barrier()
            ddp_s = timed(ddp_state, True)  # both ranks, gradients all-reduced
            distributed.barrier()
            both_s = timed(single, True)  # both ranks at once, no communication: what sharing the machine costs
            distributed.barrier()
            single_s = timed(single, False) if rank == 0 else 0.0  # rank 0 alone, rank 1 waits in the barrier
            distributed.barrier()
            if r:
                t_ddp.append(ddp_s)
                t_both.append(both_s)
                t_single.append(single_s)
        results.append({"model": key, "method": method, "per_rank_batch": half, "K": cfg.sgld.n_steps,
                        "ddp_s": t_ddp, "single_s": t_single, "concurrent_single_s": t_both})
    if rank == 0:
        Path(args.out).write_text(json.dumps(results))
    distributed.cleanup()
    return 0


def run(specs: list[ModelSpec], quick: bool, device: str, threads: int, wrn_batch: int, cifar: Path | None
        ) -> list[Row]:
    todo = plan(specs, quick)
    labels = {s.key: s for s in specs}
    with tempfile.TemporaryDirectory(prefix="jembench-bench-ddp-") as tmp:
        out = Path(tmp) / "ddp.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "PYTHONWARNINGS": "ignore",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "benchmarks.ddp", "--out", str(out), "--work", tmp, "--plan", json.dumps(todo),
               "--wrn-batch", str(wrn_batch),
               "--cifar", str(cifar or ""), "--threads", str(threads), "--device", device]
        log(f"ddp: torchrun, 2 processes x {threads} thread(s): {', '.join(f'{k}/{m}' for k, m, _ in todo)}")
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        wall = time.perf_counter() - start
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout)[-2000:]
            log(f"ddp: torchrun failed (exit {proc.returncode}):\n{tail}")
            return [Row("ddp", "-", "2-process gloo DDP iteration / 1 process on half the batch", None, "x", "",
                        False, f"torchrun failed (exit {proc.returncode})", {"stderr": tail})]
        results = json.loads(out.read_text())
    rows = []
    for res in results:
        ratio = paired_ratio(res["ddp_s"], res["single_s"])
        spec = labels[res["model"]]
        k = f", K={res['K']}" if res["method"] != "softmax" else ""
        sharing = paired_ratio(res["concurrent_single_s"], res["single_s"])
        ddp_only = paired_ratio(res["ddp_s"], res["concurrent_single_s"])
        rows.append(Row("ddp", spec.label, f"{LABELS[res['method']]}{k}: 2-proc DDP iteration / 1 proc on B/2",
                        ratio, "x", "", None,
                        f"{fmt_ms(median(res['ddp_s']))} vs {fmt_ms(median(res['single_s']))}; {res['per_rank_batch']}"
                        f"/rank, n={len(res['ddp_s'])}; = {sharing:.2f} (2 procs, no DDP) x {ddp_only:.2f} (DDP)",
                        {**res, "torchrun_wall_s": wall, "two_processes_no_ddp_ratio": sharing,
                         "ddp_over_two_processes_ratio": ddp_only}))
    return rows


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
