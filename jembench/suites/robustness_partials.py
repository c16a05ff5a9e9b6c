"""The robustness suite's partial results, read back: what a resumed run may reuse.

Long robustness runs save every finished work unit (one attack at one K on one block of inputs) to
``<record stem>.partial.<protocol hash>.json`` beside the record, atomically, keyed by protocol hash, checkpoint
SHA-256, seed and dataset (:mod:`jembench.suites.robustness`). A file found there may still be foreign or damaged
— hand-edited, truncated by a full disk before atomic writes, a FIFO, written by another version — and a unit
of the wrong shape would crash the summary or, worse, be averaged into the record. So every file is read through
:mod:`jembench.untrusted` and every unit is checked against what :func:`jembench.suites.robustness.summarize`
reads (each field present, of its type, one entry per input of the unit's block); anything else is ignored with
a note and recomputed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from .. import progress, untrusted
from ..errors import JembenchError


def load_partials(paths: list[Path], key: dict[str, Any], sizes: dict[str, int] | None = None
                  ) -> dict[str, dict]:
    """The finished units in the partial files of this record and protocol. A file of another protocol,
    checkpoint, seed or dataset is ignored; a malformed file or unit (hand-edited, or written by another
    version) is ignored with a note and its units are recomputed. ``sizes``: unit key → inputs in its block."""
    done: dict[str, dict] = {}
    for path in paths:
        try:
            data = untrusted.read_json(path, "partial")
        except JembenchError as exc:
            progress.warning(f"note: robustness: ignoring {path} ({exc}); its units are recomputed")
            continue
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in key.items()):
            print(f"robustness: ignoring {path} (another protocol, checkpoint, seed or dataset)", file=sys.stderr)
            continue
        units = data.get("units")
        for unit_key, result in (units.items() if isinstance(units, dict) else [(None, units)]):
            problem = _unit_problem(unit_key, result, sizes)
            if problem:
                progress.warning(f"note: robustness: ignoring a unit of {path} ({problem}); it is recomputed")
            else:
                done[unit_key] = result
    return done


_LISTS = {"correct": bool, "skipped": bool, "no_start_inputs": bool, "min_eps": float, "foolbox_distance": float,
          "l2": float, "l0": float, "queries": int, "stopped": str}
_COUNTS = ("forward_passes", "attack_calls", "pgd_iterations", "no_start", "unverified", "n")
_REQUIRED = {"pgd": ("correct", "forward_passes", "min_eps", "attack_calls"),
             "boundary": ("correct", "forward_passes", "l2", "no_start", "no_start_inputs", "unverified", "queries",
                          "stopped"),
             "pointwise": ("correct", "forward_passes", "l2", "l0", "no_start", "no_start_inputs", "unverified",
                           "queries", "stopped")}


def _unit_problem(unit_key: Any, result: Any, sizes: dict[str, int] | None) -> str | None:
    """Why a partial file's unit result cannot be used (None when it can): every field :func:`summarize` reads
    present, with its type, and one entry per input of the unit's block."""
    if not isinstance(unit_key, str) or not isinstance(result, dict):
        return "'units' must map unit names to results"
    if sizes is not None and unit_key not in sizes:
        return f"unit {unit_key[:60]!r} is not a unit of this protocol"
    n = sizes.get(unit_key) if sizes is not None else None
    attack = next((a for a in _REQUIRED if a in unit_key), "pgd")
    missing = [f for f in _REQUIRED[attack] if f not in result]
    if missing:
        return f"unit {unit_key[:60]!r} lacks {missing[0]!r}"
    for field, value in result.items():
        if field in _COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{unit_key}: {field!r} is {str(value)[:40]!r}, not a count"
        kind = _LISTS.get(field)
        rows = value if field != "robust_at" else (value if isinstance(value, list) else None)
        if field == "robust_at":
            if rows is None or not all(_list_of(row, bool, n) for row in rows):
                return f"{unit_key}: 'robust_at' is not a list of per-input flags"
        elif kind is not None and not _list_of(value, kind, n):
            return f"{unit_key}: {field!r} is not a list of {n if n is not None else 'per-input'} values"
    return None


def _list_of(value: Any, kind: type, n: int | None) -> bool:
    if not isinstance(value, list) or (n is not None and len(value) != n):
        return False
    if kind is bool:
        return all(isinstance(v, bool) for v in value)
    if kind is str:
        return all(v is None or isinstance(v, str) for v in value)
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
               for v in value)
