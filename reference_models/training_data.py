"""The training data of one run: the labelled stream, the optional p(x) stream and the split that chooses ``best.pt``.

Endless, resumable streams of full batches (:class:`DataStream`): a seeded permutation per epoch
(:class:`EpochSampler`), restarted mid-epoch on resume without touching the global RNG, sharded across ranks
under DDP; the JEM / JEM++ hold-out split (:func:`holdout_split`); and the accuracy that chooses ``best.pt``
(:func:`accuracy_on`, with JEM's validation noise: :func:`selection_noise`, :func:`image_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from jembench import devices, distributed
from jembench.data import length, load_dataset
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
    pin_memory: bool = False  # page-locked batches, so copies to a CUDA device can be asynchronous

    def __post_init__(self) -> None:
        per_rank = math.ceil(length(self.dataset) / self.world_size)
        if per_rank < self.batch_size:
            raise JembenchError(f"the training set has {per_rank} images per process, fewer than the batch size "
                                f"{self.batch_size}; lower --batch-size (or --px-batch-size)")
        self.iters_per_epoch = per_rank // self.batch_size

    def batches(self, iteration: int) -> Iterator:
        """Batches from ``iteration`` on, in the same order as an uninterrupted run."""
        epoch, within = divmod(iteration, self.iters_per_epoch)
        start = within * self.batch_size
        while True:
            sampler = EpochSampler(length(self.dataset), self.seed, epoch, start, self.rank, self.world_size)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 1_009 + self.rank)  # worker seeds
            yield from DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=True,
                                  num_workers=self.workers, generator=gen, pin_memory=self.pin_memory)
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


def per_rank_batch(batch_size: int, world: int, ddp_batch: str, flag: str = "--batch-size") -> int:
    """The batch one process takes: under ``ddp_batch = "global"`` ``batch_size`` is the total over the ``world``
    processes (the papers' batch, split as their ``nn.DataParallel`` split it: SADAJEM models/jem_models.py:70-71,
    JEM attack_model.py:219), so it must divide evenly; ``"per-rank"``: every process takes ``batch_size``."""
    if world == 1 or ddp_batch == "per-rank":
        return batch_size
    if batch_size % world:
        raise JembenchError(f"{flag} {batch_size} is the global batch and does not split over {world} processes; use "
                            f"a multiple of {world}, or --ddp-batch per-rank for {batch_size} per process (a "
                            f"{world}x larger batch)")
    return batch_size // world


def training_data(cfg: TrainConfig, rank: int, world: int, device: torch.device | str = "cpu") -> TrainingData:
    """Build :class:`TrainingData` for ``cfg``: the hold-out comes off the training split first; the p(x) loader
    (``px_separate``: the same augmented images, shuffled independently as JEM's ``dload_train``;
    ``px_unaugmented``: SADA-JEM's DA-free loader) reads the same training indices. Each process takes its share of
    the batch (:func:`per_rank_batch`); batches are pinned for a CUDA ``device``."""
    base = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, augment=cfg.augment, flip=cfg.flip,
                        noise_std=cfg.input_noise)
    valid_idx, train_idx = holdout_split(length(base), cfg.holdout, cfg.holdout_seed) if cfg.holdout else ([], None)

    def subset(ds: Dataset, idx: list[int] | None) -> Dataset:
        return ds if idx is None else Subset(ds, idx)

    train_set = subset(base, train_idx)
    pin = devices.pins_memory(device)
    batch = per_rank_batch(cfg.batch_size, world, cfg.ddp_batch)
    labelled = DataStream(train_set, batch, cfg.seed, cfg.workers, rank, world, pin)
    px = None
    if cfg.px_weight > 0 and (cfg.px_separate or cfg.px_unaugmented):
        px_base = (load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, noise_std=cfg.input_noise)
                   if cfg.px_unaugmented else base)
        px_batch = (per_rank_batch(cfg.px_batch_size, world, cfg.ddp_batch, "--px-batch-size") if cfg.px_batch_size
                    else batch)
        px = DataStream(subset(px_base, train_idx), px_batch, cfg.seed + 1, cfg.workers, rank, world, pin)
    select: Dataset | None = None
    if cfg.select_best == "validation":
        clean = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download)  # un-augmented; σ: accuracy_on
        select = Subset(clean, valid_idx)
    elif cfg.select_best == "test":
        select = load_dataset(cfg.dataset, "test", cfg.data_root, cfg.download)
    return TrainingData(labelled, px, select, length(train_set))


def selection_noise(seed: int, iteration: int, n: int) -> np.ndarray:
    """The noise seeds of the ``best.pt`` evaluation after ``iteration``: one 32-bit word per image of the
    selection split, ``SeedSequence([seed, iteration]).generate_state(n)`` (well mixed: torch's CPU generator keeps
    only the low 32 bits of a seed). Image i gets ε_i ~ N(0, I) from a CPU generator seeded with word i
    (:func:`image_noise`), so its noise depends on the run's seed, the iteration and its place in the split only —
    not on the batch size, the number of processes (each DDP rank scores its own share) or the order of evaluation:
    a DDP run scores exactly the noisy images a single process would, and a resumed run the same ones. A stream of
    its own: the training's random streams are untouched, so a run with ``select_noise`` > 0 trains exactly as one
    without and only the choice of ``best.pt`` can differ; fresh noise at every evaluation, as the official
    loader's transform draws it (JEM train_wrn_ebm.py:146-150, :190-192)."""
    return np.random.SeedSequence([seed, iteration]).generate_state(n)


def image_noise(seeds: np.ndarray, positions: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """ε for the images at ``positions`` of the selection split: one ``torch.randn(shape)`` per image from a CPU
    generator seeded with its word of ``seeds`` (:func:`selection_noise`)."""
    gen = torch.Generator()
    return torch.stack([torch.randn(shape, generator=gen.manual_seed(int(seeds[p]))) for p in positions])


@torch.no_grad()
def accuracy_on(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 100,
                noise_std: float = 0.0, noise_seeds: np.ndarray | None = None) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode on ``dataset`` (the official ``eval_classification``: eval-mode
    batch norm, no gradient); the model's mode is restored afterwards. Under DDP each rank classifies its share
    of the images and the counts are summed over the ranks — a collective: every rank gets the same value (so
    every rank takes the same ``best.pt`` decision and enters the checkpoint's collective alike). ``noise_std`` > 0:
    image i is scored as x_i + σ·ε_i, ε_i from its word of ``noise_seeds`` (:func:`selection_noise`, one per image
    of ``dataset``; :func:`image_noise`), added after normalisation to [-1, 1], where JEM's ``transform_test`` adds
    it."""
    if noise_std > 0 and (noise_seeds is None or len(noise_seeds) != length(dataset)):
        raise ValueError("accuracy_on with noise_std > 0 needs one noise seed per image (selection_noise)")
    was_training = model.training
    model.eval()
    rank, world = distributed.rank(), distributed.world_size()
    n = length(dataset)
    positions = range(rank, n, world) if world > 1 else range(n)
    shard = Subset(dataset, positions) if world > 1 else dataset
    counts = torch.zeros(2, dtype=torch.float64, device=device)  # correct, total (summed on the device: no sync)
    seen = 0
    for x, y in DataLoader(shard, batch_size=batch_size, shuffle=False, pin_memory=devices.pins_memory(device)):
        if noise_std > 0 and noise_seeds is not None:  # (checked above: one seed per image)
            x = x + noise_std * image_noise(noise_seeds, positions[seen:seen + len(x)], tuple(x.shape[1:]))
        seen += len(x)
        pred = model(devices.to_device(x, device)).argmax(1)
        counts[0] += (pred == devices.to_device(torch.as_tensor(y), device)).sum()
        counts[1] += len(pred)
    if world > 1:
        counts = distributed.all_reduce_mean(counts) * world
    model.train(was_training)
    correct, total = counts.tolist()
    return 100.0 * correct / max(1.0, total)
