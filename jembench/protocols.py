"""Evaluation protocols: TOML tables in the repository's ``suites/`` folder, read with ``tomllib``.

A protocol is data, not code. Its hash (SHA-256 of the canonical JSON of the parsed table) goes into every
record, so two numbers are comparable only when their protocol hashes match. ``--protocol`` takes a path or
a name: ``ood`` → ``suites/ood.toml``, ``ood-tiny`` → ``suites/ood-tiny.toml``.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JembenchError

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "suites"


@dataclass(frozen=True)
class Protocol:
    name: str
    path: str
    table: dict[str, Any]

    @property
    def hash(self) -> str:
        return protocol_hash(self.table)

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return self.table[key]
        except KeyError:
            raise JembenchError(f"protocol {self.path} has no field {key!r}; add it to the TOML file") from None


def protocol_hash(table: dict[str, Any]) -> str:
    canonical = json.dumps(table, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed one is a one-line :class:`JembenchError` naming ``what``."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JembenchError(f"{what} {path} does not exist; pass an existing TOML file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JembenchError(f"{what} {path} is not valid TOML ({exc}); fix the file") from None


def resolve_protocol_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return PROTOCOL_DIR / f"{name_or_path}.toml"


def load_protocol(name_or_path: str, suite: str | None = None) -> Protocol:
    """Read a protocol TOML; a missing or malformed file is a :class:`JembenchError` naming it."""
    path = resolve_protocol_path(name_or_path)
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))) or "none"
        raise JembenchError(f"protocol {name_or_path!r} not found (looked for {path}); "
                            f"pass a .toml path or one of: {available}")
    table = read_toml(path, "protocol file")
    declared = table.get("suite")
    if suite is not None and declared is not None and declared != suite:
        raise JembenchError(f"protocol file {path} is for suite {declared!r}, not {suite!r}; "
                            f"pass a protocol of suite {suite!r}")
    return Protocol(name=path.stem, path=str(path), table=table)
