"""Process-wide settings for compute commands (train, eval, demo, bench), and the device-name check of settings."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Set to 1 to leave glibc's allocator at its defaults (see :func:`keep_freed_memory`).
NO_ALLOCATOR_TUNING_ENV = "JEMBENCH_NO_ALLOCATOR_TUNING"
#: glibc's own variables for the same two settings: when the user sets either, jembench leaves the allocator alone.
GLIBC_ALLOCATOR_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
#: glibc's ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2); mallopt refuses larger values.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2**31 - 1  # an int (mallopt's argument); 2 GiB of free heap kept before any is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h
_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed activation-sized blocks for reuse instead of returning them to the kernel.

    Why: every SGLD step and training pass allocates the same activations again (8 MB each for a WRN-10-2 on 64
    images). With glibc's defaults, blocks of this size are mmap'd and unmapped (or trimmed off the heap) each time,
    so every step pays page faults and the kernel's zeroing of fresh pages. Raising the mmap threshold to its
    maximum (32 MiB) and the trim threshold to 2 GiB keeps them in the heap: measured 0.80-0.90x the time per SGLD
    step of a WRN-10-2 on 1 CPU thread (``python -m benchmarks --only sgld``, row "allocator"; 0.81x on 2), with
    the same arithmetic — only where the memory comes from changes. The price is that the process's resident
    memory stays at its peak instead of shrinking between steps. This is what ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_`` or an LD_PRELOADed jemalloc / tcmalloc do; it is done here so that a plain
    ``jembench`` command gets it. Skipped (returns False) on non-glibc systems, when either ``MALLOC_*`` variable
    is set (the user chose), or when ``JEMBENCH_NO_ALLOCATOR_TUNING=1``. Idempotent; returns whether the
    setting is in force."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get(NO_ALLOCATOR_TUNING_ENV, "") not in ("", "0"):
        return False
    if any(k in os.environ for k in GLIBC_ALLOCATOR_ENV):
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _tuned = False
    return _tuned


def configure_torch() -> None:
    """Flush denormal floats to zero: SGLD chains and attacks through refinement drive activations into the
    denormal range, where CPU arithmetic is several times slower (measured 3x on a K=10 refinement); the
    change in results is below float32 resolution of the values that matter. Also :func:`keep_freed_memory`."""
    import torch

    keep_freed_memory()
    torch.set_flush_denormal(True)


@contextlib.contextmanager
def denormals_kept() -> Iterator[None]:
    """Run the block with denormal floats kept (no flush-to-zero), then put the process's setting back: training's
    arithmetic, the official code's. :func:`configure_torch` flushes them for evaluation (``eval``, ``demo``,
    ``evaluate()``); a training in such a process — the demo's, or ``jembench.train`` after ``evaluate`` — would
    otherwise train other weights than ``jembench train`` in a fresh process, and carry another recipe
    (:mod:`jembench.recipe`, field ``denormals``). torch has no getter: the state is probed
    (:func:`jembench.recipe.denormals`)."""
    import torch

    from .recipe import denormals

    flushed = denormals() == "flush"
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushed)


def device_name(value: object) -> str:
    """A torch device name, checked as far as it can be without importing torch (the settings' ``device``
    check): a non-empty string, and not ``meta`` — a device without data, on which nothing can be computed.
    :func:`require_device` checks the rest once torch is loaded."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a torch device name such as cpu, cuda, cuda:1, mps")
    if value.strip().partition(":")[0] == "meta":
        raise ValueError("is a device without data (nothing can be computed on it); use cpu, cuda, cuda:1 or mps")
    return value.strip()


def require_device(device: str):
    """``torch.device(device)``, or a one-line :class:`~jembench.errors.JembenchError` when the name is malformed
    or the device is not there (``--device cuda`` on a machine without a GPU) — checked before anything is
    written."""
    import torch

    from .errors import JembenchError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise JembenchError(f"--device {device!r} is not a torch device ({exc}); use cpu, cuda, cuda:1, mps") from None
    if dev.type not in ("cpu", "cuda", "mps") and not _registered_backend(dev.type):
        # meta holds no data; xla, hpu, ... are not supported
        raise JembenchError(f"--device {device}: jembench runs on cpu, cuda or mps, not on {dev.type!r} "
                            f"devices; use --device cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise JembenchError(f"--device {device} requested but no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise JembenchError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; pick "
                            f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise JembenchError(f"--device {device} requested but MPS is not available here; use --device cpu")
    return dev


def _registered_backend(kind: str) -> bool:
    """Whether ``kind`` is the PrivateUse1 backend of this process, registered with a device module that says it
    is available (an out-of-tree accelerator — or the fake accelerator of jembench's tests, tests/fake_device.py)."""
    import torch

    if kind != torch._C._get_privateuse1_backend_name() or kind == "privateuseone":
        return False
    module = getattr(torch, kind, None)
    return bool(module is not None and getattr(module, "is_available", lambda: False)())
