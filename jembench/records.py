"""The result record: one JSON document per (model, suite, protocol) evaluation.

Shape (schema ``jembench-record/1``)::

    {"schema": "jembench-record/1", "suite": "ood", "created": "...Z",
     "model": {"name": "jem-digits", "method": "jem", "dataset": "digits", "checkpoint": "runs/jem/last.pt",
               "sha256": "..."},
     "dataset": "digits", "protocol": {"name": "ood", "hash": "...", "table": {...}},
     "metrics": {"auroc/uniform/log_px": 0.99, ...},     # flat: metric key -> float (NaN allowed)
     "details": {...},                                   # suite-specific tables (bins, curves, ...)
     "figures": ["reliability.png", ...],               # files written beside the record
     "seed": 0, "versions": {"torch": "...", ...}, "commit": "abc123", "wall_time_s": 1.2}

Metric keys are ``/``-separated and lower case; numbers are floats, never strings (a leaderboard sorts them). The
keys each suite writes, and their builders and parser, are in :mod:`jembench.metric_keys`. ``protocol.table`` holds
the protocol's resolved settings (:mod:`jembench.protocols`), which is what its hash covers.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import JembenchError

SCHEMA = "jembench-record/1"
_LIBRARIES = ("jembench", "torch", "torchvision", "foolbox", "torchattacks", "torch-fidelity", "scikit-learn",
              "numpy", "pandas")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    return versions


def git_commit() -> str | None:
    """The commit of jembench's own source tree (short hash), or None when jembench is installed from a wheel
    or sdist (the record's ``versions["jembench"]`` then says which release ran) — never the commit of the
    repository that jembench is installed into."""
    from .resources import source_checkout

    root = source_checkout()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=root)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_record(*, suite: str, model: dict[str, Any], dataset: str, protocol, metrics: dict[str, float],
                details: dict[str, Any] | None = None, figures: list[str] | None = None, seed: int = 0,
                wall_time_s: float = 0.0) -> dict[str, Any]:
    """Assemble a record; ``protocol`` is a :class:`jembench.protocols.Protocol`."""
    clean = {}
    for key, value in metrics.items():
        value = float(value)
        clean[key] = value
    return {
        "schema": SCHEMA,
        "suite": suite,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model,
        "dataset": dataset,
        "protocol": {"name": protocol.name, "hash": protocol.hash, "table": protocol.table},
        "metrics": clean,
        "details": details or {},
        "figures": figures or [],
        "seed": int(seed),
        "versions": library_versions(),
        "commit": git_commit(),
        "wall_time_s": round(float(wall_time_s), 3),
    }


def validate_record(record: Any, source: str = "record") -> dict[str, Any]:
    """Check a loaded record's shape; raise :class:`JembenchError` naming ``source`` when it is unusable."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise JembenchError(f"{source} is not a jembench record (schema {SCHEMA!r} missing); "
                            f"pass a JSON file written by `jembench eval`")
    for key in ("suite", "model", "dataset", "protocol", "metrics"):
        if key not in record:
            raise JembenchError(f"{source} has no {key!r} field; regenerate it with `jembench eval`")
    if not isinstance(record["metrics"], dict):
        raise JembenchError(f"{source}: 'metrics' must be a mapping of metric name to number")
    for key, value in record["metrics"].items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JembenchError(f"{source}: metric {key!r} is {value!r}, not a number; fix or regenerate the record")
    if not isinstance(record["protocol"], dict) or "hash" not in record["protocol"]:
        raise JembenchError(f"{source}: 'protocol' must hold a 'hash'; regenerate it with `jembench eval`")
    return record


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JembenchError(f"record {path} does not exist; check the path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JembenchError(f"{path} is not valid JSON ({exc}); delete it or regenerate it with `jembench eval`"
                            ) from None


def load_record(path: str | Path) -> dict[str, Any]:
    """One record file, validated (:func:`validate_record`)."""
    path = Path(path)
    return validate_record(_read_json(path), str(path))


@dataclass
class RecordRef:
    """A loaded record and the file it came from (its figures live beside it)."""

    path: Path
    record: dict[str, Any]


def load_records(paths: Iterable[str | Path], *, skip_non_records_in_folders: bool = True) -> list[RecordRef]:
    """The records in the given files and folders (folders: recursive ``*.json``, sorted by path), as
    (path, record) pairs — the one record loader of ``leaderboard``, ``check``, ``report`` and
    ``robustness-plot``.

    A file named explicitly must be a valid record. Inside folders, JSON files that are not records at all (no
    jembench ``schema`` key, e.g. a training run's ``config.json``) are skipped when
    ``skip_non_records_in_folders``; a file that claims to be a record but is malformed, or any file that is not
    valid JSON, is an error naming it.
    """
    refs: list[RecordRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.json")):
                obj = _read_json(f)
                is_record = isinstance(obj, dict) and str(obj.get("schema", "")).startswith("jembench-record")
                if is_record or not skip_non_records_in_folders:
                    refs.append(RecordRef(f, validate_record(obj, str(f))))
        elif p.is_file():
            refs.append(RecordRef(p, load_record(p)))
        else:
            raise JembenchError(f"{p} does not exist; pass record files (.json) or folders of records")
    for ref in refs:
        model = ref.record["model"]
        if not isinstance(model, dict) or not model.get("name"):
            raise JembenchError(f"{ref.path}: 'model' must hold a 'name' (and 'method', 'dataset'); "
                                f"regenerate the record with `jembench eval`")
    return refs

