"""Partial results of a long suite, so that an interrupted evaluation resumes where it stopped.

A suite that runs for minutes to hours saves each finished *unit* of work — robustness: (K, attack, block of
inputs); generation: a batch of fresh SGLD chains — as its own file beside the record it is computing::

    <record stem>.partial.<protocol hash>.<unit>.json    JSON results (robustness)
    <record stem>.partial.<protocol hash>.<unit>.pt      tensors, read back with weights_only=True (generation)

Each file is written atomically (:mod:`jembench.atomic`) together with its *key*: the protocol hash, the
checkpoint's SHA-256, the seed, the dataset, the kind of device and the precision
(:meth:`jembench.suites.context.EvalContext.execution_key`: a unit computed on the CPU is not resumed on a GPU,
whose random streams differ) and whatever else the unit's result depends on (the suite says).
A rerun of the same evaluation to the same record reads the units whose file holds the same key and computes
only the others; a unit file with another key, damaged, or failing the suite's own check is recomputed (and
overwritten) with a note. Units are independent files, so ranks under ``torchrun`` write their own units and
never share one. :func:`jembench.evaluation.run_suite` deletes this protocol's files (:func:`files`) once the
record itself is on disk; another protocol's partial work on the same record is left alone. Names are compared
exactly, never globbed (a record may be called ``r[1].json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import atomic, progress, untrusted

#: partial files larger than this are not results jembench wrote (a robustness unit is a few KiB, a batch of
#: fresh chains a few MiB): they are recomputed, never read (the cap of kind "partial" in jembench.untrusted)
MAX_PARTIAL_BYTES = untrusted.KINDS["partial"].max_bytes
_UNIT = re.compile(r"[A-Za-z0-9.\-/]+")


def _prefix(record_path: Path, protocol_hash: str) -> str:
    return f"{record_path.stem}.partial.{protocol_hash}."


def files(record_path: str | Path, protocol_hash: str) -> list[Path]:
    """The partial files of this record and protocol that exist (regular files only, exact name prefix)."""
    record = Path(record_path)
    if not record.parent.is_dir():
        return []
    prefix = _prefix(record, protocol_hash)
    return sorted(p for p in record.parent.iterdir()
                  if p.name.startswith(prefix) and p.suffix in (".json", ".pt") and p.is_file())


class PartialStore:
    """The finished units of one evaluation (record path + protocol + ``key``), one file per unit.

    ``tensors``: units are dicts of tensors (``.pt``), else JSON values (``.json``). ``valid(unit, result)``: the
    suite's check of a loaded result (shapes, lengths); a result it rejects (False, or a string saying why) is
    recomputed. Files are read through :mod:`jembench.untrusted` (regular files within the cap)."""

    def __init__(self, record_path: str | Path, protocol_hash: str, key: dict[str, Any], *, tensors: bool = False,
                 valid: Callable[[str, Any], bool | str] | None = None, what: str = "partial results"):
        self.record_path, self.protocol_hash = Path(record_path), str(protocol_hash)
        self.key = {"protocol_hash": self.protocol_hash, **key}
        self.tensors, self.valid, self.what = tensors, valid, what

    def path(self, unit: str) -> Path:
        """``<record stem>.partial.<protocol hash>.<unit with / as _>.<json|pt>``."""
        if not _UNIT.fullmatch(unit):
            raise ValueError(f"unit name {unit!r} must be letters, digits, '.', '-' and '/'")
        name = _prefix(self.record_path, self.protocol_hash) + unit.replace("/", "_")
        return self.record_path.with_name(name + (".pt" if self.tensors else ".json"))

    def save(self, unit: str, result: Any) -> None:
        """Write one finished unit (atomically), with the key it was computed under."""
        data = {"key": {**self.key, "unit": unit}, "result": result}
        if self.tensors:
            atomic.torch_save(self.path(unit), data)
        else:
            atomic.write_json(self.path(unit), data)

    def load(self, unit: str) -> Any | None:
        """The saved result of ``unit``, or None (missing, damaged, computed under another key, or rejected by
        ``valid``; each but the first with a note)."""
        path = self.path(unit)
        if not path.is_file():  # missing — or a FIFO / device / folder in its place, which is never read
            return None
        try:
            data = self._read(path)
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file of any kind is recomputed, overwritten
            why = exc.what if isinstance(exc, untrusted.UntrustedFileError) else type(exc).__name__
            progress.warning(f"jembench: {self.what}: {path} is damaged ({why}); recomputing that unit")
            return None
        if not isinstance(data, dict) or data.get("key") != {**self.key, "unit": unit}:
            progress.warning(f"jembench: {self.what}: ignoring {path} (another protocol, checkpoint, seed, "
                             f"dataset, device or precision); recomputing that unit")
            return None
        result = data.get("result")
        verdict = self.valid(unit, result) if self.valid is not None else True
        if verdict is not True:
            why = f" ({verdict})" if isinstance(verdict, str) else ""
            progress.warning(f"jembench: {self.what}: {path} does not hold a result of that unit{why}; recomputing it")
            return None
        return result

    def load_all(self, units: Iterable[str]) -> dict[str, Any]:
        """The saved results of those ``units`` that have one (unit → result)."""
        found = {}
        for unit in units:
            result = self.load(unit)
            if result is not None:
                found[unit] = result
        return found

    def _read(self, path: Path) -> Any:
        if self.tensors:
            return untrusted.load_torch(path, "partial")
        return untrusted.read_json(path, "partial")
