"""Helpers shared by test_calibration.py, test_ood.py and test_generation.py (no tests in here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from jembench.models import save_checkpoint
from jembench.protocols import Protocol
from jembench.sampling import UniformInit
from jembench.reference_models.wideresnet import wide_resnet

REPO = Path(__file__).resolve().parent.parent


def make_wrn_checkpoint(path: Path, *, in_channels: int = 1, n_classes: int = 10, image_size: int = 8,
                        dataset: str = "digits", buffer_n: int | None = 100, init_state: dict | None = None,
                        seed: int = 0) -> Path:
    """A randomly initialised WRN-10-1 checkpoint in our format (with a uniform replay buffer unless
    ``buffer_n`` is None)."""
    torch.manual_seed(seed)
    kwargs = dict(depth=10, widen_factor=1, n_classes=n_classes, in_channels=in_channels)
    shape = (in_channels, image_size, image_size)
    buffer = None
    if buffer_n is not None:
        buffer = {"images": torch.rand(buffer_n, *shape) * 2 - 1, "labels": torch.arange(buffer_n) % n_classes,
                  "init": init_state or UniformInit(shape).state_dict(), "reinit_freq": 0.05}
    save_checkpoint(path, arch="wrn", arch_kwargs=kwargs, model=wide_resnet(**kwargs), method="jem", dataset=dataset,
                    n_classes=n_classes, image_shape=shape, config={}, buffer=buffer)
    return path


def protocol(suite: str, **table) -> Protocol:
    """An in-memory protocol of ``suite``: its defaults with ``table`` on top (resolved and checked)."""
    return Protocol.from_table(suite, table, name=f"{suite}-test", path=f"<test {suite}>")


def run_cli(*args: str, env: dict | None = None, timeout: int = 120, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """``python -m jembench ARGS`` in a subprocess from the repository root (or ``cwd``)."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))  # tiny models: no intra-op thread contention
    return subprocess.run([sys.executable, "-m", "jembench", *map(str, args)], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write_record_json(folder: Path, name: str, record: dict) -> Path:
    """Write ``record`` as ``folder/name`` (JSON), creating the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


#: published numbers whose protocols (still being written, or official ones a tiny test cannot run) are replaced by
#: shipped ones, so that records under a shipped protocol can match them
SHIPPED_STAND_INS = {"accuracy-sadajem-official": "accuracy", "generation-sadajem-official": "generation",
                     "ood-sadajem-official": "ood"}


def published_needing(folder: Path, renames: dict[str, str] | None = None) -> Path:
    """A copy of the shipped published numbers (in ``folder/published``) whose rows need the shipped protocols
    ``renames`` maps their protocol to (default :data:`SHIPPED_STAND_INS`), for testing protocol matching with
    records measured under shipped protocols."""
    from jembench.resources import published_dir

    out = folder / "published"
    out.mkdir(parents=True)
    for src in published_dir().glob("*.csv"):
        text = src.read_text(encoding="utf-8")
        for old, new in (SHIPPED_STAND_INS if renames is None else renames).items():
            text = text.replace(f",{old},", f",{new},")
        (out / src.name).write_text(text, encoding="utf-8")
    return out

