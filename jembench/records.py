"""The result record: one JSON document per (model, suite, protocol) evaluation.

Shape (schema ``jembench-record/1``)::

    {"schema": "jembench-record/1", "suite": "ood", "created": "...Z",
     "model": {"name": "jem-digits", "method": "jem", "dataset": "digits", "checkpoint": "runs/jem/last.pt",
               "sha256": "...", "training": {"recovered_divergences": 0, ...}},  # jembench.training_block
     "dataset": "digits", "protocol": {"name": "ood", "hash": "...", "table": {...}},
     "metrics": {"auroc/uniform/log_px": 0.99, ...},     # flat: metric key -> float (NaN allowed)
     "details": {...},                                   # suite-specific tables (bins, curves, ...)
     "figures": ["reliability.png", ...],               # files written beside the record
     "evidence": {"file": "ood.evidence.npz", "sha256": "...", ...},  # per-input arrays (jembench.evidence)
     "seed": 0, "versions": {"torch": "...", ...}, "commit": "abc123", "wall_time_s": 1.2,
     "environment": {"device": "cuda:0", "device_name": "...", "precision": "fp32", "tf32_matmul": false,
                     "tf32_cudnn": false, "cudnn_benchmark": true, "autocast": null, "world_size": 1},
     "runtime": {"torch_threads": 2, "work_threads": {"robustness units": 1}, ...}}   # jembench.threads

Metric keys are ``/``-separated and lower case; numbers are floats, never strings (a leaderboard sorts them). The
keys each suite writes, and their builders and parser, are in :mod:`jembench.metric_keys`. ``protocol.table`` holds
the protocol's resolved settings (:mod:`jembench.protocols`), which is what its hash covers. ``environment`` (added
by :func:`jembench.evaluation.run_suite`) says where the record was computed — device, hardware name, the numerical
settings of :mod:`jembench.precision`, processes; it is not part of the protocol (records written before it
existed have none).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import math
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import catalog, metric_keys, recipe, training_block
from .errors import JembenchError
from .untrusted import KINDS

if TYPE_CHECKING:
    from .protocols import Protocol

SCHEMA = "jembench-record/1"
#: a record as loaded from JSON (its shape: the module docstring; checked by :func:`validate_record`)
Record = dict[str, Any]
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
    """SHA-256 of a checkpoint file (read through :mod:`jembench.untrusted`)."""
    from .untrusted import sha256

    return sha256(path, "checkpoint")


def make_record(*, suite: str, model: dict[str, Any], dataset: str, protocol: Protocol, metrics: dict[str, float],
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


#: bounds of a record file that a careless or hostile author cannot exceed (real records are far inside them:
#: the largest committed one is ~40 KiB, 6 levels deep)
MAX_RECORD_BYTES = KINDS["record"].max_bytes
MAX_DEPTH = 32
MAX_NAME = 256  # characters of a model / protocol / metric name
MAX_TEXT = 4096  # characters of other text fields (dataset paths, checkpoint paths)


def _fail(source: str, what: str, fix: str = "regenerate it with `jembench eval`") -> JembenchError:
    return JembenchError(f"{source}: {what}; {fix}")


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a JSON value, counted only up to ``limit + 1`` (so an absurd one costs nothing)."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


def _text(source: str, where: str, value: Any, *, limit: int = MAX_NAME, optional: bool = False,
          nonempty: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise _fail(source, f"{where} is {type(value).__name__} {str(value)[:60]!r}, not a string")
    if nonempty and not value.strip():
        raise _fail(source, f"{where} is empty")
    if len(value) > limit:
        raise _fail(source, f"{where} is {len(value)} characters long (at most {limit})")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metric_value(source: str, key: str, value: Any) -> None:
    """A metric must be a number its metric allows (:meth:`jembench.metric_keys.MetricSpec.valid`): accuracy in
    [0, 100], AUROC in [0, 1], no infinity but a distance's +inf, NaN = not measured. An integer beyond float
    range is refused, not converted with an OverflowError."""
    if not _number(value):
        raise JembenchError(f"{source}: metric {key!r} is {repr(value)[:80]}, not a number; fix or regenerate the "
                            f"record")
    try:
        number = float(value)
    except OverflowError:
        raise _fail(source, f"metric {key!r} is an integer of {len(str(value))} digits, beyond any metric's range",
                    "fix or regenerate the record") from None
    spec = metric_keys.spec(key)
    if spec is not None and not spec.valid(number):
        raise _fail(source, f"metric {key!r} = {number:g} is outside the valid range of {spec.label} "
                            f"({spec.range_text()}, jembench/metric_keys.py)", "fix or regenerate the record")


def _sizes(source: str, details: Any) -> None:
    """The sample sizes standard errors are derived from (``details`` n, n_in, n_in_distinct, sets.SET.n and
    sets.SET.distinct) must be whole numbers in [1, MAX_N] when a record gives them: an error is never wider than
    its true n implies."""
    if not isinstance(details, dict):
        return
    found = [(f"details {key!r}", details.get(key)) for key in ("n", "n_in", "n_in_distinct")]
    sets = details.get("sets")
    if isinstance(sets, dict):
        found += [(f"details sets[{name!r}] {key!r}", entry.get(key)) for name, entry in sets.items()
                  if isinstance(entry, dict) for key in ("n", "distinct")]
    for where, n in found:
        if n is None:
            continue
        ok = _number(n) and (isinstance(n, int) or math.isfinite(n)) and 1 <= n <= metric_keys.MAX_N and n == int(n)
        if not ok:
            raise _fail(source, f"{where} = {str(n)[:40]} is not a sample size (a whole number in [1, "
                                f"{metric_keys.MAX_N:g}])", "fix or regenerate the record")


def validate_record(record: Any, source: str = "record") -> dict[str, Any]:
    """Check a loaded record's shape and every field's type; raise :class:`JembenchError` naming ``source``
    and the field when it is unusable. Required: ``schema``, ``suite``, ``model`` (with ``name``),
    ``dataset``, ``protocol`` (with ``hash``), ``metrics`` (name → number inside its metric's valid range,
    :mod:`jembench.metric_keys`; NaN allowed), the sample sizes in ``details`` whole numbers. The optional fields
    :func:`make_record` writes are type-checked when present; unknown extra fields are allowed."""
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise JembenchError(f"{source} is not a jembench record (schema {SCHEMA!r} missing); "
                            f"pass a JSON file written by `jembench eval`")
    if _depth(record, MAX_DEPTH) > MAX_DEPTH:
        raise _fail(source, f"nested more than {MAX_DEPTH} levels deep", "it is not a jembench record; delete it")
    for key in ("suite", "model", "dataset", "protocol", "metrics"):
        if key not in record:
            raise JembenchError(f"{source} has no {key!r} field; regenerate it with `jembench eval`")
    _text(source, "'suite'", record["suite"], limit=64)
    _text(source, "'dataset'", record["dataset"], limit=MAX_TEXT)
    if "dataset_label" in record:
        _text(source, "'dataset_label'", record["dataset_label"], limit=MAX_TEXT, optional=True, nonempty=False)
    model = record["model"]
    if not isinstance(model, dict) or not model.get("name"):
        raise JembenchError(f"{source}: 'model' must hold a 'name' (and 'method', 'dataset'); "
                            f"regenerate the record with `jembench eval`")
    _text(source, "model 'name'", model["name"])
    for key, limit in (("method", 64), ("dataset", MAX_TEXT), ("checkpoint", MAX_TEXT), ("sha256", 128)):
        if key in model:
            _text(source, f"model {key!r}", model[key], limit=limit, optional=True, nonempty=False)
    if "training" in model and (wrong := training_block.problem(model["training"])) is not None:
        raise _fail(source, f"model {wrong}")
    if "recipe" in model and (wrong := recipe.problem(model["recipe"])) is not None:
        raise _fail(source, f"model {wrong}")
    if "weights_sha256" in model:
        _text(source, "model 'weights_sha256'", model["weights_sha256"], limit=128)
    steps = model.get("sgld_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= 10**6):
        raise _fail(source, f"model 'sgld_steps' is {str(steps)[:40]!r}, not a whole number of SGLD steps")
    if not isinstance(record["metrics"], dict):
        raise JembenchError(f"{source}: 'metrics' must be a mapping of metric name to number")
    for key, value in record["metrics"].items():
        _text(source, "a metric name", key)
        _metric_value(source, key, value)
    proto = record["protocol"]
    if not isinstance(proto, dict) or "hash" not in proto:
        raise JembenchError(f"{source}: 'protocol' must hold a 'hash'; regenerate it with `jembench eval`")
    _text(source, "protocol 'hash'", proto["hash"], limit=128)
    if "name" in proto:
        _text(source, "protocol 'name'", proto["name"])
    for key, kind in (("table", dict), ("details", dict), ("versions", dict), ("environment", dict),
                      ("figures", list)):
        value = proto.get(key) if key == "table" else record.get(key)
        if value is not None and not isinstance(value, kind):
            name = "protocol 'table'" if key == "table" else repr(key)
            raise _fail(source, f"{name} is {type(value).__name__}, not a {'mapping' if kind is dict else 'list'}")
    for i, name in enumerate(record.get("figures") or []):
        _text(source, f"'figures'[{i}]", name, limit=MAX_TEXT)
    for key in ("created", "commit"):
        if key in record:
            _text(source, repr(key), record[key], optional=True, nonempty=False)
    _sizes(source, record.get("details"))
    if "seed" in record and (isinstance(record["seed"], bool) or not isinstance(record["seed"], int)):
        raise _fail(source, f"'seed' is {record['seed']!r}, not an integer")
    if "wall_time_s" in record and not _number(record["wall_time_s"]):
        raise _fail(source, f"'wall_time_s' is {record['wall_time_s']!r}, not a number")
    if "evidence" in record:
        from .evidence import describe

        describe(record, source)
    return record


def dataset_label(record: dict[str, Any]) -> str:
    """How every table, figure, leaderboard title and report names a record's in-distribution dataset: the label
    stored once, at the top level (``dataset_label``: ``jembench eval --dataset-label``, the checkpoint's
    ``jembench train --dataset-label``, else the registry's), in records written before that the copy their
    ``details`` held, else :func:`jembench.catalog.label` of ``dataset`` (``CIFAR-10``, a folder's base name)."""
    details = record.get("details")
    old = details.get("dataset_label") if isinstance(details, dict) else None
    for label in (record.get("dataset_label"), old):
        if isinstance(label, str) and label.strip():
            return label
    return catalog.label(str(record.get("dataset", "")))


def set_label(record: dict[str, Any], name: str) -> str:
    """How tables and figures name the OOD set ``name`` of an OOD record: the label stored once with the set
    (``details.sets[name].label``, from the protocol's ``sets`` entry), in records written before that also
    ``details.set_labels``, else :func:`jembench.catalog.label` of the name."""
    details = record.get("details")
    details = details if isinstance(details, dict) else {}
    sets, old = details.get("sets"), details.get("set_labels")
    entry = sets.get(name) if isinstance(sets, dict) else None
    stored = entry.get("label") if isinstance(entry, dict) else None
    for label in (stored, old.get(name) if isinstance(old, dict) else None):
        if isinstance(label, str) and label.strip():
            return label
    return catalog.label(name)


def model_identity(record: dict[str, Any]) -> tuple[str, str]:
    """What makes two records the same model: its name *and* the SHA-256 of its weights (a checkpoint file's,
    or a module's state dict's); ``""`` when a record does not say. Records of different models that share a
    name (two runs both called ``jem-digits``) must never be averaged into one leaderboard row."""
    model = record["model"]
    return str(model["name"]), str(model.get("sha256") or "")


def model_labels(refs: Iterable[RecordRef]) -> dict[Path, str]:
    """A display name per record file that tells different models apart: the model's name, or, when records
    of *different* weights share that name, ``name@<first 8 hex of sha256>`` (``name@?`` for a record that
    gives no SHA-256 beside ones that do). Records of one model (same name and weights) get the same label, so
    grouping by this label averages exactly the records of one model."""
    refs = list(refs)
    digests: dict[str, set[str]] = {}
    for ref in refs:
        name, digest = model_identity(ref.record)
        digests.setdefault(name, set()).add(digest)
    labels = {}
    for ref in refs:
        name, digest = model_identity(ref.record)
        labels[ref.path] = name if len(digests[name]) == 1 else f"{name}@{digest[:8] or '?'}"
    return labels


def _read_json(path: Path) -> Any:
    """A record file's JSON through :mod:`jembench.untrusted` (regular file, at most :data:`MAX_RECORD_BYTES`)."""
    from .untrusted import read_json

    return read_json(path, "record")


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
    from .untrusted import report_skips, walk

    refs: list[RecordRef] = []
    for p in map(Path, paths):
        if p.is_dir():
            listing = walk(p, suffixes=(".json",), label="records folder")
            report_skips(listing, f"records folder {p}")
            if listing.folders_named_like_files:
                raise JembenchError(f"record {listing.folders_named_like_files[0]} is a folder named like a file; "
                                    f"rename it or pass its parent")
            for f in listing.files:
                obj = _read_json(f)
                is_record = isinstance(obj, dict) and str(obj.get("schema", "")).startswith("jembench-record")
                if is_record or not skip_non_records_in_folders:
                    refs.append(RecordRef(f, validate_record(obj, str(f))))
        elif os.path.lexists(p):
            refs.append(RecordRef(p, load_record(p)))
        else:
            raise JembenchError(f"{p} does not exist; pass record files (.json) or folders of records")
    return refs
