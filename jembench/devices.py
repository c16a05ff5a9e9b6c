"""Device helpers that work for every torch device type — ``cpu``, ``cuda``, ``mps``, ``xpu`` or a PrivateUse1
backend — through the device's own module (``torch.cuda``, ``torch.mps``, ...; :func:`torch.get_device_module`),
as ``torch.random.fork_rng`` does. One home for what the rest of jembench asks of a device: its random stream
(fork, save, restore), its name, its free and peak memory, whether host memory is pinned for it, a scope that
makes it the current device (libraries that call ``.cuda()`` — torch-fidelity — then use it, not GPU 0), and
what a record says about it (:func:`describe`).
"""

from __future__ import annotations

import contextlib
import platform
from typing import Any, Iterator

import torch

HOST_TYPES = ("cpu", "meta")


def as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def is_accelerator(device: str | torch.device) -> bool:
    """True for a device with its own memory and random stream (cuda, mps, xpu, a PrivateUse1 backend)."""
    return as_device(device).type not in HOST_TYPES


def index_of(device: str | torch.device) -> int:
    """The device's index (``cuda`` → the current device's index; the CPU → 0)."""
    dev = as_device(device)
    if dev.index is not None:
        return dev.index
    if not is_accelerator(dev):
        return 0
    module = torch.get_device_module(dev.type)
    return int(module.current_device()) if hasattr(module, "current_device") else 0


def module_of(device: str | torch.device):
    """``torch.cuda`` / ``torch.mps`` / ... for an accelerator; None for the CPU."""
    dev = as_device(device)
    return torch.get_device_module(dev.type) if is_accelerator(dev) else None


@contextlib.contextmanager
def fork_rng(device: str | torch.device) -> Iterator[None]:
    """Run a block on forked random streams: the CPU's and, for an accelerator, this one device's — so a block
    that seeds and draws leaves every stream the caller uses as it was (``torch.random.fork_rng`` restricted to
    the device in use; forking every GPU would initialise them all)."""
    dev = as_device(device)
    if is_accelerator(dev):
        with torch.random.fork_rng(devices=[index_of(dev)], device_type=dev.type):
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            yield


def rng_state(device: str | torch.device) -> torch.Tensor | None:
    """The random state of this one accelerator device (None for the CPU: :mod:`jembench.seeding` has it)."""
    module = module_of(device)
    return None if module is None else module.get_rng_state(index_of(device))


def set_rng_state(device: str | torch.device, state: torch.Tensor) -> None:
    module = module_of(device)
    if module is not None:
        module.set_rng_state(state, index_of(device))


def stream_state(device: str | torch.device) -> torch.Tensor:
    """The state of the random stream that draws tensors on ``device``: the CPU generator's for the CPU, the
    device's own otherwise."""
    state = rng_state(device)
    return torch.get_rng_state() if state is None else state


def set_stream_state(device: str | torch.device, state: torch.Tensor) -> None:
    if is_accelerator(device):
        set_rng_state(device, state)
    else:
        torch.set_rng_state(state)


def synchronize(device: str | torch.device) -> None:
    """Wait for the device's queued work (timing, peak memory); nothing on the CPU."""
    module = module_of(device)
    if module is not None and hasattr(module, "synchronize"):
        module.synchronize(as_device(device))


def name(device: str | torch.device) -> str:
    """A human name of the hardware: the GPU's product name, or the CPU's processor string."""
    module = module_of(device)
    if module is None:
        return platform.processor() or platform.machine() or "cpu"
    getter = getattr(module, "get_device_name", None)
    return str(getter(index_of(device))) if getter is not None else as_device(device).type


def free_memory(device: str | torch.device) -> int | None:
    """Bytes free on an accelerator (``mem_get_info``), or None (the CPU, or a device that cannot tell):
    :mod:`jembench.memory` then checks host memory."""
    module = module_of(device)
    getter = getattr(module, "mem_get_info", None) if module is not None else None
    if getter is None:
        return None
    try:
        return int(getter(index_of(device))[0])
    except (RuntimeError, AssertionError):
        return None


def reset_peak_memory(device: str | torch.device) -> None:
    module = module_of(device)
    if module is not None and hasattr(module, "reset_peak_memory_stats"):
        module.reset_peak_memory_stats(index_of(device))


def peak_memory(device: str | torch.device) -> int | None:
    """Peak bytes allocated by tensors on an accelerator since :func:`reset_peak_memory` (None on the CPU)."""
    module = module_of(device)
    if module is None or not hasattr(module, "max_memory_allocated"):
        return None
    return int(module.max_memory_allocated(index_of(device)))


def pins_memory(device: str | torch.device) -> bool:
    """Whether data loaders should pin host memory for ``device``: on CUDA, copies from pinned memory are
    asynchronous (``non_blocking=True`` overlaps them with compute); from pageable memory they are not."""
    return as_device(device).type == "cuda"


def to_device(x: torch.Tensor, device: torch.device, **kwargs: Any) -> torch.Tensor:
    """``x.to(device)``, asynchronous exactly when it can be: ``non_blocking`` only for pinned host memory (from
    pageable memory CUDA copies synchronously anyway, and a ``non_blocking`` copy *to* the host would hand back
    a tensor the device may still be writing)."""
    return x.to(device, non_blocking=x.device.type == "cpu" and x.is_pinned(), **kwargs)


def current(device: str | torch.device):
    """A context making ``device`` the current one of its type (``torch.cuda.device(1)``), for libraries that
    move work with ``.cuda()``; a no-op context for the CPU and for devices without the notion."""
    dev = as_device(device)
    module = module_of(dev)
    if module is None or not hasattr(module, "device") or dev.index is None:
        return contextlib.nullcontext()
    return module.device(dev.index)


def describe(device: str | torch.device) -> dict[str, Any]:
    """What a record says about where it ran: the device, the hardware's name and the numerical settings in
    force (:func:`jembench.precision.settings`)."""
    from . import precision

    dev = as_device(device)
    return {"device": str(dev), "device_name": name(dev), **precision.settings(dev)}
