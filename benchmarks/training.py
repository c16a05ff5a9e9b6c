"""Training iterations against the limit: one JEM / JEM++ / SADA-JEM iteration / ((K+1) × plain step).

An SGLD step is one forward and one input-gradient backward; a plain classifier training step is one forward,
one full backward and one optimiser step. A JEM iteration is K SGLD steps plus the objective's
forward/backward (on x̂ and x) and one optimiser step, so it costs about (K+1) plain steps. SADA-JEM's second
SAM pass is counted in the denominator: (K+2). Both sides are the real code: the numerator is
``jembench.reference_models.train_loop.train_step`` with the method's tiny preset; the denominator the same function
with the softmax objective on the same network, optimiser and batch (:mod:`benchmarks.trainstate`). The
denominator's K+1 (K+2) plain steps run back to back as one timed unit, interleaved with one iteration.

Also measured (tiny presets): what the outer loop adds around ``train_step`` — data loading, the divergence
guard's checks and in-memory snapshots, logging, periodic checkpoints — from real ``train()`` runs: the median
over log windows of the seconds per iteration (the log's ``it_per_s``), warm-up window excluded, against the
median ``train_step`` time measured between those runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
import time
from pathlib import Path

import torch

from .common import ModelSpec, Row, check, fmt_ms, interleaved, log, median, paired_ratio
from .trainstate import (METHODS, batches_per_pass, build_state, config_for, iteration_inputs, plain_config,
                         sam_passes)

TARGET = 1.10
LABELS = {"jem": "JEM", "jempp": "JEM++", "sada_jem": "SADA-JEM"}


def _sync(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else None


def measure_method(spec: ModelSpec, method: str, repeats: int, warmup: int, tmp: Path, device: str) -> list[Row]:
    from jembench.reference_models import get_method
    from jembench.reference_models import train_loop as tl

    cfg = config_for(spec, method, device=device)
    pcfg = plain_config(cfg)
    torch.manual_seed(0)
    state = build_state(cfg, spec, tmp / f"{spec.key}-{method}", device)
    torch.manual_seed(0)
    pstate = build_state(pcfg, spec, tmp / f"{spec.key}-{method}-plain", device)
    x, y, x_px = iteration_inputs(cfg, spec, device)
    objective, plain = get_method(method).objective, get_method("softmax").objective
    k, passes = cfg.sgld.n_steps, sam_passes(cfg)
    units = k + passes

    def plain_steps() -> None:
        for _ in range(units):
            tl.train_step(pstate, plain, x, y, x)

    times = interleaved({"iteration": lambda: tl.train_step(state, objective, x, y, x_px), "plain": plain_steps},
                        repeats, warmup, _sync(device))
    ratio = paired_ratio(times["iteration"], times["plain"])
    it, step = median(times["iteration"]), median(times["plain"]) / units
    name = LABELS[method]
    denom = f"(K+{passes})" if passes > 1 else "(K+1)"
    data = {"method": method, "K": k, "sam_passes": passes, "iteration_s": times["iteration"],
            "plain_steps_s": times["plain"], "plain_steps_per_unit": units, "batch": cfg.batch_size,
            "batches_per_pass": batches_per_pass(cfg), "config": cfg.to_dict()}
    rows = [Row("train", spec.label, f"{name} iteration / ({denom} x plain step), K={k}", ratio, "x",
                f"<= {TARGET:.2f}", check(ratio, TARGET),
                f"{fmt_ms(it)} vs {units} x {fmt_ms(step)}; n={repeats}", data)]
    per_pass = batches_per_pass(cfg)
    if per_pass > 2:  # DA-free p(x): a third forward/backward per pass that the (K+passes) count leaves out
        work = k + passes * per_pass
        adjusted = ratio * units / work
        rows.append(Row("train", spec.label, f"{name} iteration / ((K+{passes}x{per_pass}) x plain step), "
                                             f"work-matched", adjusted, "x", "", None,
                        f"{passes} SAM passes x {per_pass} batches (x_hat, x_px, x) + K={k} SGLD steps",
                        {"method": method, "work_units": work}))
    return rows


def _window_seconds(log_csv: Path, skip: int = 1) -> list[float]:
    with open(log_csv, newline="") as fh:
        rates = [float(r["it_per_s"]) for r in csv.DictReader(fh) if r.get("it_per_s")]
    return [1.0 / r for r in rates[skip:] if r > 0]


def measure_loop(spec: ModelSpec, method: str, rounds: int, iters: int, window: int, tmp: Path,
                 device: str) -> Row:
    from jembench.reference_models import get_method
    from jembench.reference_models import train_loop as tl

    cfg = config_for(spec, method, device=device, max_iters=window + iters, log_every=window)
    objective = get_method(method).objective
    torch.manual_seed(0)
    state = build_state(cfg, spec, tmp / f"loop-step-{method}", device)
    x, y, x_px = iteration_inputs(cfg, spec, device)
    for _ in range(window):  # warm-up
        tl.train_step(state, objective, x, y, x_px)
    loop_s, step_s = [], []
    sync = _sync(device) or (lambda: None)
    for r in range(rounds):
        out = tmp / f"loop-{method}-{r}"
        with contextlib.redirect_stderr(io.StringIO()):
            tl.train(cfg, out, progress=False)
        loop_s.append(median(_window_seconds(out / "log.csv")))
        samples = []
        for _ in range(iters):
            sync()
            start = time.perf_counter()
            tl.train_step(state, objective, x, y, x_px)
            sync()
            samples.append(time.perf_counter() - start)
        step_s.append(median(samples))
    ratio = paired_ratio(loop_s, step_s)
    return Row("loop", spec.label, f"{LABELS[method]}: train() iteration / train_step()", ratio, "x", "", None,
               f"{fmt_ms(median(loop_s))} vs {fmt_ms(median(step_s))}; {rounds} runs x {iters} its, "
               f"log/guard every {window}",
               {"method": method, "loop_s": loop_s, "train_step_s": step_s, "log_every": window})


def run(specs: list[ModelSpec], quick: bool, device: str) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jembench-bench-train-") as tmp:
        tmp_path = Path(tmp)
        for spec in specs:
            repeats = (3 if quick else 7) if spec.key == "tiny" else (2 if quick else 3)
            for method in METHODS:
                log(f"training iteration: {spec.key} {method}")
                rows += measure_method(spec, method, repeats, warmup=1, tmp=tmp_path, device=device)
        tiny = [s for s in specs if s.key == "tiny"]
        for spec in tiny:
            for method in METHODS:
                log(f"loop overhead: {spec.key} {method}")
                rows.append(measure_loop(spec, method, rounds=1 if quick else 2, iters=10 if quick else 20,
                                         window=5, tmp=tmp_path, device=device))
    return rows
