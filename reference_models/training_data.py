"""The training data of one run: the labelled stream, the optional p(x) stream and the split that chooses ``best.pt``.

Endless, resumable streams of full batches (:class:`DataStream`): a seeded permutation per epoch
(:class:`EpochSampler`), restarted mid-epoch on resume without touching the global RNG, sharded across ranks
under DDP; the JEM / JEM++ hold-out split (:func:`holdout_split`); and the accuracy that chooses ``best.pt``
(:func:`accuracy_on`, with JEM's validation noise drawn from :func:`selection_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from jembench.data import load_dataset
from jembench.errors import JembenchError

from .config import TrainConfig


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start``: resuming mid-epoch replays the same order
    without touching the global RNG. Under DDP the permutation is padded to a multiple of ``world_size``
    (repeating its head, as ``DistributedSampler`` does) and rank r takes every ``world_size``-th index."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size

    def shard(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=gen)
        if self.world_size > 1:
            padded = math.ceil(self.n / self.world_size) * self.world_size
            perm = torch.cat([perm, perm[: padded - self.n]])[self.rank::self.world_size]
        return perm

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start:].tolist())

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size) - self.start


@dataclass
class DataStream:
    """Endless full batches (``drop_last``) of one training set for this rank, epoch after epoch."""

    dataset: Dataset
    batch_size: int
    seed: int
    workers: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        per_rank = math.ceil(len(self.dataset) / self.world_size)
        if per_rank < self.batch_size:
            raise JembenchError(f"the training set has {per_rank} images per process, fewer than the batch size "
                                f"{self.batch_size}; lower --batch-size (or --px-batch-size)")
        self.iters_per_epoch = per_rank // self.batch_size

    def batches(self, iteration: int) -> Iterator:
        """Batches from ``iteration`` on, in the same order as an uninterrupted run."""
        epoch, within = divmod(iteration, self.iters_per_epoch)
        start = within * self.batch_size
        while True:
            sampler = EpochSampler(len(self.dataset), self.seed, epoch, start, self.rank, self.world_size)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 1_009 + self.rank)  # worker seeds
            yield from DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                                  num_workers=self.workers, generator=gen)
            epoch, start = epoch + 1, 0


def holdout_split(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """(validation, training) indices of a training split of ``n`` images, as the JEM / JEM++ code draws them
    (JEM train_wrn_ebm.py:160-171, JEMPP utils.py:104-115): ``np.random.seed(seed); np.random.shuffle(range(n))``,
    the first ``holdout`` are validation, the rest training. A private ``RandomState`` gives the same stream
    without touching NumPy's global one."""
    import numpy as np

    if holdout >= n:
        raise JembenchError(f"--holdout {holdout} leaves no training images (the training split has {n}); lower it")
    order = list(range(n))
    np.random.RandomState(seed).shuffle(order)
    return order[:holdout], order[holdout:]


@dataclass
class TrainingData:
    """The streams one run reads: the labelled (augmented) stream, the optional p(x) stream and the split that
    chooses ``best.pt`` (hold-out or test), all built once before anything is written."""

    labelled: DataStream
    px: DataStream | None
    select: Dataset | None  # images that choose best.pt (None: no selection)
    n_train: int


def training_data(cfg: TrainConfig, rank: int, world: int) -> TrainingData:
    """Build :class:`TrainingData` for ``cfg``: the hold-out comes off the training split first; the p(x) loader
    (``px_separate``: the same augmented images, shuffled independently as JEM's ``dload_train``;
    ``px_unaugmented``: SADA-JEM's DA-free loader) reads the same training indices."""
    base = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, augment=cfg.augment, flip=cfg.flip,
                        noise_std=cfg.input_noise)
    valid_idx, train_idx = holdout_split(len(base), cfg.holdout, cfg.holdout_seed) if cfg.holdout else ([], None)

    def subset(ds: Dataset, idx: list[int] | None) -> Dataset:
        return ds if idx is None else Subset(ds, idx)

    train_set = subset(base, train_idx)
    labelled = DataStream(train_set, cfg.batch_size, cfg.seed, cfg.workers, rank, world)
    px = None
    if cfg.px_weight > 0 and (cfg.px_separate or cfg.px_unaugmented):
        px_base = (load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, noise_std=cfg.input_noise)
                   if cfg.px_unaugmented else base)
        px = DataStream(subset(px_base, train_idx), cfg.px_batch_size or cfg.batch_size, cfg.seed + 1, cfg.workers,
                        rank, world)
    select = None
    if cfg.select_best == "validation":
        clean = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download)  # un-augmented; σ: accuracy_on
        select = Subset(clean, valid_idx)
    elif cfg.select_best == "test":
        select = load_dataset(cfg.dataset, "test", cfg.data_root, cfg.download)
    return TrainingData(labelled, px, select, len(train_set))


def selection_noise(seed: int, iteration: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of the input noise of the ``best.pt`` evaluation after ``iteration`` on process ``rank``,
    seeded with NumPy's ``SeedSequence([seed, iteration, rank])`` (one well-mixed 32-bit word: torch's CPU generator
    keeps only the low 32 bits of a seed, so seeds that differ in higher bits alone would repeat one stream; while every
    rank scores the whole split the loop passes rank 0, so all ranks see the same noise and take the same ``best.pt``
    decision; a loop that shards the split passes each rank's own). A stream of its own: the training's random streams
    are untouched, so a run with ``select_noise`` > 0 trains exactly as one without and only the choice of ``best.pt``
    can differ; fresh noise at every evaluation, as the official loader's transform draws it (JEM
    train_wrn_ebm.py:146-150, :190-192), yet the same on resume."""
    import numpy as np

    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0]))


@torch.no_grad()
def accuracy_on(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 100,
                noise_std: float = 0.0, generator: torch.Generator | None = None) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode on ``dataset`` (the official ``eval_classification``: eval-mode
    batch norm, no gradient); the model's mode is restored afterwards. ``noise_std`` > 0: each image gets
    x + σ·ε first, ε ~ N(0, I) drawn batch by batch from ``generator`` (default: torch's global one) on the CPU
    (:func:`jembench.suites.context.add_noise`: after normalisation to [-1, 1], where JEM's ``transform_test``
    adds it)."""
    from jembench.suites.context import add_noise

    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = add_noise(x, noise_std, generator or torch.default_generator) if noise_std > 0 else x
        pred = model(x.to(device)).argmax(1).cpu()
        correct += int((pred == torch.as_tensor(y)).sum())
        total += len(pred)
    model.train(was_training)
    return 100.0 * correct / max(1, total)
