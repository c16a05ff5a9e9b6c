"""Where and how a suite runs: :class:`EvalContext` (dataset, device, output folder, seed, options), the streamed
test split with its logits cache, the model's batch-norm mode during evaluation and the seeded noise streams.

Every suite's ``run(checkpoint, protocol, context)`` receives an :class:`EvalContext`; this module needs torch,
the suite registry and the protocol fields (:mod:`jembench.suites`) do not.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import Dataset, Subset

from ..catalog import label as dataset_label
from ..data import iter_batches, length, load_dataset
from ..errors import JembenchError
from ..eval_options import EvalOptions
from ..evidence import Evidence, StreamDigest
from . import BN_MODES


def noise_generator(seed: int, stream: int = 0) -> torch.Generator:
    """The seeded CPU generator of random stream ``stream`` of an evaluation with ``--seed`` ``seed``, seeded with
    ``seed + stream · 2³²`` (stream 0 = ``manual_seed(seed)``): stream 0 draws the test split's input noise
    (batch by batch, in order); suites number their other streams (the OOD suite: 2i+1 = set i's content /
    order, 2i+2 = set i's input noise)."""
    return torch.Generator().manual_seed(int(seed) + (int(stream) << 32))


def add_noise(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """x + σ·ε, ε ~ N(0, I) drawn from ``gen``, in [-1, 1] image units — where the official transforms add it:
    after ``Normalize(.5, .5)``, to every input (JEM eval_wrn_ebm.py:256-260; JEM++ eval_jempp.py:386-390,
    454-458, 511-515). σ = 0 returns ``x`` itself and draws nothing."""
    return x + sigma * torch.randn(x.shape, generator=gen) if sigma > 0 else x


def batch_norm_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextmanager
def forward_mode(model: torch.nn.Module, bn_mode: str) -> Iterator[dict]:
    """Run the block with ``model.eval()`` (``bn_mode="eval"``) or ``model.train()`` (``"train"``), then put every
    module's training flag and every batch-norm running statistic back as they were. Yields what the record
    says about it: ``{"bn_mode": ..., "batch_norm_layers": n}`` (n = 0: the mode changes no normalisation)."""
    if bn_mode not in BN_MODES:
        raise JembenchError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    flags = [(m, m.training) for m in model.modules()]
    norms = batch_norm_layers(model)
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    model.train(bn_mode == "train")
    try:
        yield {"bn_mode": bn_mode, "batch_norm_layers": len(norms)}
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for k, v in buffers.items():
                    getattr(m, k).copy_(v)
        for m, training in flags:
            m.training = training


@dataclass
class EvalContext:
    """Where and how a suite runs: the evaluation dataset, device, output folder for figures, seed, and the
    options of the evaluation (:class:`jembench.eval_options.EvalOptions`, each documented there), made by
    :meth:`from_options`."""

    dataset: str
    data_root: str | Path | None = None  # None = $JEMBENCH_DATA, else data
    download: bool = True
    device: str = "cpu"
    out_dir: Path = field(default_factory=lambda: Path("."))
    seed: int = 0
    batch_size: int = 256
    record_path: Path | None = None  # where the record goes; figures and partial results are named after it
    inception_weights: str | Path | None = None  # generation: torch-fidelity's Inception weights file
    ensemble: tuple = ()  # generation: checkpoints (paths) or replay buffers (tensors) pooled as "ensemble"
    workers: int = 0  # DataLoader worker processes for decoding images (0 = in the main process)
    dataset_label: str = ""  # how tables / figures / records name the dataset; "" = jembench.catalog.label
    options: EvalOptions = field(default_factory=EvalOptions)  # every option of the evaluation, as given
    evidence: Evidence | None = None  # set by a suite: its per-input arrays (written beside the record by run_suite)

    @classmethod
    def from_options(cls, options: EvalOptions, *, dataset: str, device: str, record_path: Path,
                     ensemble: tuple = (), dataset_label: str = "") -> EvalContext:
        """The context of one suite run under ``options`` (the one place options become context): ``dataset``,
        ``device`` and ``dataset_label`` resolved by the caller; figures and partial results go beside
        ``record_path``. A suite that needs an option the fields here do not carry reads ``ctx.options``."""
        return cls(dataset=dataset, data_root=options.data_root, download=options.download, device=device,
                   out_dir=Path(record_path).parent, seed=options.seed, batch_size=options.batch_size,
                   record_path=Path(record_path), inception_weights=options.inception_weights, ensemble=ensemble,
                   workers=options.workers, dataset_label=dataset_label, options=options)

    def execution_key(self) -> dict[str, str]:
        """What a partial result depends on beyond the protocol, checkpoint, seed and dataset: the kind of device
        (each has its own random streams and kernels: a unit computed on the CPU is not resumed on a GPU) and the
        arithmetic (:mod:`jembench.precision`). ``cuda:0`` and ``cuda:1`` are one kind."""
        return {"device": torch.device(self.device).type, "precision": self.options.precision}

    @property
    def label(self) -> str:
        """The in-distribution dataset's display label (``CIFAR-10 (JPEG q75 copy)``, ``CIFAR-10``, ...)."""
        return self.dataset_label or dataset_label(self.dataset)

    def figure_path(self, name: str) -> Path:
        """``<record stem>_<name>.png`` beside the record, so records sharing a folder never share figures."""
        stem = Path(self.record_path).stem if self.record_path else "figure"
        return Path(self.out_dir) / f"{stem}_{name}.png"

    def stream(self, dataset: Dataset, limit: int | None = None, batch_size: int | None = None,
               order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches of ``dataset`` through :func:`jembench.data.iter_batches` with ``workers``
        loader processes: (up to ``limit``) ``seed``-chosen items in index order, or the items ``order`` lists
        in that order (a shuffled loader's order)."""
        if order is not None:
            dataset, limit = Subset(dataset, order.tolist()), None
        return iter_batches(dataset, limit=limit, seed=self.seed, batch_size=batch_size or self.batch_size,
                            workers=self.workers)

    def test_split(self) -> Dataset:
        return load_dataset(self.dataset, "test", self.data_root, download=self.download)

    def test_set(self, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The in-distribution test split as tensors, (up to ``limit``) seed-chosen images, in [-1, 1]."""
        xs, ys = zip(*self.stream(self.test_split(), limit))
        return torch.cat(xs), torch.cat(ys)

    def test_batches(self, limit: int | None = None, batch_size: int | None = None
                     ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same images as :meth:`test_set`, streamed in batches of ``batch_size`` (default: the context's)
        in index order — the official test loaders' ``shuffle=False`` (memory flat in ``limit``)."""
        return self.stream(self.test_split(), limit, batch_size)

    def test_logits(self, model: torch.nn.Module, limit: int | None = None, input_noise: float = 0.0,
                    batch_size: int | None = None, desc: str = "test split", digest: StreamDigest | None = None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(logits on ``device``, labels) of the streamed test split (:meth:`test_batches`), under
        ``torch.inference_mode``, with a progress bar (``desc``, per batch). ``input_noise`` σ > 0 adds
        N(0, σ²) to the inputs (:func:`add_noise`), drawn batch by batch from stream 0 of
        :func:`noise_generator` (JEM / JEM++'s official evaluation adds it). ``digest`` hashes the clean
        images and labels on the way (:class:`jembench.evidence.StreamDigest`: the stream's identity)."""
        from ..progress import track

        batch_size = batch_size or self.batch_size
        key = (self.dataset, str(self.data_root), limit, float(input_noise), batch_size, self.seed, str(self.device))
        cached = _test_logits_cache.get(model, key)
        if cached is not None:  # the same pass already ran (accuracy, then calibration in --suite all)
            batches, seen = cached
            for logits, y in batches:
                yield logits.to(self.device), y
            if digest is not None:
                digest.restore(*seen)
            return
        split = self.test_split()
        total = n_batches(min(length(split), limit or length(split)), batch_size)
        gen = noise_generator(self.seed, 0)
        kept: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if not model.training else None
        digest = digest if digest is not None else StreamDigest()
        for x, y in track(self.stream(split, limit, batch_size), total=total, desc=desc, unit="batch"):
            digest.update(x, y)
            x = add_noise(x, input_noise, gen)
            with torch.inference_mode():
                logits = model(x.to(self.device))
            if kept is not None:
                kept.append((logits.detach().cpu().clone(), y))
            yield logits, y  # outside inference_mode: the caller's grad mode is its own between batches
        if kept is not None:
            _test_logits_cache.put(model, key, (kept, digest.state()))

    def split_stream(self, digest: StreamDigest, limit: int | None, input_noise: float) -> dict:
        """The identity of the streamed test split (:func:`jembench.evidence.stream`): dataset, split size, the
        chosen indices, the hash of its clean images and labels, and its input noise."""
        from ..data import chosen_indices
        from ..evidence import stream

        size = length(self.test_split())
        return stream(self.dataset, digest, split="test", split_size=size,
                      indices=chosen_indices(size, limit, self.seed).numpy(), sigma=input_noise, seed=self.seed)


class _TestLogitsCache:
    """The last complete eval-mode pass over the test split, kept for the next suite that asks for the very same
    pass (accuracy and calibration in ``--suite all`` both stream the whole, clean test split: one forward pass
    instead of two; C floats per image, 0.4 MB for CIFAR-10's 10,000 images).

    A hit needs the same model object (a weak reference: a new model never matches an old entry), the same
    stream (dataset, root, limit, σ, batch size, seed, device), eval mode at both calls, and unchanged weights and
    buffers (a fingerprint of every parameter and buffer: their sums and sums of squares, so a suite that
    trains batch-norm statistics or an edited weight invalidates it). Train-mode passes are never kept: their
    logits depend on the batch and change the running statistics."""

    def __init__(self) -> None:
        self._entry: tuple | None = None  # (weakref to model, key, fingerprint, batches)

    @staticmethod
    def fingerprint(model: torch.nn.Module) -> tuple[float, ...]:
        with torch.no_grad():
            tensors = [t.detach() for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
            if not tensors:
                return ()
            sums = torch.stack([torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors])
            return tuple(sums.flatten().tolist())

    def get(self, model: torch.nn.Module, key: tuple) -> tuple | None:
        if self._entry is None or model.training:
            return None
        ref, old_key, fingerprint, batches = self._entry
        if ref() is not model or old_key != key or fingerprint != self.fingerprint(model):
            return None
        return batches

    def put(self, model: torch.nn.Module, key: tuple, batches: tuple) -> None:
        import weakref

        self._entry = (weakref.ref(model), key, self.fingerprint(model), batches)

    def clear(self) -> None:
        self._entry = None


_test_logits_cache = _TestLogitsCache()


def n_batches(n: int, batch_size: int) -> int:
    """Batches of ``batch_size`` that ``n`` images fill (the last may be partial): a progress bar's total."""
    return -(-n // max(1, batch_size))


def chunks(x: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """``x`` in consecutive batches of ``batch_size`` (views, no copies)."""
    return (x[i:i + batch_size] for i in range(0, len(x), batch_size))
