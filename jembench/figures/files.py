"""A figure's files: ``<stem>.png`` for the report and ``<stem>.pdf`` (vector) beside it, both written atomically.

A record's ``figures`` lists the PNGs — what ``jembench report`` embeds — and :func:`vector_path` names each one's
PDF. The PNG is exactly width × height inches at :data:`~jembench.figures.style.DPI` (the layout is constrained,
never cropped), so its pixel size is known in advance. Nothing that changes from run to run or from machine to
machine goes into the files' metadata (no creation date, no software or library version, no host name), so an
unchanged figure gives unchanged files on one installation.
"""

from __future__ import annotations

from pathlib import Path

from .. import atomic
from ..errors import JembenchError
from .style import DPI, style

#: metadata matplotlib would otherwise write: the creation date and its version ("Matplotlib v3.x, https://…")
PDF_METADATA = {"CreationDate": None, "Creator": None, "Producer": None}
PNG_METADATA = {"Software": None}


def vector_path(png: str | Path) -> Path:
    """The PDF written beside a figure's PNG."""
    return Path(png).with_suffix(".pdf")


def files_of(png: str | Path) -> list[Path]:
    """A figure's files that exist: the PNG and its PDF (what to copy when a record moves)."""
    return [p for p in (Path(png), vector_path(png)) if p.is_file()]


def pair(target: str | Path) -> tuple[Path, Path]:
    """The PNG and PDF paths of a figure named ``target`` (``.png`` or ``.pdf``); anything else is refused."""
    target = Path(target)
    if target.suffix.lower() not in (".png", ".pdf"):
        raise JembenchError(f"figure file {target} must end in .png (its vector copy is written beside it as "
                            f".pdf); e.g. {target.with_suffix('.png')}")
    return target.with_suffix(".png"), target.with_suffix(".pdf")


def save(fig, target: str | Path) -> Path:
    """Write ``fig`` as ``<stem>.png`` (:data:`~jembench.figures.style.DPI`) and ``<stem>.pdf``, atomically, in
    the pinned style; returns the PNG path."""
    png, pdf = pair(target)
    with style():
        atomic.write_bytes(pdf, lambda tmp: fig.savefig(tmp, format="pdf", metadata=PDF_METADATA))
        atomic.write_bytes(png, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA))
    return png
