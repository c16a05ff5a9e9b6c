"""Thin helpers over ``torch.distributed`` for runs started by ``torchrun`` (DDP): nccl on GPUs, gloo on CPUs.

Outside torchrun every helper degrades to the single-process answer, so callers need no branches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init(device: str = "cpu") -> None:
    """Join the process group torchrun set up (idempotent). Backend: nccl for CUDA devices, else gloo."""
    if launched_by_torchrun() and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
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
    """``cuda`` → ``cuda:<local rank>`` under torchrun; other devices unchanged."""
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{local_rank()}"
    return device


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


def shard(items: Sequence[T]) -> Sequence[T]:
    """The items this rank handles: every ``world_size``-th from ``rank`` (shards differ by at most one item;
    all of them outside DDP)."""
    return items[rank()::world_size()]


def cleanup() -> None:
    if is_active():
        dist.destroy_process_group()
