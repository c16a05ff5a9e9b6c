"""Where an iteration's time goes: torch.profiler over real ``train_step`` calls, split into phases.

The loop is not changed: for the duration of the profile, the functions an iteration calls are wrapped in
``torch.profiler.record_function`` labels — ``train_loop.draw_samples`` (SGLD from the buffer), the method's
objective (the forward passes), ``Tensor.backward``, ``SAM.first_step`` / ``second_step`` and the optimiser
step (torch labels it itself). The phase times are the labels' CPU totals; "other" is the rest of the
iteration (schedule step, zero_grad, statistics). The same is done for the plain classifier step, so the
numbers say which phase makes an iteration cost more or less than (K+1) plain steps.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import torch

from .common import ModelSpec, Row, log
from .trainstate import METHODS, build_state, config_for, iteration_inputs, plain_config

PHASES = ("sgld", "forward", "backward", "sam", "optimizer")
LABELS = {"jem": "JEM", "jempp": "JEM++", "sada_jem": "SADA-JEM"}


@contextlib.contextmanager
def _labelled(state):
    """Wrap the iteration's callees in record_function labels (undone on exit)."""
    from torch.profiler import record_function

    from jembench.reference_models import train_loop as tl

    def wrap(fn, label):
        def inner(*a, **k):
            with record_function(label):
                return fn(*a, **k)
        return inner

    saved_draw, saved_backward = tl.draw_samples, torch.Tensor.backward
    tl.draw_samples = wrap(saved_draw, "phase::sgld")
    torch.Tensor.backward = wrap(saved_backward, "phase::backward")
    if state.sam is not None:
        state.sam.first_step = wrap(state.sam.first_step, "phase::sam")
        state.sam.second_step = wrap(state.sam.second_step, "phase::sam")
    try:
        yield
    finally:
        tl.draw_samples, torch.Tensor.backward = saved_draw, saved_backward
        if state.sam is not None:
            del state.sam.first_step, state.sam.second_step


def profile_steps(state, objective, x, y, x_px, iters: int) -> tuple[dict[str, float], str]:
    """Per-phase milliseconds per iteration and the top operators table."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from jembench.reference_models import train_loop as tl

    def labelled_objective(step):
        with record_function("phase::forward"):
            return objective(step)

    for _ in range(2):  # warm-up
        tl.train_step(state, objective, x, y, x_px)
    with _labelled(state), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(iters):
            with record_function("phase::iteration"):
                tl.train_step(state, labelled_objective, x, y, x_px)
        wall = time.perf_counter() - start
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("phase::"):
            totals[event.key[7:]] = event.cpu_time_total / 1e3 / iters
        elif event.key.startswith("Optimizer.step#"):
            totals["optimizer"] = totals.get("optimizer", 0.0) + event.cpu_time_total / 1e3 / iters
    total = totals.pop("iteration")
    totals["other"] = max(0.0, total - sum(totals.get(p, 0.0) for p in PHASES))
    totals["iteration"] = total
    totals["wall_per_iteration"] = wall / iters * 1e3
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    return totals, table


def _shares(ms: dict[str, float]) -> str:
    return " + ".join(f"{p} {ms[p]:.1f}" for p in (*PHASES, "other") if ms.get(p))


def run(specs: list[ModelSpec], quick: bool, device: str) -> tuple[list[Row], dict[str, str]]:
    from jembench.reference_models import get_method

    from .trainstate import sam_passes

    rows: list[Row] = []
    tables: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="jembench-bench-prof-") as tmp:
        for spec in specs[:1] if quick else specs:
            iters = 5 if spec.key == "tiny" else 1
            # at WRN scale only SADA-JEM, the method whose target needs the evidence (saves ~40 s of the run)
            for method in METHODS if spec.key == "tiny" else ("sada_jem",):
                log(f"profile: {spec.key} {method}")
                cfg = config_for(spec, method, device=device)
                result = {}
                for name, c, objective in (("plain", plain_config(cfg), get_method("softmax").objective),
                                           ("iteration", cfg, get_method(method).objective)):
                    torch.manual_seed(0)
                    state = build_state(c, spec, Path(tmp) / f"{spec.key}-{method}-{name}", device)
                    x, y, x_px = iteration_inputs(c, spec, device)
                    result[name], tables[f"{spec.key}/{method}/{name}"] = profile_steps(state, objective, x, y, x_px,
                                                                                        iters)
                units = cfg.sgld.n_steps + sam_passes(cfg)
                it, plain = result["iteration"], result["plain"]
                rows.append(Row("profile", spec.label,
                                f"{LABELS[method]} iteration / ({units} x plain step), profiler CPU time",
                                it["iteration"] / (units * plain["iteration"]), "x", "", None,
                                f"iteration {it['iteration']:.0f} ms = {_shares(it)}; plain step "
                                f"{plain['iteration']:.1f} ms = {_shares(plain)}",
                                {"method": method, "iteration_ms": it, "plain_ms": plain, "units": units}))
    return rows, tables
