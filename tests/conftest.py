"""Shared fixtures: tiny models trained once per test session on the embedded digits dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import jembench.reference_models.wideresnet  # noqa: F401  (registers the WRN architecture)

REPO = Path(__file__).resolve().parent.parent
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg"

torch.set_num_threads(1)  # tiny models: one thread is as fast, and robust to a shared CPU


FIXTURE_ITERS = 150  # iterations of the session's tiny checkpoints (keeps the default suite within its budget)


def _train_tiny(method: str, out: Path, **overrides) -> Path:
    from jembench.reference_models.config import resolve_config
    from jembench.reference_models.train_loop import train

    cfg = resolve_config(method, "tiny", {"dataset": "digits", "seed": 0, **overrides})
    return train(cfg, out, progress=False)


@pytest.fixture(scope="session")
def tiny_jem_checkpoint(tmp_path_factory) -> Path:
    """A JEM (WRN-10-1) trained on digits with the tiny preset for 150 iterations (a third of the preset's 440:
    a real, if small, hybrid model; the suite's tests need a trained model, not the demo's best one)."""
    return _train_tiny("jem", tmp_path_factory.mktemp("jem"), max_iters=FIXTURE_ITERS)


@pytest.fixture(scope="session")
def demo_jem_checkpoint(tmp_path_factory) -> Path:
    """The JEM ``jembench demo`` trains (the whole tiny preset): what results/runs/demo's baseline was made from."""
    return _train_tiny("jem", tmp_path_factory.mktemp("demo-jem"))


@pytest.fixture(scope="session")
def tiny_softmax_checkpoint(tmp_path_factory) -> Path:
    """The softmax baseline with the same network and budget as ``tiny_jem_checkpoint``."""
    return _train_tiny("softmax", tmp_path_factory.mktemp("softmax"), max_iters=FIXTURE_ITERS)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``python -m jembench ARGS`` in a subprocess and return the completed process (text output)."""
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "jembench", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=timeout, env=full_env)


@pytest.fixture
def cli():
    return run_cli
