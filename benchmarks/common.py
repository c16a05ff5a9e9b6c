"""What every benchmark family shares: rows, interleaved timing, model specs, machine load."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg"


@dataclass
class Row:
    """One line of the table. ``value`` is a ratio (``unit`` "x"), a throughput or a memory figure."""

    family: str
    model: str
    what: str
    value: float | None
    unit: str = "x"
    target: str = ""  # e.g. "<= 1.05"; empty = informational
    holds: bool | None = None
    detail: str = ""  # numerator / denominator in absolute units, repeats
    data: dict[str, Any] = field(default_factory=dict)  # raw numbers for the JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(value: float | None, target: float | None) -> bool | None:
    """``value <= target`` (None when either is missing)."""
    if value is None or target is None:
        return None
    return value <= target


def median(values: list[float]) -> float:
    return statistics.median(values)


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # not on every platform
        return (float("nan"),) * 3


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, ``repeats`` times, interleaved (A B, B A, A B, ...) after
    ``warmup`` untimed rounds, so drifting load affects every function alike. ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before each clock read."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for r in range(repeats):
        for name, fn in items if r % 2 == 0 else items[::-1]:
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(num: list[float], den: list[float], den_scale: float = 1.0) -> float:
    """Median over repeats of num_i / (den_scale · den_i): each pair was measured back to back."""
    return median([n / (den_scale * d) for n, d in zip(num, den)])


@dataclass(frozen=True)
class ModelSpec:
    """A benchmark network: the tiny presets' WRN-10-1 on 8×8 digits, or a WRN-16-4 on 32×32 images."""

    key: str
    label: str
    depth: int
    width: int
    dataset: str  # a jembench dataset name
    image_shape: tuple[int, int, int]
    batch_size: int  # labelled batch = SGLD chains per step (the tiny presets use 64)


def model_specs(wrn_batch: int, cifar: Path | None) -> dict[str, ModelSpec]:
    cifar_name = f"folder:{cifar}" if cifar is not None else "digits"
    return {
        "tiny": ModelSpec("tiny", "tiny (WRN-10-1, 1x8x8, B=64)", 10, 1, "digits", (1, 8, 8), 64),
        "wrn16-4": ModelSpec("wrn16-4", f"WRN-16-4 (3x32x32, B={wrn_batch})", 16, 4, cifar_name, (3, 32, 32),
                             wrn_batch),
    }


def find_cifar(explicit: str | None) -> Path | None:
    """The 32×32 ImageFolder copy of CIFAR-10 used for WRN-16-4 batches and the suite runs."""
    for candidate in ([Path(explicit)] if explicit else []) + [SHARED_CIFAR]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate.resolve()
    return None


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
