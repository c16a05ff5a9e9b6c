"""A checkpoint's recipe: what determines its weights bit for bit, so ``check`` can tell a stale baseline.

Training on a CPU in one process with ``workers = 0`` is deterministic: the same settings and seed on the same
torch build, CPU instruction set and thread count give the same weights, bit for bit (resumed runs included:
:mod:`jembench.reference_models.train_state`). The trainer writes that fingerprint into every checkpoint
(``extra["recipe"]``, :func:`of_training`) and ``jembench eval`` copies it into each record's ``model`` block:

    "recipe": {"config": "<sha256 of the settings, 16 hex>", "seed": 0, "deterministic": true,
               "torch": "2.14.1", "cpu": "AVX2", "machine": "x86_64", "threads": 1, "denormals": "keep"}

``config`` hashes every setting that can change the weights (the seed included); names, labels, folders and logging
intervals are left out (:data:`OUTPUT_ONLY`) — any other change, a new setting with a default included, changes the
hash, and then nothing is claimed until the baseline is made again. ``denormals`` is the flush-to-zero state the
weights were trained under (:func:`denormals`): ``keep`` — jembench's trainer keeps denormal floats, the official
arithmetic, even in a process that flushes them for evaluation (``demo``, ``evaluate()`` first:
:func:`jembench.runtime.denormals_kept`); checkpoints of older code trained inside ``demo`` say ``flush``.
``deterministic`` is false on a GPU (cuDNN / atomics), under DDP and with data-loader workers. When a baseline record
and the record under check share a deterministic recipe — every field equal — their weights must be the same, bit for
bit (``model.weights_sha256``, computed by ``eval`` from the loaded weights); when they are not (:func:`stale`), the
baseline was made by other training code (or the weights were altered afterwards) and ``jembench check`` names the
baseline stale (exit 4) unless a regression is found anyway (exit 1). A recipe that differs in any field (another
machine's instruction set, another thread count or torch) claims nothing: there ``check`` compares numbers only.

Torch-free except :func:`of_training`, :func:`denormals` and :func:`weights_digest`; the record fields are
untrusted and checked by :func:`problem`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: settings that name or place a run but cannot change its weights
OUTPUT_ONLY = ("name", "dataset_label", "data_root", "download", "log_every", "sample_every", "ckpt_every",
               "ckpt_every_iters", "resume", "out")
#: the fields of a recipe that must all agree before two checkpoints must be the same file
FIELDS = ("config", "seed", "deterministic", "torch", "cpu", "machine", "threads", "denormals")
_MAX_TEXT = 64


def config_hash(config: dict[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the settings that can change the weights (canonical JSON)."""
    kept = {k: v for k, v in config.items() if k not in OUTPUT_ONLY}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def of_training(config: dict[str, Any], device: Any, world_size: int) -> dict[str, Any]:
    """The recipe of the checkpoint a training run is writing now (called when it saves; torch imported)."""
    import platform

    import torch

    on_cpu = str(device).split(":")[0] == "cpu"
    return {"config": config_hash(config), "seed": int(config.get("seed", 0)),
            "deterministic": bool(on_cpu and int(config.get("workers", 0)) == 0 and world_size == 1),
            "torch": str(torch.__version__), "cpu": str(torch.backends.cpu.get_cpu_capability()),
            "machine": platform.machine(), "threads": int(torch.get_num_threads()), "denormals": denormals()}


def denormals() -> str:
    """Whether this process flushes denormal floats to zero (``flush``: ``torch.set_flush_denormal(True)``, which
    ``eval`` and ``demo`` set, :func:`jembench.runtime.configure_torch`) or keeps them (``keep``): a process setting
    that changes results bit for bit. torch has no getter, so it is probed: 1e-38 / 100 is a denormal float32."""
    import torch

    return "flush" if float(torch.tensor([1e-38], dtype=torch.float32).div(100.0).item()) == 0.0 else "keep"


def weights_digest(state_dict: dict[str, Any]) -> str:
    """SHA-256 of a network's floating-point tensors (parameters, batch-norm statistics) in state-dict order: the
    weights themselves, whatever else the checkpoint file holds (paths, names, logs)."""
    h = hashlib.sha256()
    for value in state_dict.values():
        if value.dtype.is_floating_point:
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def problem(recipe: Any) -> str | None:
    """What is wrong with a record's ``model.recipe`` (None: nothing): a mapping of the :data:`FIELDS`, short
    texts, whole numbers and a bool."""
    if not isinstance(recipe, dict):
        return f"'recipe' is {type(recipe).__name__}, not a mapping"
    for key in FIELDS:
        value = recipe.get(key)
        if key == "deterministic":
            ok = isinstance(value, bool)
        elif key == "denormals":
            ok = value in ("flush", "keep")
        elif key in ("seed", "threads"):
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63
        else:
            ok = isinstance(value, str) and 0 < len(value) <= _MAX_TEXT
        if not ok:
            return f"recipe {key!r} is {str(value)[:40]!r}"
    return None


def describe(recipe: dict[str, Any]) -> str:
    """One line for messages: ``config 3f2a…, seed 0, torch 2.14.1, AVX2 x86_64, 1 thread, denormals keep``."""
    threads = recipe["threads"]
    return (f"config {recipe['config']}, seed {recipe['seed']}, torch {recipe['torch']}, {recipe['cpu']} "
            f"{recipe['machine']}, {threads} thread{'s' if threads != 1 else ''}, denormals {recipe['denormals']}")


def same_deterministic(a: Any, b: Any) -> bool:
    """Whether two records' recipes are both valid, deterministic and equal in every field."""
    return (problem(a) is None and problem(b) is None and a["deterministic"] and b["deterministic"]
            and all(a[k] == b[k] for k in FIELDS))


def stale(record: dict[str, Any], baseline: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first baseline record trained by the same deterministic recipe as ``record`` whose weights differ
    (``model.weights_sha256``, :func:`weights_digest` — the file's own hash also covers names and paths), or None."""
    model = record.get("model") or {}
    for other in baseline:
        theirs = other.get("model") or {}
        mine, their = model.get("weights_sha256"), theirs.get("weights_sha256")
        if (same_deterministic(model.get("recipe"), theirs.get("recipe")) and isinstance(mine, str)
                and isinstance(their, str) and mine != their):
            return other
    return None


def stale_lines(refs: list[Any], baseline: list[Any]) -> list[str]:
    """One line per record (:class:`jembench.records.RecordRef`) whose baseline counterpart — same model name,
    suite and dataset — was trained by the same deterministic recipe into other weights: a stale baseline."""
    def key(record: dict[str, Any]) -> tuple[str, str, str]:
        return record["model"]["name"], record["suite"], record["dataset"]

    by_key: dict[tuple[str, str, str], list[Any]] = {}
    for b in baseline:
        by_key.setdefault(key(b.record), []).append(b)
    lines = []
    for ref in refs:
        group = by_key.get(key(ref.record), [])
        other = stale(ref.record, [b.record for b in group])
        if other is None:
            continue
        path = next(b.path for b in group if b.record is other)
        mine = ref.record["model"]
        lines.append(f"{ref.path}: weights {str(mine['weights_sha256'])[:12]} are not the baseline's "
                     f"{str(other['model']['weights_sha256'])[:12]} ({path}) although both were trained by the same "
                     f"deterministic recipe ({describe(mine['recipe'])}): the baseline is stale — the training "
                     f"changed since it was made (or these weights were altered after training); regenerate it")
    return lines
