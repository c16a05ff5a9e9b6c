"""Per-input evidence beside a record: what each test input got, so two records can be compared input by input.

A record's numbers are means over inputs; comparing two of them as independent samples ignores that both were
usually measured on the *same* inputs. The accuracy, calibration, OOD and robustness suites therefore keep, per
input, what their metrics are means of — predicted class, correctness, confidence, NLL (and each input's
calibration bin), each OOD score of every in-distribution and OOD image, each attacked input's clean flag and
minimal ε — in a compressed NumPy archive beside the record, ``<record stem>.evidence.npz`` (written atomically,
before the record that names it). The record's ``evidence`` field references it by relative file name and
SHA-256 and says which inputs the arrays belong to (``streams``)::

    "evidence": {"file": "accuracy.evidence.npz", "sha256": "…", "bytes": 61234,
                 "arrays": {"test/correct": "bool[10000]", …},
                 "streams": {"test": {"dataset": "folder:…", "split": "test", "split_size": 10000, "n": 10000,
                                      "indices_sha256": "…", "inputs_sha256": "…",
                                      "noise": {"sigma": 0.03, "seed": 0}}}}

``inputs_sha256`` hashes the clean input images (float32 bytes as the network receives them before input
noise) and labels, in order: two records with equal ``inputs_sha256`` saw the same inputs in the same order,
whatever the dataset's path was called, so their per-input arrays are paired. The input noise (σ and the seed
of its stream, :func:`jembench.suites.noise_generator`) is stated beside it: equal noise too means identical
inputs; another seed means the same images under independent noise draws — still paired for a test, since
under "no difference" the two evaluations are exchangeable.

Reading (:func:`load`) treats the file as untrusted: a plain file name beside the record (no path, no link out
of the folder), a size cap, the SHA-256 the record names, ``numpy.load(allow_pickle=False)``, decompressed sizes
checked before reading each member, and every array's shape and dtype equal to the record's list.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, untrusted
from .errors import JembenchError

SUFFIX = ".evidence.npz"
#: a sidecar larger than this is not one of ours (10,000-image CIFAR-10 OOD: ~1 MB; robustness: KBs)
MAX_BYTES = untrusted.KINDS["evidence"].max_bytes  # 256 MiB
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64"}


_SPEC = re.compile(r"(?P<dtype>[a-z0-9]+)\[(?P<shape>\d{1,10}(,\d{1,10}){0,3})\]")


def array_spec(value: np.ndarray) -> str:
    """``dtype[shape]`` as records list an evidence array (``float32[10000]``, ``bool[40,12]``)."""
    return f"{value.dtype}[{','.join(str(d) for d in value.shape)}]"


def sidecar_name(record_path: str | Path) -> str:
    return Path(record_path).stem + SUFFIX


class StreamDigest:
    """SHA-256 of a stream of (images, labels) batches, updated batch by batch in order (the test split the
    suites stream, an OOD set). Images are hashed as float32 bytes, labels as int64."""

    def __init__(self) -> None:
        self._images, self._labels = hashlib.sha256(), hashlib.sha256()
        self._shape: tuple[int, ...] | None = None
        self._fixed: str | None = None
        self.n = 0

    def update(self, images, labels=None) -> None:
        """Hash the next batch (the digest does not depend on how the stream is cut into batches)."""
        x = np.ascontiguousarray(_numpy(images), dtype=np.float32)
        if self._shape is None:
            self._shape = tuple(x.shape[1:])
        self._images.update(x.tobytes())
        if labels is not None:
            self._labels.update(np.ascontiguousarray(_numpy(labels), dtype=np.int64).tobytes())
        self.n += len(x)

    def images(self, batches: Iterable) -> Iterator:
        """``batches`` of images passed through unchanged, each hashed on the way."""
        for x in batches:
            self.update(x)
            yield x

    def hexdigest(self) -> str:
        if self._fixed is not None:
            return self._fixed
        parts = (str(self._shape), str(self.n), self._images.hexdigest(), self._labels.hexdigest())
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def state(self) -> tuple[str, int]:
        """(hex digest, inputs seen): what a replay of the same stream restores (:meth:`restore`)."""
        return self.hexdigest(), self.n

    def restore(self, hexdigest: str, n: int) -> None:
        """Take the final state of an earlier pass over the same stream (the suites' logits cache)."""
        self._fixed, self.n = hexdigest, n


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def indices_sha256(indices) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()


def stream(dataset: str, digest: StreamDigest, *, split: str | None = None, split_size: int | None = None,
           indices=None, sigma: float = 0.0, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The identity of one stream of inputs, as ``evidence.streams`` holds it."""
    out: dict[str, Any] = {"dataset": dataset}
    if split is not None:
        out["split"] = split
    if split_size is not None:
        out["split_size"] = int(split_size)
    out["n"] = digest.n
    if indices is not None:
        out["indices_sha256"] = indices_sha256(indices)
    out["inputs_sha256"] = digest.hexdigest()
    out["noise"] = {"sigma": float(sigma), "seed": None if sigma == 0 or seed is None else int(seed)}
    out.update(extra)
    return out


class Evidence:
    """Per-input arrays and stream identities collected by a suite; :func:`jembench.evaluation.run_suite`
    writes them beside the record (:meth:`write`) and puts the returned description in ``record["evidence"]``."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.streams: dict[str, dict[str, Any]] = {}

    def add(self, name: str, values, dtype: str) -> None:
        self.arrays[name] = np.ascontiguousarray(_numpy(values), dtype=dtype)

    def write(self, record_path: str | Path) -> dict[str, Any]:
        target = Path(record_path).parent / sidecar_name(record_path)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **self.arrays)  # numeric arrays only, as read back
        data = buffer.getvalue()
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(data)
        return {"file": target.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                "arrays": {k: array_spec(v) for k, v in self.arrays.items()},
                "streams": self.streams}


# ------------------------------------------------------------------------------------------------ reading
def _fail(source: str, what: str) -> JembenchError:
    return JembenchError(f"{source}: {what}; regenerate it with `jembench eval` (or delete the record's "
                         f"'evidence' field to compare it without per-input tests)")


def describe(record: dict, source: str = "record") -> dict[str, Any] | None:
    """The record's ``evidence`` field checked for shape (None when it has none)."""
    ev = record.get("evidence")
    if ev is None:
        return None
    if not isinstance(ev, dict) or not isinstance(ev.get("file"), str) or not isinstance(ev.get("sha256"), str):
        raise _fail(source, "its 'evidence' field must hold 'file' and 'sha256' strings")
    name = ev["file"]
    if Path(name).name != name or name in ("", ".", "..") or not name.endswith(SUFFIX):
        raise _fail(source, f"its evidence file {name[:80]!r} must be a plain '*{SUFFIX}' file name beside it")
    arrays, streams = ev.get("arrays", {}), ev.get("streams", {})
    if not isinstance(arrays, dict) or not isinstance(streams, dict):
        raise _fail(source, "its evidence 'arrays' and 'streams' must be mappings")
    for key, spec in arrays.items():
        match = _SPEC.fullmatch(spec) if isinstance(spec, str) else None
        if not isinstance(key, str) or match is None or match["dtype"] not in _DTYPES:
            raise _fail(source, f"evidence array {str(key)[:60]!r} has no valid 'dtype[shape]' ({str(spec)[:40]!r})")
    for key, value in streams.items():
        if not isinstance(value, dict) or not isinstance(value.get("inputs_sha256"), str):
            raise _fail(source, f"evidence stream {str(key)[:60]!r} has no 'inputs_sha256'")
    return ev


def load(record: dict, record_path: str | Path) -> dict[str, np.ndarray] | None:
    """The per-input arrays of ``record`` (read from beside ``record_path``), verified; None when the record
    has no evidence. A missing, altered or malformed file is a one-line error."""
    source = str(record_path)
    ev = describe(record, source)
    if ev is None:
        return None
    path = Path(record_path).parent / ev["file"]
    if path.is_symlink() and not untrusted.lies_inside(path, Path(record_path).parent):
        raise _fail(source, f"its evidence file {path.name} links out of the record's folder")
    try:  # a regular file within MAX_BYTES, opened without blocking (jembench.untrusted)
        data = untrusted.read_bytes(path, "evidence")
    except untrusted.UntrustedFileError as exc:
        what = "is missing" if exc.what == "does not exist" else exc.what
        raise _fail(source, f"its evidence file {path} {what}") from None
    if hashlib.sha256(data).hexdigest() != ev["sha256"]:
        raise _fail(source, f"its evidence file {path.name} does not have the SHA-256 the record names (changed "
                            f"or replaced after the evaluation)")
    return _arrays(data, ev.get("arrays", {}), source)


def _arrays(data: bytes, spec: dict, source: str) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            expanded = sum(info.file_size for info in zf.infolist())
            if expanded > 4 * MAX_BYTES:
                raise _fail(source, f"its evidence file expands to {expanded / 2**20:.0f} MiB")
        out = {}
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if set(npz.files) != set(spec):
                raise _fail(source, "its evidence file holds other arrays than the record lists")
            for name in npz.files:
                value = npz[name]
                if array_spec(value) != spec[name]:
                    raise _fail(source, f"evidence array {name!r} is {array_spec(value)}, the record says "
                                        f"{spec[name]}")
                out[name] = value
        return out
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise _fail(source, f"its evidence file is not a valid NumPy archive ({type(exc).__name__})") from None


def same_inputs(a: dict | None, b: dict | None) -> bool:
    """Whether two stream identities name the same inputs in the same order (their per-input arrays pair up)."""
    return bool(a and b and a.get("inputs_sha256") and a.get("inputs_sha256") == b.get("inputs_sha256")
                and a.get("n") == b.get("n"))


def same_noise(a: dict, b: dict) -> bool:
    """Whether two streams with the same inputs also drew the same input noise (identical inputs)."""
    return json.dumps(a.get("noise"), sort_keys=True) == json.dumps(b.get("noise"), sort_keys=True)
