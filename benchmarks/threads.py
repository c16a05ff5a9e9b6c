"""Threads on a busy machine (issue 26 item 2): how much competing CPU load slows jembench's small-batch work.

On a 2-core machine shared with two CPU-bound processes a fair share explains a 1.5-3× slowdown; OpenMP threads
spinning at barriers of an oversubscribed CPU gave 20-50×. jembench now runs small-batch units on one thread and
the CLI sets ``OMP_WAIT_POLICY=PASSIVE`` (:mod:`jembench.threads`). Rows:

* ``busy / quiet`` — wall time of the robustness suite of ``jembench demo`` (``--preset demo``: every attack at
  K = 0, 1, 10 on 10 inputs) on a tiny softmax model trained here, run as a user runs it (a fresh ``jembench
  eval`` process, no ``OMP_NUM_THREADS``: torch's default thread count), while two ``while True: pass``
  processes run, over the same without them; runs alternate (quiet, busy, busy, quiet, ...), the suite's own
  ``wall_time_s`` (the record's) is timed. Target ≤ 4. "Quiet" means: no competitor started by the benchmark;
  on a machine that others load, the ratio understates the effect — re-measure on an idle machine.
* ``busy / quiet, before`` (full run only) — one unit (k10/pgd-linf, 10 inputs) the old way (every unit on all
  cores: ``JEMBENCH_THREADS=<cores>``, ``OMP_WAIT_POLICY=ACTIVE``) and jembench's way: what the rule and the
  wait policy buy.
* ``1 thread / N threads`` — forward + input-gradient pass of networks of growing cost per call, interleaved
  in this process (OpenMP's default wait policy): where a second thread starts to pay, i.e. where
  :data:`jembench.threads.SMALL_WORK_FLOPS` belongs (below it one thread must be about as fast as N). Only
  meaningful on an idle machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .common import Row, check, fmt_ms, interleaved, log, median, paired_ratio

TARGET = 4.0
COMPETITORS = 2


def _train_tiny_softmax(folder: Path) -> Path:
    from jembench.reference_models.config import resolve_config
    from jembench.reference_models.train_loop import train

    if (folder / "last.pt").is_file():
        return folder / "last.pt"
    return train(resolve_config("softmax", "tiny", {"dataset": "digits", "seed": 0}), folder, progress=False)


@contextlib.contextmanager
def competitors(n: int) -> Iterator[None]:
    """``n`` CPU-bound processes (a Python busy loop each) for the duration of the block."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def _env(**extra: str) -> dict[str, str]:
    drop = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
            "JEMBENCH_THREADS")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "PYTHONWARNINGS": "ignore", **extra}


def suite_seconds(ckpt: Path, protocol: Path, out: Path, env: dict[str, str]) -> float:
    """The robustness suite's own wall time (the record's ``wall_time_s``) in a fresh ``jembench eval``."""
    proc = subprocess.run([sys.executable, "-m", "jembench", "eval", str(ckpt), "--suite", "robustness",
                           "--protocol", str(protocol), "--out", str(out), "--no-progress", "-q"],
                          env=env, capture_output=True, text=True, timeout=7200)
    if proc.returncode != 0:
        raise RuntimeError(f"jembench eval failed: {proc.stderr[-2000:]}")
    return float(json.loads(out.read_text())["wall_time_s"])


def busy_quiet(ckpt: Path, protocol: Path, scratch: Path, repeats: int, env: dict[str, str]
               ) -> tuple[list[float], list[float]]:
    """Suite seconds without and with the competitors, alternating (quiet, busy, busy, quiet, ...)."""
    quiet: list[float] = []
    busy: list[float] = []
    for r in range(repeats):
        for kind in (("quiet", "busy") if r % 2 == 0 else ("busy", "quiet")):
            out = scratch / f"{protocol.stem}-{kind}-{r}.json"
            if kind == "busy":
                with competitors(COMPETITORS):
                    busy.append(suite_seconds(ckpt, protocol, out, env))
            else:
                quiet.append(suite_seconds(ckpt, protocol, out, env))
            log(f"threads: {protocol.stem} {kind}: {(busy if kind == 'busy' else quiet)[-1]:.1f} s")
    return quiet, busy


