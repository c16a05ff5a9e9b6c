"""Evaluation protocols: TOML files resolved into each suite's typed, frozen protocol dataclass.

A protocol is data, not code. The shipped ones live in the repository's ``suites/`` folder and inside the package
(:mod:`jembench.resources`): ``suites/<suite>.toml`` = the papers' settings, ``suites/<suite>-tiny.toml`` = CPU
minutes. ``--protocol`` takes a path or a name (``ood`` → ``suites/ood.toml``, ``ood-tiny`` →
``suites/ood-tiny.toml``).

A file may build on another and say only what differs: ``base = "robustness-tiny"`` (a shipped protocol's name, or
a ``.toml`` path relative to the file), nested tables merged key by key (:func:`with_base`); ``--preset demo`` is
built this way (the tiny protocols, robustness with smaller budgets).

Each suite module declares ``PROTOCOL``, a frozen dataclass whose defaults are the paper setting
(:mod:`jembench.schema`); a TOML file sets any of its fields and names its suite (``suite = "ood"``). Unknown keys,
wrong types and out-of-range values are one-line errors naming the key and the file. The hash that goes into every
record is the SHA-256 of the canonical JSON of the *resolved* settings (every field, defaults included), so two
numbers are comparable only when they were measured under the same settings — and changing a default changes the
hash. A record's ``protocol.table`` holds those resolved settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import schema
from .errors import JembenchError
from .resources import protocol_dir


@dataclass(frozen=True)
class Protocol:
    """A suite's resolved protocol: ``settings`` is an instance of the suite's ``PROTOCOL`` dataclass."""

    name: str
    path: str
    suite: str
    settings: Any

    @property
    def table(self) -> dict[str, Any]:
        """The resolved settings as plain data (what records store and the hash covers)."""
        return {"suite": self.suite, **schema.to_dict(self.settings)}

    @property
    def hash(self) -> str:
        return protocol_hash(self.table)

    def replace(self, changes: dict[str, Any], name: str | None = None) -> Protocol:
        """This protocol with ``changes`` (keys may be dotted, e.g. ``sgld.n_steps``) applied and checked; a
        changed protocol is named ``<name>+cli`` unless ``name`` says otherwise (and has a new hash)."""
        settings = schema.replace(self.settings, changes, f"protocol {self.path} (overridden)")
        if settings == self.settings:
            return self
        return Protocol(name or f"{self.name}+cli", self.path, self.suite, settings)

    @classmethod
    def from_table(cls, suite: str, table: dict[str, Any], name: str | None = None,
                   path: str = "<table>") -> Protocol:
        """A protocol of ``suite`` from a TOML-shaped dict (``suite`` key optional), resolved and checked."""
        table = dict(table)
        declared = table.pop("suite", suite)
        if declared != suite:
            raise JembenchError(f"protocol file {path} is for suite {declared!r}, not {suite!r}; "
                                f"pass a protocol of suite {suite!r}")
        settings: Any = schema.resolve(settings_class(suite), table, f"protocol {path}")
        return cls(name or suite, path, suite, settings)


def settings_class(suite: str) -> type:
    """The protocol dataclass of ``suite`` (its module's ``PROTOCOL``), imported without torch
    (:func:`jembench.suites.protocol_class`), so resolving a protocol and its hash never loads a suite's run."""
    from .suites import protocol_class

    return protocol_class(suite)


def protocol_hash(table: dict[str, Any]) -> str:
    """The protocol hash records carry: the first 16 hex digits of the SHA-256 of the settings' canonical JSON
    (sorted keys, no spaces)."""
    canonical = json.dumps(table, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_toml(path: Path, what: str, kind: str = "protocol") -> dict[str, Any]:
    """Parse a TOML file of ``kind`` through :mod:`jembench.untrusted` (regular file, size cap); a missing,
    non-regular or malformed one is a one-line :class:`JembenchError` naming ``what`` and the file."""
    from .untrusted import read_toml as read

    return read(path, kind, label=what)


def available_protocols() -> list[str]:
    """Names of the shipped protocols (``<suite>`` and ``<suite>-<preset>``); the tolerance file is not one."""
    from .suites import SUITE_MODULES

    return sorted(p.stem for p in protocol_dir().glob("*.toml")
                  if any(p.stem == s or p.stem.startswith(f"{s}-") for s in SUITE_MODULES))


def resolve_protocol_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return protocol_dir() / f"{name_or_path}.toml"


def with_base(table: dict[str, Any], path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``table`` on top of the protocol it names as ``base`` (a shipped protocol's name, or a path relative to
    ``path``'s folder), recursively: nested tables are merged key by key, any other value replaces the base's.
    A protocol that differs from another in a few settings says only those (``robustness-demo`` is
    ``robustness-tiny`` with smaller budgets; ``accuracy-demo`` is ``accuracy-tiny`` as it is). ``base`` itself
    is not a setting: the hash covers the resolved settings, so a protocol equal to its base has its hash."""
    if "base" not in table:
        return table
    own = dict(table)
    base = own.pop("base")
    if not isinstance(base, str) or not base:
        raise JembenchError(f"protocol file {path}: base must name a protocol (e.g. base = \"robustness-tiny\")")
    base_path = path.parent / base if base.endswith(".toml") else protocol_dir() / f"{base}.toml"
    here, there = Path(os.path.realpath(path)), Path(os.path.realpath(base_path))  # never raises (symlink loops)
    if there in seen or there == here:
        raise JembenchError(f"protocol file {path}: base {base!r} leads back to itself; break the cycle")
    if not os.path.lexists(base_path):  # present but a FIFO, folder, ...: the gate (read_toml) names it
        raise JembenchError(f"protocol file {path}: base {base!r} not found (looked for {base_path}); name a "
                            f"shipped protocol ({', '.join(available_protocols())}) or a .toml path")
    parent = with_base(read_toml(base_path, "protocol file"), base_path, (*seen, here))
    if own.get("suite", parent.get("suite")) != parent.get("suite"):
        raise JembenchError(f"protocol file {path} is for suite {own.get('suite')!r} but its base {base!r} for "
                            f"{parent.get('suite')!r}; name a base of the same suite")
    return _merged(parent, own)


def _merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in own.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_protocol(name_or_path: str | Path, suite: str | None = None) -> Protocol:
    """Read and resolve a protocol TOML; a missing or malformed file, a protocol of another suite, or a bad key
    is a :class:`JembenchError` naming the file."""
    path = resolve_protocol_path(name_or_path)
    if not os.path.lexists(path) or (path.parent == protocol_dir() and path.stem not in available_protocols()):
        raise JembenchError(f"protocol {str(name_or_path)!r} not found (looked for {path}); "
                            f"pass a .toml path or one of: {', '.join(available_protocols()) or 'none'}")
    table = with_base(read_toml(path, "protocol file"), path)
    declared = table.get("suite")
    if suite is None:
        if not isinstance(declared, str):
            raise JembenchError(f"protocol file {path} does not say which suite it is for; add suite = \"...\"")
        suite = declared
    return Protocol.from_table(suite, table, name=path.stem, path=str(path))
