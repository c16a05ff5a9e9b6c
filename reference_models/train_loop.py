"""The one training loop every reference method shares (read it top to bottom: :func:`train`).

Per iteration (JEM Algorithm 1, generalised):
  1. a labelled batch (x, y) — augmented, plus input noise — and, for DA-free methods (SADA-JEM), a batch of
     un-augmented images for the p(x) term from a second loader;
  2. if the method has a generative term: x̂ = SGLD chains started from the replay buffer (reinit share from
     p_0: uniform, or JEM++'s per-class Gaussians), run on the *unwrapped* network, written back to the buffer;
  3. loss = the method's objective; backward; optimiser step — or, with SAM (``sam_rho > 0``), the two-pass
     SAM step on the same batch and the same x̂, batch-norm statistics updated by the first pass only;
     learning-rate schedule step (linear warm-up, step decay at epochs).
Around it:
  * a divergence guard (:mod:`reference_models.divergence`): checked on the log cadence and before every
    checkpoint; rolls back to the last good in-memory state with a lower lr, more SGLD steps and a new seed;
  * checkpoints (atomic, rank 0) every ``ckpt_every`` epochs / ``ckpt_every_iters`` iterations and at the end;
  * exact resume from ``last.pt``: model, optimiser, scheduler, buffer, every rank's RNG state, the guard's
    budget and the data order (:class:`EpochSampler` restarts mid-epoch) — on the CPU with ``workers = 0``,
    N + N iterations with a resume in between equal 2N uninterrupted, bit for bit;
  * DDP under ``torchrun`` (gloo on CPUs, nccl on GPUs): each rank has its own data shard, its own buffer
    shard of ``buffer_size / world`` chains and its own RNG stream (SGLD noise, buffer draws, augmentation);
    the weights start equal and stay equal (gradients are averaged); rank 0 writes checkpoints and logs;
  * a CSV log, ``events.jsonl`` (resolved config, resumes, divergences), a tqdm bar and PNG sample grids.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm import tqdm

from jembench import atomic, distributed, memory
from jembench import progress as messages
from jembench.data import dataset_info, load_dataset
from jembench.errors import JembenchError
from jembench.figures import sample_grid
from jembench.models import read_checkpoint_file, save_checkpoint
from jembench.runtime import require_device
from jembench.sampling import ReplayBuffer, SGLDConfig, UniformInit, sgld
from jembench.seeding import rng_state, seed_everything, set_rng_state

from . import get_method
from .config import TrainConfig
from .divergence import DivergenceGuard, set_base_lr
from .informative_init import informative_init
from .objectives import Step
from .sam import SAM, frozen_bn_stats
from .wideresnet import wide_resnet

LOG_FIELDS = ["iteration", "epoch", "lr", "loss", "ce", "acc", "e_data", "e_samples", "e_gap", "sgld_grad_norm",
              "it_per_s"]


# ------------------------------------------------------------------------------------------------- data
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
        clean = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download)  # un-augmented, noise-free
        select = Subset(clean, valid_idx)
    elif cfg.select_best == "test":
        select = load_dataset(cfg.dataset, "test", cfg.data_root, cfg.download)
    return TrainingData(labelled, px, select, len(train_set))


@torch.no_grad()
def accuracy_on(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 100) -> float:
    """Top-1 accuracy (%) of ``model`` in eval mode on ``dataset`` (the official ``eval_classification``: eval-mode
    batch norm, no gradient); the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pred = model(x.to(device)).argmax(1).cpu()
        correct += int((pred == torch.as_tensor(y)).sum())
        total += len(pred)
    model.train(was_training)
    return 100.0 * correct / max(1, total)


# ------------------------------------------------------------------------------------- building blocks
@dataclass
class TrainState:
    """Everything one iteration reads or changes (``cfg`` too: divergence recovery remedies it)."""

    cfg: TrainConfig
    model: nn.Module  # the network itself (SGLD, checkpoints)
    net: nn.Module  # what the objective calls: ``model``, or DDP(model) under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sam: SAM | None
    buffer: ReplayBuffer | None
    iteration: int = 0
    best_acc: float | None = None  # best hold-out / test accuracy so far (select_best)


