"""One seed drives torch, numpy and Python's RNGs; their full states go into checkpoints for exact resume.

An accelerator has its own random stream (``torch.rand(..., device="cuda")`` does not draw from the CPU's), so a
state also holds the stream of the one device the run computes on — not every visible GPU's: a run saved on a
machine with eight GPUs then resumes on a machine with one (``torch.cuda.set_rng_state_all`` of eight states
raises there), and a run on ``cuda:3`` continues its stream on ``cuda:0``. A run saved on one kind of device and
resumed on another (CPU → GPU) cannot continue the device stream: :func:`set_rng_state` says so (returns False)
and the caller warns that the continuation is not bit-identical.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from . import devices


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (``torch.manual_seed`` seeds every accelerator's too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(device: str | torch.device | None = None) -> dict:
    """All RNG states as tensors / plain values, so the checkpoint loads with ``weights_only=True``: Python's,
    NumPy's, torch's CPU stream and, for an accelerator ``device``, that device's stream (``device``:
    ``{"type": "cuda", "state": ...}``)."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple), "legacy=True gives numpy's (kind, keys, pos, has_gauss, cached) tuple"
    kind, keys, pos, has_gauss, cached = legacy
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and devices.is_accelerator(device):
        state["device"] = {"type": devices.as_device(device).type, "state": devices.rng_state(device)}
    return state


def set_rng_state(state: dict, device: str | torch.device | None = None) -> bool:
    """Restore ``state``; the saved device stream goes to ``device`` (whatever its index). Returns whether every
    stream the run uses was restored: False when the run computes on an accelerator whose stream the state does
    not hold (saved on the CPU or on another device type).

    Older checkpoints hold every visible GPU's state (``cuda``: a list): the entry of ``device``'s index is used
    when there is one, else the first — never ``set_rng_state_all``, which raises when fewer GPUs are visible
    than states were saved."""
    random.setstate(_to_tuple(state["python"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if device is None or not devices.is_accelerator(device):
        return True
    dev = devices.as_device(device)
    saved = state.get("device")
    if isinstance(saved, dict) and saved.get("type") == dev.type:
        devices.set_rng_state(dev, saved["state"])
        return True
    legacy = state.get(dev.type)  # "cuda": [one state per visible GPU]
    if isinstance(legacy, (list, tuple)) and legacy:
        index = devices.index_of(dev)
        devices.set_rng_state(dev, legacy[index] if index < len(legacy) else legacy[0])
        return True
    return False


def _to_tuple(value):
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_to_tuple(v) for v in value)
    return value
