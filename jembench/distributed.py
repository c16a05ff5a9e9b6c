"""Thin helpers over ``torch.distributed`` for runs started by ``torchrun`` (DDP): nccl on GPUs, gloo on CPUs.

Outside torchrun every helper degrades to the single-process answer, so callers need no branches.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


#: how long a rank waits in a collective during evaluation: a suite that runs on rank 0 alone (generation at paper
#: scale: hours) keeps the other ranks in a barrier meanwhile (torchrun ends the group if a process dies)
EVAL_TIMEOUT_HOURS = 72.0


def init(device: str = "cpu", timeout_hours: float | None = None) -> None:
    """Join the process group torchrun set up (idempotent). Backend: nccl for CUDA devices, else gloo.
    ``timeout_hours``: the collectives' timeout (default: torch's)."""
    if launched_by_torchrun() and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        timeout = datetime.timedelta(hours=timeout_hours) if timeout_hours else None  # None: torch's default
        dist.init_process_group(backend=backend, timeout=timeout)
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank())


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    return dist.get_world_size() if is_active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def device_for_rank(device: str) -> str:
    """The device this process computes on: under torchrun an accelerator type (``cuda``) becomes this rank's
    own device, ``cuda:<local rank>``; the CPU and runs outside torchrun are unchanged.

    An explicit index under torchrun (``cuda:0``) is refused: it would put every rank on that one GPU (each rank's
    memory and compute on GPU 0, the others idle). Choose the GPUs with ``CUDA_VISIBLE_DEVICES`` instead."""
    kind, _, index = device.partition(":")
    if not launched_by_torchrun() or kind == "cpu":
        return device
    if index:
        from .errors import JembenchError

        raise JembenchError(f"--device {device} under torchrun would put all {os.environ['WORLD_SIZE']} processes on "
                            f"that one device; pass --device {kind} (each process takes the device of its "
                            f"LOCAL_RANK) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    return f"{kind}:{local_rank()}"


def collective_device(backend: str | None = None) -> torch.device:
    """Where a tensor must be for a collective of this process group: nccl reduces CUDA tensors only (on the
    rank's own GPU), gloo CPU tensors."""
    backend = backend if backend is not None else (dist.get_backend() if is_active() else "gloo")
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")


def barrier() -> None:
    if is_active():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (a one-element list outside DDP)."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside DDP)."""
    if not is_active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[T]) -> Sequence[T]:
    """The items this rank handles: every ``world_size``-th from ``rank`` (shards differ by at most one item;
    all of them outside DDP)."""
    return items[rank()::world_size()]


# ------------------------------------------------------------------------------- data-parallel training
def wrap_ddp(model: nn.Module, device: torch.device, image_shape: tuple) -> nn.Module:
    """DistributedDataParallel around ``model``. Parameters the forward never uses (the official layout's
    spare heads) are frozen first, so DDP needs no per-iteration unused-parameter search.

    ``broadcast_buffers=False``: DDP's default copies rank 0's batch-norm statistics to every rank before
    *every* forward — six times per SADA-JEM iteration (two SAM passes × three batches) — and throws the other
    ranks' updates away. Instead the training loop averages the statistics over the ranks once per iteration
    (:func:`average_buffers`), so every rank ends each iteration with the same network (checkpoints and exact
    resume rely on that) and the statistics see every rank's data. ``benchmarks/README.md`` has the timings."""
    from torch.nn.parallel import DistributedDataParallel

    was_training = model.training
    model.eval()  # a probe forward that leaves batch-norm statistics alone
    model(torch.zeros((2, *image_shape), device=device)).sum().backward()
    for p in model.parameters():
        if p.grad is None:
            p.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def average_buffers(model: nn.Module) -> None:
    """Replace every floating-point buffer (batch-norm running mean / variance) by its mean over the ranks, in
    one all-reduce. The running statistics are exponential moving averages, linear in the batch statistics, so
    the mean of the ranks' averages is the average the ranks' batch statistics together would give. Integer
    buffers (``num_batches_tracked``) advance alike on every rank and are left alone."""
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = all_reduce_mean(torch.cat([b.detach().flatten() for b in buffers]))
    offset = 0
    with torch.no_grad():
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def _all_reduce(t: torch.Tensor, op) -> torch.Tensor:
    """``t`` reduced over the ranks, returned on ``t``'s device: the collective itself runs on
    :func:`collective_device` (a CPU flag under nccl goes to the GPU and back, a GPU tensor under gloo to the CPU)."""
    where = collective_device()
    work = t.to(where, copy=True)
    dist.all_reduce(work, op=op)
    return work.to(t.device)


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    return _all_reduce(t, dist.ReduceOp.MAX)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    return _all_reduce(t, dist.ReduceOp.SUM) / world_size()


def any_rank(flag: bool) -> bool:
    """``flag`` on any rank (one all-reduce; every rank must call it at the same point); ``flag`` outside DDP."""
    if not is_active():
        return flag
    return bool(all_reduce_max(torch.tensor([float(flag)])).item() > 0)


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0, None on the others (one gather, not an all-gather: a
    checkpoint's buffer shards travel to the rank that writes them only); ``[obj]`` outside DDP."""
    if not is_active():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def cleanup() -> None:
    if is_active():
        dist.destroy_process_group()
