"""Memory bounds checked *before* allocating: a request that cannot fit is one line, not an out-of-memory kill.

A careless option (``--buffer-size 10**12``) or a hostile checkpoint (architecture settings that describe a
network of terabytes) would otherwise end in a C++ allocator traceback — or, worse, in the kernel's OOM killer
taking the machine's other jobs with it. :func:`require` compares the bytes a tensor will take with what this
process can still get: ``MemAvailable`` of ``/proc/meminfo``, capped by the cgroup (v2 ``memory.max`` / v1
``memory.limit_in_bytes``) limit less its current use. Where neither can be read (not Linux), nothing is refused.

Hand-written: psutil would give ``virtual_memory().available`` but not the cgroup limit, and is not a dependency.
"""

from __future__ import annotations

from pathlib import Path

from .errors import JembenchError


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Bytes this process can still allocate (see the module docstring), or None when unknown."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, used = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 2**60:  # "max" / an unlimited v1 value
            room = max(0, limit - (used or 0))
            free = room if free is None else min(free, room)
            break
    return free


def require(nbytes: int, what: str, fix: str, device=None) -> None:
    """Raise a one-line :class:`JembenchError` when ``nbytes`` (for ``what``) exceed the memory free where the
    tensor will live: the accelerator's own memory for a GPU ``device`` (:func:`jembench.devices.free_memory`),
    else :func:`available_bytes` of the host."""
    where, free = "memory", None
    if device is not None:
        from . import devices

        if devices.is_accelerator(device):
            where, free = f"{device} memory", devices.free_memory(device)
    if free is None:
        where, free = "memory", available_bytes()
    if free is not None and nbytes > free:
        raise JembenchError(f"{what} needs {_human(nbytes)} but only {_human(free)} of {where} is available; {fix}")


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def require_buffer(n_images: int, image_shape: tuple[int, ...], device=None) -> None:
    """A replay buffer of ``n_images`` float32 images of ``image_shape`` (+ int64 labels) must fit on ``device``
    (the host when None or the CPU)."""
    per_image = 4 * _prod(image_shape) + 8
    require(n_images * per_image, f"a replay buffer of {n_images:,} images", "lower --buffer-size", device)


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out