def lr_factor(cfg: TrainConfig, iters_per_epoch: int, total_iters: int | None = None) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_iters``, then ×``decay_rate`` at each of ``decay_epochs`` (and at each of
    ``decay_fractions`` × ``total_iters``).

    The warm-up is the official code's (train_wrn_ebm.py:303-306, train_jempp.py:227-230, train_sadajem.py:188-191):
    before iteration ``it`` (0-based) the rate is ``lr · it / warmup_iters`` while ``it <= warmup_iters`` — so the
    first step runs at rate 0 (it still updates momentum / Adam moments), and the full rate is reached at
    iteration ``warmup_iters``. The official warm-up overrides the decay while it lasts; here both multiply,
    which is the same unless a decay epoch falls inside the warm-up."""

    def factor(it: int) -> float:
        warm = min(1.0, it / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
        epoch = it / max(1, iters_per_epoch)
        decays = sum(epoch >= e for e in cfg.decay_epochs)
        decays += sum(it >= f * total_iters for f in cfg.decay_fractions) if total_iters else 0
        return warm * cfg.decay_rate ** decays

    return factor


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def sgld_config(cfg: TrainConfig) -> SGLDConfig:
    return cfg.sgld_config()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s RNG stream (SGLD noise, buffer draws, augmentation); rank 0 keeps ``seed``."""
    return seed if rank == 0 else (seed * 1_000_003 + 7_919 * rank) % 2**62


