"""jembench's package data: the protocol files and the published numbers, and where jembench itself lives.

The files have one home each in the repository — ``suites/`` (protocols and default check tolerances, TOML) and
``results/published/`` (the papers' numbers, CSV) — and ship inside the package as the subpackages
``jembench.resources.protocols`` and ``jembench.resources.published`` (``pyproject.toml`` maps those folders
there with ``package-dir``). They are read through :mod:`importlib.resources`, so a wheel, an editable install and
a plain source checkout (``PYTHONPATH=.``) all find them; nothing depends on the current directory.
"""

from __future__ import annotations

import importlib.resources
import re
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # .../jembench
_FOLDERS = {"protocols": "suites", "published": "results/published"}  # subpackage -> folder in the checkout


def is_jembench_checkout(root: Path) -> bool:
    """Whether ``root`` is a git checkout of jembench itself: it holds ``.git``, the ``jembench/`` package and a
    ``pyproject.toml`` naming the project ``jembench``."""
    pyproject = root / "pyproject.toml"
    if not ((root / ".git").exists() and (root / "jembench" / "__init__.py").is_file() and pyproject.is_file()):
        return False
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r'(?m)^name\s*=\s*"jembench"\s*$', text) is not None


@lru_cache(maxsize=None)
def source_checkout() -> Path | None:
    """The root of the git checkout of jembench that this package was imported from, else None — never the
    user's project that an installed jembench happens to sit in."""
    root = _PACKAGE.parent
    return root if is_jembench_checkout(root) else None


def folder(kind: str) -> Path:
    """The folder of package data ``kind`` (``protocols`` or ``published``) as a filesystem path: in a source
    checkout its own copy (even when another checkout's editable install is on the path), else the installed
    package data (:func:`importlib.resources.files`)."""
    root = source_checkout()
    if root is not None:
        return root / _FOLDERS[kind]
    try:
        return Path(str(importlib.resources.files(f"{__name__}.{kind}")))
    except ModuleNotFoundError:  # an unpacked source tree without git metadata, on PYTHONPATH
        return _PACKAGE.parent / _FOLDERS[kind]


def protocol_dir() -> Path:
    """Where the shipped protocols live (``suites/`` in the repository)."""
    return folder("protocols")


def published_dir() -> Path:
    """Where the published numbers live (``results/published/`` in the repository)."""
    return folder("published")


#: the stem every shipped tolerance file of ``jembench check`` starts with (``suites/check-tolerances*.toml``)
TOLERANCES = "check-tolerances"


def tolerances_file() -> Path:
    """The default tolerances of ``jembench check`` (``suites/check-tolerances.toml`` in the repository)."""
    return protocol_dir() / f"{TOLERANCES}.toml"


def tolerance_files() -> dict[str, Path]:
    """The shipped tolerance files by name — the file's stem, as ``--protocol`` names a shipped protocol:
    ``check-tolerances`` (the defaults), ``check-tolerances-tiny`` (the tiny protocols' CI job), ..."""
    return dict(sorted((p.stem, p) for p in protocol_dir().glob(f"{TOLERANCES}*.toml")))


def runs_dir() -> Path | None:
    """``results/runs`` of the source checkout (the committed records), or None for an installed jembench."""
    root = source_checkout()
    return root / "results" / "runs" if root is not None else None
