"""Defaults shared by the CLI and the library, in a module light enough to import at CLI start-up."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATASET = "digits"
DATA_ROOT_ENV = "JEMBENCH_DATA"


def data_root() -> str:
    """The folder holding torchvision datasets when none is given: ``$JEMBENCH_DATA``, else ``data``.
    Read at call time, so every command (train, eval, demo, datasets) and the library honour the variable."""
    return os.environ.get(DATA_ROOT_ENV) or "data"


def data_folder(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A data folder that a protocol file names (an OOD protocol's ``folder = "svhn-test-10k"``): an absolute path
    as written (``~`` expanded), a relative one under the data root — ``root`` (``--data-root``), else
    ``$JEMBENCH_DATA``, else ``data`` — never under whatever folder the command happens to run in, so a shipped
    preset finds its data from any folder once the data root is set."""
    folder = Path(path).expanduser()
    return folder if folder.is_absolute() else Path(root or data_root()).expanduser() / folder
