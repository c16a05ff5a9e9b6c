"""Defaults shared by the CLI and the library, in a module light enough to import at CLI start-up."""

from __future__ import annotations

import os

DEFAULT_DATASET = "digits"
DATA_ROOT_ENV = "JEMBENCH_DATA"


def data_root() -> str:
    """The folder holding torchvision datasets when none is given: ``$JEMBENCH_DATA``, else ``data``.
    Read at call time, so every command (train, eval, demo, datasets) and the library honour the variable."""
    return os.environ.get(DATA_ROOT_ENV) or "data"
