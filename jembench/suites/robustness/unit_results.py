"""What a saved robustness unit must hold before a resumed run reuses it.

Finished units are saved beside the record (:class:`jembench.partials.PartialStore`, which reads them through
:mod:`jembench.untrusted`) and read back on a rerun. A file found there may still be foreign or damaged —
hand-edited, written by another version — and a unit of the wrong shape would crash the summary or, worse, be
averaged into the record. :func:`unit_problem` checks a unit against what :func:`jembench.suites.robustness.summary`
reads: each field present, of its type, one entry per input of the unit's block; a unit that fails is recomputed.
"""

from __future__ import annotations

import math
from typing import Any


_LISTS = {"correct": bool, "skipped": bool, "no_start_inputs": bool, "min_eps": float, "foolbox_distance": float,
          "l2": float, "l0": float, "queries": int, "stopped": str}
_COUNTS = ("forward_passes", "attack_calls", "pgd_iterations", "no_start", "unverified", "n")
_REQUIRED = {"pgd": ("correct", "forward_passes", "min_eps", "attack_calls"),
             "boundary": ("correct", "forward_passes", "l2", "no_start", "no_start_inputs", "unverified", "queries",
                          "stopped"),
             "pointwise": ("correct", "forward_passes", "l2", "l0", "no_start", "no_start_inputs", "unverified",
                           "queries", "stopped")}


def unit_problem(unit_key: str, result: Any, n: int | None = None) -> str | None:
    """Why a saved unit result cannot be used (None when it can): every field the summary reads present, with its
    type, and one entry per input of the unit's block (``n`` inputs)."""
    if not isinstance(result, dict):
        return f"unit {unit_key[:60]!r} is a {type(result).__name__}, not a result"
    attack = next((a for a in _REQUIRED if a in unit_key), "pgd")
    missing = [f for f in _REQUIRED[attack] if f not in result]
    if missing:
        return f"unit {unit_key[:60]!r} lacks {missing[0]!r}"
    for field, value in result.items():
        if field in _COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{unit_key}: {field!r} is {str(value)[:40]!r}, not a count"
        kind = _LISTS.get(field)
        if field == "robust_at":
            if not isinstance(value, list) or not all(_list_of(row, bool, n) for row in value):
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