def one_unit_protocol(scratch: Path) -> Path:
    """robustness-demo cut to one unit: PGD L∞ at K = 10 on 10 inputs."""
    from jembench.resources import protocol_dir

    path = scratch / "robustness-one-unit.toml"
    path.write_text(f'suite = "robustness"\nbase = "{protocol_dir() / "robustness-demo.toml"}"\n'
                    '[refine]\nsteps = [10]\n[pgd]\nnorms = ["linf"]\n[boundary]\nenabled = false\n'
                    '[pointwise]\nenabled = false\n', encoding="utf-8")
    return path


def crossover_rows(quick: bool, budget: int) -> list[Row]:
    """1 thread / ``budget`` threads for one forward + input-gradient pass, at growing forward FLOPs per call."""
    import torch

    from jembench import threads
    from jembench.reference_models.wideresnet import wide_resnet

    cases = [("WRN-10-1 1x8x8", 10, 1, 1, 8, 10), ("WRN-10-1 1x8x8", 10, 1, 1, 8, 64),
             ("WRN-10-1 1x8x8", 10, 1, 1, 8, 256), ("WRN-16-4 3x32x32", 16, 4, 3, 32, 16)]
    rows = []
    saved = torch.get_num_threads()
    for label, depth, width, ch, side, batch in cases[:2] if quick else cases:
        torch.manual_seed(0)
        net = wide_resnet(depth, width, 10, ch, None).eval()
        x = torch.rand(batch, ch, side, side) * 2 - 1
        flops = threads.forward_flops(net, (ch, side, side)) * batch

        def step(n: int):
            def run():
                torch.set_num_threads(n)
                xx = x.clone().requires_grad_()
                torch.autograd.grad(net(xx).logsumexp(1).sum(), xx)
            return run

        times = interleaved({"one": step(1), "all": step(budget)}, repeats=5 if quick else 15)
        torch.set_num_threads(saved)
        ratio = paired_ratio(times["one"], times["all"])
        small = flops < threads.SMALL_WORK_FLOPS
        rows.append(Row("threads", f"{label}, B={batch}", f"1 thread / {budget} threads (fwd + input grad)", ratio,
                        target="<= 1.10 (rule: 1 thread)" if small else "",
                        holds=check(ratio, 1.10) if small else None,
                        detail=f"{flops / 1e9:.3f} GFLOP per forward call; {fmt_ms(median(times['one']))} vs "
                               f"{fmt_ms(median(times['all']))}",
                        data={"flops": flops, "one": times["one"], "all": times["all"]}))
    return rows


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    budget = os.cpu_count() or 1
    from jembench.resources import protocol_dir

    with tempfile.TemporaryDirectory(prefix="jembench-bench-threads-") as tmp:
        scratch = Path(tmp)
        log("threads: training a tiny softmax model for the robustness runs")
        ckpt = _train_tiny_softmax(scratch / "softmax")
        demo = protocol_dir() / "robustness-demo.toml"
        quiet, busy = busy_quiet(ckpt, demo, scratch, 1 if quick else 2, _env())
        ratio = median(busy) / median(quiet)
        rows.append(Row("threads", "tiny softmax, robustness-demo", f"busy ({COMPETITORS} CPU-bound processes) / "
                        "quiet, suite wall time", ratio, target=f"<= {TARGET:g}", holds=check(ratio, TARGET),
                        detail=f"{median(busy):.1f} s vs {median(quiet):.1f} s; quiet = no competitor started here",
                        data={"quiet": quiet, "busy": busy}))
        if not quick:
            unit = one_unit_protocol(scratch)
            for label, env in (("before (all cores, ACTIVE)", _env(JEMBENCH_THREADS=str(budget),
                                                                    OMP_WAIT_POLICY="ACTIVE")),
                               ("jembench defaults", _env())):
                q, b = busy_quiet(ckpt, unit, scratch, 1, env)
                rows.append(Row("threads", "tiny softmax, k10/pgd-linf unit", f"busy / quiet, {label}",
                                median(b) / median(q), detail=f"{median(b):.1f} s vs {median(q):.1f} s",
                                data={"quiet": q, "busy": b}))
    rows += crossover_rows(quick, budget)
    return rows