def build_buffer(cfg: TrainConfig, out_dir: Path, n_classes: int, image_shape: tuple, device: torch.device,
                 world_size: int) -> ReplayBuffer:
    """This rank's replay buffer (``buffer_size / world`` chains), filled from p_0 — U(−1, 1) or JEM++'s
    per-class Gaussians; its reinit draws come from the same p_0."""
    p0 = informative_init(cfg, out_dir, n_classes) if cfg.init == "class_gaussian" else UniformInit(image_shape)
    size = max(n_classes, cfg.buffer_size // world_size)
    return ReplayBuffer(size, n_classes, p0, device, cfg.reinit_freq)


def has_batch_norm(model: nn.Module) -> bool:
    """Whether any layer normalises with batch statistics (then images in one forward influence each other)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def memory_format(cfg: TrainConfig, channels: int) -> torch.memory_format:
    """channels-last for 3-channel images when ``cfg.channels_last`` (faster convolutions on x86 CPUs and
    tensor-core GPUs; the same arithmetic), else the default layout."""
    return torch.channels_last if cfg.channels_last and channels == 3 else torch.contiguous_format


def draw_samples(state: TrainState, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂: ``n`` chains from the buffer, ``sgld_steps`` SGLD steps on the unwrapped network (no DDP hooks, no
    gradient all-reduce), written back. The network's mode during the chains:

    * eval mode (JEM code, ``sample_q`` calls ``f.eval()``): batch norm on its running statistics;
    * train mode, ``sgld_bn_updates`` (JEM++ / SADA-JEM code, whose ``f.eval()`` is commented out): batch norm on
      the chains' batch statistics, and each of the K forwards updates the running statistics (momentum .9);
    * train mode without ``sgld_bn_updates``: batch statistics, running statistics left alone."""
    cfg, model, buffer = state.cfg, state.model, state.buffer
    x0, idx = buffer.sample(n)
    if x0.dim() == 4:
        x0 = x0.contiguous(memory_format=memory_format(cfg, x0.shape[1]))
    stats: dict = {}
    if cfg.sgld_train_mode and cfg.sgld_bn_updates:
        x = sgld(model, x0, sgld_config(cfg), stats=stats)
    elif cfg.sgld_train_mode:
        with frozen_bn_stats(model):
            x = sgld(model, x0, sgld_config(cfg), stats=stats)
    else:
        model.eval()  # chains see the deterministic network (as the official JEM code does)
        x = sgld(model, x0, sgld_config(cfg), stats=stats)
        model.train()
    buffer.update(idx, x)
    return x, stats.get("grad_norm", torch.zeros((), device=x.device))


def train_step(state: TrainState, objective, x: torch.Tensor, y: torch.Tensor, x_px: torch.Tensor
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One iteration: one optimiser step, or one two-pass SAM step on the same inputs. The objective draws the
    SGLD samples (once: :meth:`Step.samples` memoises them) at the point of its forward order."""
    stats_extra: dict[str, torch.Tensor] = {}

    def sampler() -> torch.Tensor:
        x_samples, stats_extra["sgld_grad_norm"] = draw_samples(state, len(x_px))
        return x_samples

    step = Step(state.net, x, y, x_px, sampler if state.buffer is not None else None, state.cfg.px_weight,
                fuse=not has_batch_norm(state.model))

    def forward_backward() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        state.optimizer.zero_grad(set_to_none=True)
        loss, stats = objective(step)
        loss.backward()
        return loss.detach(), stats

    loss, stats = forward_backward()
    if state.sam is None:
        state.optimizer.step()
    else:
        state.sam.first_step()  # θ → θ + ε̂
        with frozen_bn_stats(state.model):  # BN running statistics: first pass only
            forward_backward()  # gradient at θ + ε̂ (same x, y, x_px and x̂: the samples are not redrawn)
        state.sam.second_step()  # back to θ, base optimiser step with that gradient
    state.scheduler.step()
    if state.net is not state.model:  # DDP: the ranks' batch-norm statistics, averaged once per iteration
        distributed.average_buffers(state.model)
    return loss, {**stats, **stats_extra}


# ---------------------------------------------------------------------------------------------- train
class TrainingInterrupted(JembenchError):
    """SIGINT / SIGTERM during training: the state was checkpointed; the exit code is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


RUN_FILES = ("last.pt", "events.jsonl", "log.csv", "config.json")


def refuse_to_overwrite(out_dir: Path, method: str) -> None:
    """A fresh run never replaces an earlier run's checkpoint, log or events (``--resume`` continues one)."""
    present = [name for name in RUN_FILES if (out_dir / name).exists()]
    if present:
        raise JembenchError(f"run folder {out_dir} already holds a run ({', '.join(present)}); continue it with "
                            f"`jembench train {method} --resume {out_dir}` or choose another folder with --out "
                            f"(nothing was changed)")


@contextlib.contextmanager
def stop_requests() -> Iterator[dict]:
    """SIGINT and SIGTERM set ``flag["signal"]`` instead of killing the run, so the loop can write a resumable
    checkpoint at the end of the current iteration (a second signal of the same kind acts at once). Outside the
    main thread (no signal handlers allowed) nothing is installed."""
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {}

    def handler(signum, frame):
        if flag["signal"] is not None:  # asked twice: stop now
            signal.signal(signum, previous.get(signum) or signal.SIG_DFL)
            signal.raise_signal(signum)
        flag["signal"] = signum

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg.method`` and return the path of the final checkpoint (``out_dir/last.pt``).

    SIGINT / SIGTERM end the run after the current iteration with a resumable ``last.pt``
    (:class:`TrainingInterrupted`); a fresh run into a folder that holds one is refused."""
    with stop_requests() as stop:
        return _train(cfg, Path(out_dir), resume, progress, stop)


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, progress: bool, stop: dict) -> Path:
    require_device(cfg.device)
    distributed.init(cfg.device)
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    device = torch.device(distributed.device_for_rank(cfg.device))
    method = get_method(cfg.method)
    if main:
        atomic.ensure_writable_dir(out_dir, "run folder")
        if not resume:
            refuse_to_overwrite(out_dir, cfg.method)
    seed_everything(cfg.seed)  # the same on every rank: identical initial weights

    # data: the labelled stream, the optional p(x) stream, the hold-out / test split that chooses best.pt
    info = dataset_info(cfg.dataset, cfg.data_root)
    data_streams = training_data(cfg, rank, world)
    labelled, px_stream = data_streams.labelled, data_streams.px
    iters_per_epoch = labelled.iters_per_epoch
    total_iters = cfg.max_iters or cfg.epochs * iters_per_epoch
    if cfg.px_weight > 0:  # a replay buffer that cannot fit is refused before the run folder exists
        memory.require_buffer(max(info.n_classes, cfg.buffer_size // world), info.image_shape)
    if main:  # only now that the inputs are known to be good: a bad input leaves nothing behind
        out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()

    # model, optimiser (+ SAM), schedule, buffer
    arch_kwargs = {"depth": cfg.depth, "widen_factor": cfg.width, "n_classes": info.n_classes,
                   "in_channels": info.image_shape[0], "norm": None if cfg.norm == "none" else cfg.norm,
                   "dropout_rate": cfg.dropout}
    layout = memory_format(cfg, info.image_shape[0])
    model = wide_resnet(**arch_kwargs).to(device, memory_format=layout)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch, total_iters))
    sam = SAM(optimizer, cfg.sam_rho, cfg.sam_adaptive) if cfg.sam_rho > 0 else None
    if rank > 0:
        seed_everything(rank_seed(cfg.seed, rank))  # each rank its own SGLD noise, buffer draws, augmentation
    buffer = (build_buffer(cfg, out_dir, info.n_classes, info.image_shape, device, world)
              if cfg.px_weight > 0 else None)
    net = distributed.wrap_ddp(model, device, info.image_shape) if world > 1 else model
    state = TrainState(cfg, model, net, optimizer, scheduler, sam, buffer)
    guard = DivergenceGuard(cfg.loss_bound, cfg.gap_bound, cfg.max_recoveries, cfg.recovery_lr_factor,
                            cfg.recovery_sgld_factor, all_reduce_max=distributed.all_reduce_max if world > 1 else None)

    ckpt_path = out_dir / "last.pt"
    if resume:
        _restore(state, guard, ckpt_path, rank, world)
    if data_streams.select is not None and state.best_acc is None and resume:
        state.best_acc = (read_checkpoint_file(ckpt_path).get("extra") or {}).get("best_acc")
    events = _Events(out_dir / "events.jsonl", enabled=main, fresh=not resume)
    events.write("resume" if resume else "start", state.iteration, config=cfg.to_dict(), world_size=world,
                 total_iters=total_iters, iters_per_epoch=iters_per_epoch)
    if main:
        if not resume:
            atomic.write_json(out_dir / "config.json", cfg.to_dict())
        summary = config_summary(cfg, total_iters, iters_per_epoch, data_streams.n_train, world)
        messages.info(f"[jembench] {summary}; full config: {out_dir / 'config.json'}")
    log = _Log(out_dir / "log.csv", keep_up_to=state.iteration if resume else None, enabled=main)

    def checkpoint(path: Path = ckpt_path) -> None:
        _save(state, guard, path, arch_kwargs, info, iters_per_epoch, world, final=state.iteration >= total_iters)

    def select_best(it: int) -> None:
        """Accuracy on the hold-out (or test) split; ``best.pt`` when it beats the best so far (JEM / JEM++ /
        SADA-JEM code: strictly greater, checked every ``eval_every`` epochs)."""
        acc = accuracy_on(model, data_streams.select, device)
        improved = state.best_acc is None or acc > state.best_acc
        if improved:
            state.best_acc = acc
            checkpoint(out_dir / "best.pt")
        events.write("select", it, split=cfg.select_best, accuracy=acc, best=state.best_acc, saved=improved)
        if main:
            with tqdm.external_write_mode(file=sys.stderr):  # above the bar, as tqdm.write
                messages.info(f"[jembench] iteration {it}: {cfg.select_best} accuracy {acc:.2f}% (best "
                              f"{state.best_acc:.2f}%{', best.pt saved' if improved else ''})")

    def streams() -> tuple[Iterator, Iterator | None]:
        return labelled.batches(state.iteration), (px_stream.batches(state.iteration) if px_stream else None)

    def roll_back(found: dict, it: int) -> None:
        state.cfg, event = guard.recover(found, it, model, optimizer, scheduler, buffer, state.cfg,
                                         new_seed=rank_seed(cfg.seed + 7_919 * (guard.recoveries + 1), rank))
        state.iteration = event["rolled_back_to"]
        kind = event.pop("event")
        events.write(kind, it, **event)
        if kind == "give_up":  # keep the last good state on disk, then stop
            checkpoint()
            bar.close()
            raise JembenchError(guard.give_up_message(event, str(ckpt_path)))
        if main:
            messages.warning(f"[jembench] divergence at iteration {it} ({'; '.join(found['reasons'])}): rolled "
                             f"back to {state.iteration}, lr {state.cfg.lr:g}, SGLD steps {state.cfg.sgld_steps} "
                             f"(recovery {guard.recoveries}/{cfg.max_recoveries})")
        log.truncate(state.iteration)
        bar.n = state.iteration
        bar.refresh()

    started, cpu_started = time.perf_counter(), time.process_time()
    data, px_data = streams()
    guard.remember(state.iteration, model, optimizer, scheduler, buffer)
    bar = tqdm(total=total_iters, initial=state.iteration, disable=not (progress and main and messages.bars_allowed()),
               desc=cfg.run_name, unit="it", file=sys.stderr, dynamic_ncols=True)
    window_start, window_iters, saved_at = time.perf_counter(), 0, state.iteration if resume else -1
    while state.iteration < total_iters:
        x, y = next(data)
        x, y = x.to(device, non_blocking=True, memory_format=layout), y.to(device, non_blocking=True)
        x_px = next(px_data)[0].to(device, non_blocking=True, memory_format=layout) if px_data is not None else x
        loss, stats = train_step(state, method.objective, x, y, x_px)
        guard.observe(loss, stats)
        state.iteration += 1
        window_iters += 1
        bar.update(1)

        it = state.iteration
        log_due = it % cfg.log_every == 0 or it == total_iters
        epoch_end = it % iters_per_epoch == 0 and (it // iters_per_epoch) % cfg.ckpt_every == 0
        ckpt_due = epoch_end or (cfg.ckpt_every_iters and it % cfg.ckpt_every_iters == 0) or it == total_iters
        if log_due or ckpt_due:  # the guard's check point: one host sync
            found = guard.check(model, it)
            if found is not None:
                roll_back(found, it)  # to the last good state, with remedies; raises when the budget is spent
                data, px_data = streams()
                continue
            guard.remember(it, model, optimizer, scheduler, buffer)
        if log_due:
            elapsed = time.perf_counter() - window_start
            row = _log_row(state, loss, stats, iters_per_epoch, world)
            row["it_per_s"] = window_iters / elapsed if elapsed > 0 else ""
            log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('acc', 0):.3f}")
            window_start, window_iters = time.perf_counter(), 0
        if main and cfg.sample_every and buffer is not None and it % cfg.sample_every == 0:
            sample_grid(buffer.images, out_dir / f"samples-{it:07d}.png")
        epoch_done = it % iters_per_epoch == 0 and (it // iters_per_epoch - 1) % cfg.eval_every == 0
        if data_streams.select is not None and (epoch_done or it == total_iters):
            select_best(it)
        if ckpt_due:
            checkpoint()
            saved_at = it
        if (world == 1 or log_due) and _agreed(world, stop["signal"] is not None):
            if saved_at != it:
                checkpoint()
            events.write("interrupted", it, signal=signal.Signals(stop["signal"]).name)
            bar.close()
            raise TrainingInterrupted(
                f"training interrupted by {signal.Signals(stop['signal']).name} at iteration {it} of {total_iters}; "
                f"{ckpt_path} holds it: continue with `jembench train {cfg.method} --resume {out_dir}`",
                stop["signal"])
    bar.close()
    if saved_at != state.iteration:
        checkpoint()
    if main and buffer is not None:
        sample_grid(buffer.images, out_dir / "samples.png")
    events.write("finish", state.iteration, recoveries=guard.recoveries,
                 wall_s=round(time.perf_counter() - started, 1), cpu_s=round(time.process_time() - cpu_started, 1),
                 threads=torch.get_num_threads())
    return ckpt_path


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters' and batch-norm statistics' bytes (DDP: every rank must report the same)."""
    h = hashlib.sha256()
    for p in model.state_dict().values():
        if p.dtype.is_floating_point:
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _agreed(world: int, flag: bool) -> bool:
    """``flag`` on any rank (one all-reduce under DDP; every rank must call it at the same iteration)."""
    if world == 1:
        return flag
    return bool(distributed.all_reduce_max(torch.tensor([float(flag)])).item() > 0)


def config_summary(cfg: TrainConfig, total_iters: int, iters_per_epoch: int, n_train: int, world: int) -> str:
    """One line: what is trained on what, for how long, with which network, sampler and optimiser."""
    parts = [f"{cfg.method} on {cfg.dataset}", f"{total_iters} iterations ({iters_per_epoch}/epoch, "
             f"{n_train} training images{f', {cfg.holdout} held out' if cfg.holdout else ''})",
             f"WRN-{cfg.depth}-{cfg.width}{'' if cfg.norm == 'none' else ' ' + cfg.norm + ' norm'}",
             f"batch {cfg.batch_size}", f"{cfg.optimizer} lr {cfg.lr:g}"]
    if cfg.px_weight > 0:
        parts.append(f"SGLD K={cfg.sgld_steps} on {cfg.px_batch_size or cfg.batch_size} chains, buffer "
                     f"{cfg.buffer_size} ({cfg.init})")
    if cfg.sam_rho > 0:
        parts.append(f"{'ASAM' if cfg.sam_adaptive else 'SAM'} rho {cfg.sam_rho:g}")
    if world > 1:
        parts.append(f"{world} processes")
    return ", ".join(parts)


# ------------------------------------------------------------------------------- checkpoints and resume
def _save(state: TrainState, guard: DivergenceGuard, path: Path, arch_kwargs: dict, info, iters_per_epoch: int,
          world: int, final: bool) -> None:
    """Rank 0 writes the checkpoint: weights, optimiser, scheduler, every rank's buffer shard (concatenated)
    and RNG state, the guard's budget, the effective config. A collective under DDP: every rank calls it."""
    buffer = state.buffer
    mine = {"rng": rng_state(), "buffer_size": buffer.size if buffer is not None else 0,
            "images": buffer.images.detach().cpu() if buffer is not None else None,
            "labels": buffer.labels.cpu() if buffer is not None else None,
            "weights_digest": weights_digest(state.model) if final else None}
    ranks = distributed.all_gather_objects(mine)
    if not distributed.is_main():
        return
    buffer_state = None
    if buffer is not None:
        buffer_state = dict(buffer.state_dict(), images=torch.cat([r["images"] for r in ranks]),
                            labels=torch.cat([r["labels"] for r in ranks]))
    extra = {"guard": guard.state_dict(), "world_size": world, "best_acc": state.best_acc,
             "ranks": [{"rng": r["rng"], "buffer_size": r["buffer_size"]} for r in ranks]}
    if final:
        extra["weights_digests"] = [r["weights_digest"] for r in ranks]
    cfg = state.cfg
    save_checkpoint(path, arch="wrn", arch_kwargs=arch_kwargs, model=state.model, method=cfg.method,
                    dataset=cfg.dataset, n_classes=info.n_classes, image_shape=info.image_shape,
                    config=dict(cfg.to_dict(), name=cfg.run_name), buffer=buffer_state,
                    optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                    epoch=state.iteration // iters_per_epoch, iteration=state.iteration, rng=ranks[0]["rng"],
                    extra=extra)


def _restore(state: TrainState, guard: DivergenceGuard, ckpt_path: Path, rank: int, world: int) -> None:
    if not ckpt_path.is_file():
        raise JembenchError(f"cannot resume: {ckpt_path} does not exist; train without --resume first")
    saved = read_checkpoint_file(ckpt_path)
    state.model.load_state_dict(saved["model_state"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    set_base_lr(state.optimizer, state.scheduler, state.cfg.lr)  # honour a new --lr given with --resume
    state.iteration = int(saved["iteration"])
    extra = saved.get("extra") or {}
    guard.load_state_dict(extra.get("guard") or {})
    ranks = extra.get("ranks") or [{"rng": saved["rng"], "buffer_size": None}]
    same_world = len(ranks) == world
    if state.buffer is not None and saved.get("buffer") is not None:
        full = saved["buffer"]
        sizes = [r["buffer_size"] or len(full["images"]) for r in ranks] if same_world else None
        if sizes is None:  # another world size: split the chains evenly
            sizes = [len(full["images"]) // world] * world
        start = sum(sizes[:rank])
        part = slice(start, start + sizes[rank])
        state.buffer.load_state_dict(dict(full, images=full["images"][part], labels=full["labels"][part]))
    if same_world:
        set_rng_state(ranks[rank]["rng"])
    else:
        seed_everything(rank_seed(state.cfg.seed + state.iteration, rank))
        if distributed.is_main():
            messages.warning(f"[jembench] resuming a {len(ranks)}-process run on {world}: RNG streams reseeded, so "
                             f"the continuation is not bit-identical to an uninterrupted run")


# ------------------------------------------------------------------------------------------ logging
def _log_row(state: TrainState, loss: torch.Tensor, stats: dict, iters_per_epoch: int, world: int) -> dict:
    """The CSV row (statistics averaged over ranks under DDP)."""
    names = ["loss", *stats]
    values = torch.stack([loss.float(), *(v.float() for v in stats.values())])
    if world > 1:
        values = distributed.all_reduce_mean(values)
    row: dict[str, Any] = {"iteration": state.iteration, "epoch": state.iteration / iters_per_epoch,
                           "lr": state.optimizer.param_groups[0]["lr"]}
    row.update(zip(names, values.tolist()))
    return row


class _Log:
    """CSV log of training statistics; on resume / rollback, rows past that iteration are dropped."""

    def __init__(self, path: Path, keep_up_to: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if keep_up_to is not None and path.is_file():
            self.truncate(keep_up_to)
        elif keep_up_to is None or not path.is_file():
            with atomic.atomic_path(path) as tmp:
                tmp.write_text(",".join(LOG_FIELDS) + "\n")

    def truncate(self, iteration: int) -> None:
        if not self.enabled:
            return
        with open(self.path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= iteration]
        with atomic.atomic_path(self.path) as tmp, open(tmp, "w", newline="") as out:
            writer = csv.DictWriter(out, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore").writerow(row)


class _Events:
    """``events.jsonl``: one JSON line per run event — start / resume (with the resolved config), divergence
    (what fired, where, the rollback and the remedies), give_up, finish."""

    def __init__(self, path: Path, enabled: bool, fresh: bool):
        self.path, self.enabled = path, enabled
        if enabled and fresh:
            atomic.write_text(path, "")

    def write(self, event: str, iteration: int, **fields: Any) -> None:
        if self.enabled:
            line = json.dumps({"event": event, "iteration": iteration, "time": time.time(), **fields}, default=str)
            with open(self.path, "a") as fh:
                fh.write(line + "\n")
