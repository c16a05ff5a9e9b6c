"""How many CPU threads a piece of work runs on, and what the record says about it.

Why: an attack unit of the tiny robustness protocol attacks 10 digits images through K = 10 SGLD steps; every
operation in it is a few microseconds of arithmetic on a small batch. With torch's OpenMP pool of 2 threads on a
2-core machine shared with two other busy processes, each of those operations ends in a barrier where one thread
waits for the other, which is not running: OpenMP spin-waits (libgomp spins ~300,000 times before it sleeps), so
the unit burns its time slices spinning. Measured on this machine at load average ≈ 6, the same unit
(k10/pgd-linf/b0 of ``robustness-tiny``): 10-11 s wall (4 s CPU) on 1 thread, 124-197 s wall (61-81 s CPU) on
2 threads — the 20-50× slowdown the issue reports. On 1 thread there is no barrier to wait at.

The rules (:func:`choose`):

* the process's torch thread count (``OMP_NUM_THREADS``, ``torch.set_num_threads`` or torch's default) is the
  budget, never exceeded;
* ``JEMBENCH_THREADS=N`` runs every unit on N threads (at most the budget): the user measured and chose;
* otherwise a unit whose network forward costs less than :data:`SMALL_WORK_FLOPS` per call (counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` on one image, times the images per call) runs on one
  thread, a larger one on the budget. The tiny presets' WRN-10-1 on 8×8 digits is ≈ 2.4 MFLOP per image, so
  every tiny unit is small; a WRN-28-10 on 32×32 images (≈ 10.5 GFLOP per image) never is. The threshold
  (1 GFLOP per forward call) puts the tiny presets' work (at most ≈ 0.6 GFLOP per call) on one thread and
  paper-size work on the budget; whether one thread is as fast as two below it on an idle machine is what
  ``python -m benchmarks --only threads`` checks (rows "1 thread / N threads", target ≤ 1.10) — it could not be
  measured idle here, so re-measure it on yours.

Only CPU work is scoped (on a GPU the CPU threads launch kernels). :func:`scoped` sets torch's count and, through
:mod:`threadpoolctl`, the OpenMP / BLAS pools of the process (NumPy's OpenBLAS included: foolbox's attacks run
NumPy) for the duration of a block, and restores them afterwards. The counts used are collected per evaluation
(:func:`tracking`) and written into the record's ``runtime`` block (:func:`runtime_block`), together with the
OpenMP wait policy, which the CLI sets to PASSIVE before torch starts (:func:`passive_openmp`) unless the user
set one.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: forward FLOPs per call below which a unit runs on one thread (see the module docstring)
SMALL_WORK_FLOPS = 1e9
#: the user's fixed thread count for every unit
THREADS_ENV = "JEMBENCH_THREADS"
#: the OpenMP variables that decide how idle threads wait (libgomp, LLVM / Intel OpenMP)
WAIT_POLICY_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_STATE: dict[str, Any] = {"wait_policy_by": None, "used": None}


def passive_openmp() -> bool:
    """Make idle OpenMP threads sleep instead of spin (``OMP_WAIT_POLICY=PASSIVE``) — the CLI calls this first,
    because the OpenMP runtime reads the variable once, when torch loads it. Measured on the unit of the module
    docstring with 2 threads under the same load: 10-11 s wall (5 s CPU) with PASSIVE against 124-197 s
    without. Left alone (returns False) when the user set any of :data:`WAIT_POLICY_ENV` or torch is already
    loaded (too late to take effect)."""
    if any(name in os.environ for name in WAIT_POLICY_ENV) or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    _STATE["wait_policy_by"] = "jembench"
    return True


def fixed_threads() -> int | None:
    """``JEMBENCH_THREADS`` as a positive int, or None (unset, empty, or not a positive integer: ignored)."""
    value = os.environ.get(THREADS_ENV, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def forward_flops(model: torch.nn.Module, image_shape: tuple[int, ...], device: Any = "cpu") -> float:
    """FLOPs of one forward pass of ``model`` on one image (torch's own counter; no gradient, nothing kept).
    Convolutions and matrix products dominate and scale linearly with the batch. 0 off the CPU (not needed
    there); infinity when the network cannot be counted (an operation the counter does not know fails it),
    which leaves the work on the budget — the behaviour before the rule."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if not _on_cpu(device):
        return 0.0
    model = getattr(model, "_orig_mod", model)  # a torch.compile'd module: count its eager original (no compile)
    was_training = model.training
    model.eval()  # one image: batch norm in train mode would refuse a batch of one
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros((1, *image_shape), device=device))
        return float(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - any failure to count means: do not guess, keep the budget
        return math.inf
    finally:
        model.train(was_training)


def _on_cpu(device: Any) -> bool:
    return str(device).partition(":")[0] == "cpu"


def choose(flops_per_call: float, device: Any = "cpu") -> int:
    """The thread count for a unit whose forward calls cost ``flops_per_call`` (the rules of the module
    docstring); on a non-CPU device the budget itself."""
    import torch

    budget = torch.get_num_threads()
    if not _on_cpu(device):
        return budget
    fixed = fixed_threads()
    if fixed is not None:
        return min(fixed, budget)
    return 1 if flops_per_call < SMALL_WORK_FLOPS else budget


def for_model(model: torch.nn.Module, image_shape: tuple[int, ...], images_per_call: int,
              device: Any = "cpu") -> int:
    """:func:`choose` for forward calls of ``model`` on ``images_per_call`` images of ``image_shape``."""
    return choose(forward_flops(model, image_shape, device) * max(1, images_per_call), device)


@contextlib.contextmanager
def scoped(n: int, work: str = "") -> Iterator[int]:
    """Run the block on ``n`` CPU threads (torch and, via threadpoolctl, the process's OpenMP / BLAS pools),
    then restore the counts as they were. ``work`` names the work in the record's ``runtime.work_threads``
    when an evaluation is being tracked (:func:`tracking`)."""
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    if work and _STATE["used"] is not None:
        _STATE["used"][work] = n
    if n == previous:
        yield n
        return
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def tracking() -> Iterator[dict[str, int]]:
    """Collect, for the duration of the block, the thread count each scoped piece of work ran on."""
    saved = _STATE["used"]
    used: dict[str, int] = {}
    _STATE["used"] = used
    try:
        yield used
    finally:
        _STATE["used"] = saved


def runtime_block(used: dict[str, int] | None = None) -> dict[str, Any]:
    """What a record says about the threads it ran on: torch's thread count (the budget), the count each
    scoped piece of work used, the rule that chose it, and the OpenMP wait policy (who set it)."""
    import torch

    fixed = fixed_threads()
    policy = next((f"{k}={os.environ[k]}" for k in WAIT_POLICY_ENV if k in os.environ), None)
    return {"torch_threads": torch.get_num_threads(), "work_threads": dict(used or {}),
            "thread_rule": (f"{THREADS_ENV}={fixed}" if fixed is not None
                            else f"1 thread below {SMALL_WORK_FLOPS:.0e} forward FLOPs per call"),
            "openmp_wait": policy or "runtime default",
            "openmp_wait_set_by": (_STATE["wait_policy_by"] or "user") if policy else None}
