"""glibc allocator setting (:func:`jembench.runtime.keep_freed_memory`) on / off: time per SGLD step.

The setting is process-wide and only takes effect for memory allocated after it, so each side runs in its own
fresh interpreter (``python -m benchmarks.allocator on|off STEPS THREADS``, which prints its seconds per step),
the two alternating; the row is the median of the paired ratios on / off (< 1: the setting helps). Network: the
side-by-side family's WRN-10-2 without normalisation, 64 chains of 3×32×32, JEM's sampler (eval mode, σ = .01),
channels-last as the trainer runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from .common import Row, fmt_ms, log, median, paired_ratio

STEPS = 10


def _child(mode: str, steps: int, threads: int) -> None:
    from jembench.runtime import keep_freed_memory

    tuned = keep_freed_memory() if mode == "on" else False
    import torch

    from jembench.sampling import SGLDConfig, sgld
    from jembench.reference_models.wideresnet import wide_resnet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = wide_resnet(10, 2, 10, 3, None).eval().to(memory_format=torch.channels_last)
    x0 = (torch.rand(64, 3, 32, 32) * 2 - 1).contiguous(memory_format=torch.channels_last)
    cfg = SGLDConfig(n_steps=steps, step_size=1.0, noise=0.01)
    sgld(model, x0, SGLDConfig(n_steps=2, step_size=1.0, noise=0.01))  # warm-up: first-call costs
    t = time.perf_counter()
    sgld(model, x0, cfg)
    print(json.dumps({"mode": mode, "tuned": tuned, "s_per_step": (time.perf_counter() - t) / steps}))


def _run_child(mode: str, steps: int, threads: int) -> dict:
    from jembench.runtime import GLIBC_ALLOCATOR_ENV, NO_ALLOCATOR_TUNING_ENV

    env = {k: v for k, v in os.environ.items() if k not in (*GLIBC_ALLOCATOR_ENV, NO_ALLOCATOR_TUNING_ENV)}
    env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-m", "benchmarks.allocator", mode, str(steps), str(threads)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool, threads: int) -> list[Row]:
    pairs = 2 if quick else 5
    steps = 4 if quick else STEPS
    on: list[float] = []
    off: list[float] = []
    tuned = False
    for i in range(pairs):
        log(f"allocator: pair {i + 1}/{pairs}")
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for mode in order:
            result = _run_child(mode, steps, threads)
            (on if mode == "on" else off).append(result["s_per_step"])
            tuned = tuned or (mode == "on" and result["tuned"])
    ratio = paired_ratio(on, off)
    return [Row("sgld", "WRN-10-2 (3x32x32)", "SGLD step, allocator kept (jembench default) / glibc defaults",
                ratio, "x", "", None,
                f"{fmt_ms(median(on))} vs {fmt_ms(median(off))} per step; K={steps}, B=64, {pairs} process pairs, "
                f"{threads} thread(s); setting {'in force' if tuned else 'NOT available here (not glibc?)'}",
                {"on_s": on, "off_s": off, "steps": steps, "threads": threads, "tuned": tuned})]


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
