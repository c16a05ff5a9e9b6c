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

import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from jembench import atomic, distributed
from jembench.data import dataset_info, load_dataset
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file, save_checkpoint
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


def lr_factor(cfg: TrainConfig, iters_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_iters``, then ×``decay_rate`` at each of ``decay_epochs``."""

    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
        epoch = it / max(1, iters_per_epoch)
        return warm * cfg.decay_rate ** sum(epoch >= e for e in cfg.decay_epochs)

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


def draw_samples(state: TrainState, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂: ``n`` chains from the buffer, ``sgld_steps`` SGLD steps on the unwrapped network (no DDP hooks, no
    gradient all-reduce), written back. Eval mode (JEM) or train mode with frozen BN statistics (JEM++ code)."""
    cfg, model, buffer = state.cfg, state.model, state.buffer
    x0, idx = buffer.sample(n)
    stats: dict = {}
    if cfg.sgld_train_mode:
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
    """One iteration: SGLD (once), then one optimiser step or one two-pass SAM step on the same inputs."""
    stats_extra: dict[str, torch.Tensor] = {}
    x_samples = None
    if state.buffer is not None:
        x_samples, stats_extra["sgld_grad_norm"] = draw_samples(state, len(x_px))
    step = Step(state.net, x, y, x_px, x_samples, state.cfg.px_weight)

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
            forward_backward()  # gradient at θ + ε̂ (same x, y, x_px and x̂)
        state.sam.second_step()  # back to θ, base optimiser step with that gradient
    state.scheduler.step()
    if state.net is not state.model:  # DDP: the ranks' batch-norm statistics, averaged once per iteration
        average_buffers(state.model)
    return loss, {**stats, **stats_extra}


# ---------------------------------------------------------------------------------------------- train
def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg.method`` and return the path of the final checkpoint (``out_dir/last.pt``)."""
    out_dir = Path(out_dir)
    distributed.init(cfg.device)
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    device = torch.device(distributed.device_for_rank(cfg.device))
    method = get_method(cfg.method)
    if main:
        atomic.ensure_writable_dir(out_dir, "run folder")
    seed_everything(cfg.seed)  # the same on every rank: identical initial weights

    # data: the augmented labelled stream and, DA-free, an un-augmented one for the p(x) term
    info = dataset_info(cfg.dataset, cfg.data_root)
    train_set = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, augment=cfg.augment, flip=cfg.flip,
                             noise_std=cfg.input_noise)
    labelled = DataStream(train_set, cfg.batch_size, cfg.seed, cfg.workers, rank, world)
    px_stream = None
    if cfg.px_unaugmented and cfg.px_weight > 0:
        px_set = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, noise_std=cfg.input_noise)
        px_stream = DataStream(px_set, cfg.px_batch_size or cfg.batch_size, cfg.seed + 1, cfg.workers, rank, world)
    iters_per_epoch = labelled.iters_per_epoch
    total_iters = cfg.max_iters or cfg.epochs * iters_per_epoch
    if main:  # only now that the inputs are known to be good: a bad input leaves nothing behind
        out_dir.mkdir(parents=True, exist_ok=True)
    distributed.barrier()

    # model, optimiser (+ SAM), schedule, buffer
    arch_kwargs = {"depth": cfg.depth, "widen_factor": cfg.width, "n_classes": info.n_classes,
                   "in_channels": info.image_shape[0], "norm": None if cfg.norm == "none" else cfg.norm,
                   "dropout_rate": cfg.dropout}
    model = wide_resnet(**arch_kwargs).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch))
    sam = SAM(optimizer, cfg.sam_rho, cfg.sam_adaptive) if cfg.sam_rho > 0 else None
    if rank > 0:
        seed_everything(rank_seed(cfg.seed, rank))  # each rank its own SGLD noise, buffer draws, augmentation
    buffer = (build_buffer(cfg, out_dir, info.n_classes, info.image_shape, device, world)
              if cfg.px_weight > 0 else None)
    net = _ddp(model, device, info.image_shape) if world > 1 else model
    state = TrainState(cfg, model, net, optimizer, scheduler, sam, buffer)
    guard = DivergenceGuard(cfg.loss_bound, cfg.gap_bound, cfg.max_recoveries, cfg.recovery_lr_factor,
                            cfg.recovery_sgld_factor, all_reduce_max=_all_reduce_max if world > 1 else None)

    ckpt_path = out_dir / "last.pt"
    if resume:
        _restore(state, guard, ckpt_path, rank, world)
    events = _Events(out_dir / "events.jsonl", enabled=main, fresh=not resume)
    events.write("resume" if resume else "start", state.iteration, config=cfg.to_dict(), world_size=world,
                 total_iters=total_iters, iters_per_epoch=iters_per_epoch)
    if main:
        if not resume:
            atomic.write_json(out_dir / "config.json", cfg.to_dict())
        print(f"[jembench] {cfg.method} on {cfg.dataset}: {total_iters} iterations ({iters_per_epoch}/epoch"
              f"{f', {world} processes' if world > 1 else ''}), config:\n{json.dumps(cfg.to_dict(), sort_keys=True)}",
              file=sys.stderr)
    log = _Log(out_dir / "log.csv", keep_up_to=state.iteration if resume else None, enabled=main)

    def checkpoint() -> None:
        _save(state, guard, ckpt_path, arch_kwargs, info, iters_per_epoch, world, final=state.iteration >= total_iters)

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
            print(f"[jembench] divergence at iteration {it} ({'; '.join(found['reasons'])}): rolled back to "
                  f"{state.iteration}, lr {state.cfg.lr:g}, SGLD steps {state.cfg.sgld_steps} "
                  f"(recovery {guard.recoveries}/{cfg.max_recoveries})", file=sys.stderr)
        log.truncate(state.iteration)
        bar.n = state.iteration
        bar.refresh()

    data, px_data = streams()
    guard.remember(state.iteration, model, optimizer, scheduler, buffer)
    bar = tqdm(total=total_iters, initial=state.iteration, disable=not (progress and main), desc=cfg.run_name,
               unit="it", file=sys.stderr, dynamic_ncols=True)
    window_start, window_iters, saved_at = time.perf_counter(), 0, state.iteration if resume else -1
    while state.iteration < total_iters:
        x, y = next(data)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x_px = next(px_data)[0].to(device, non_blocking=True) if px_data is not None else x
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
            save_sample_grid(buffer.images, out_dir / f"samples-{it:07d}.png")
        if ckpt_due:
            checkpoint()
            saved_at = it
    bar.close()
    if saved_at != state.iteration:
        checkpoint()
    if main and buffer is not None:
        save_sample_grid(buffer.images, out_dir / "samples.png")
    events.write("finish", state.iteration, recoveries=guard.recoveries)
    return ckpt_path


# ---------------------------------------------------------------------------------------- DDP helpers
def _ddp(model: nn.Module, device: torch.device, image_shape: tuple) -> nn.Module:
    """DistributedDataParallel around ``model``. Parameters the forward never uses (the official layout's
    spare heads) are frozen first, so DDP needs no per-iteration unused-parameter search.

    ``broadcast_buffers=False``: DDP's default copies rank 0's batch-norm statistics to every rank before
    *every* forward — six times per SADA-JEM iteration (two SAM passes × three batches) — and throws the other
    ranks' updates away. Instead :func:`train_step` averages the statistics over the ranks once per iteration
    (:func:`average_buffers`), so every rank ends each iteration with the same network (checkpoints and exact
    resume rely on that) and the statistics see every rank's data. ``benchmarks/README.md`` has the timings."""
    from torch.nn.parallel import DistributedDataParallel

    was_training = model.training
    model.eval()  # a probe forward that leaves batch-norm statistics alone
    model(torch.zeros((2, *image_shape), device=device)).sum().backward()
    for p in model.parameters():
        if p.grad is None:
            p.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=False)


def average_buffers(model: nn.Module) -> None:
    """Replace every floating-point buffer (batch-norm running mean / variance) by its mean over the ranks, in
    one all-reduce. The running statistics are exponential moving averages, linear in the batch statistics, so
    the mean of the ranks' averages is the average the ranks' batch statistics together would give. Integer
    buffers (``num_batches_tracked``) advance alike on every rank and are left alone."""
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = _all_reduce_mean(torch.cat([b.detach().flatten() for b in buffers]))
    offset = 0
    with torch.no_grad():
        for b in buffers:
            b.copy_(flat[offset:offset + b.numel()].view_as(b))
            offset += b.numel()


def _all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return t


def _all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t / distributed.world_size()


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters' and batch-norm statistics' bytes (DDP: every rank must report the same)."""
    h = hashlib.sha256()
    for p in model.state_dict().values():
        if p.dtype.is_floating_point:
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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
    extra = {"guard": guard.state_dict(), "world_size": world,
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
            print(f"[jembench] resuming a {len(ranks)}-process run on {world}: RNG streams reseeded, so the "
                  f"continuation is not bit-identical to an uninterrupted run", file=sys.stderr)


# ------------------------------------------------------------------------------------------ logging
def _log_row(state: TrainState, loss: torch.Tensor, stats: dict, iters_per_epoch: int, world: int) -> dict:
    """The CSV row (statistics averaged over ranks under DDP)."""
    names = ["loss", *stats]
    values = torch.stack([loss.float(), *(v.float() for v in stats.values())])
    if world > 1:
        values = _all_reduce_mean(values)
    row: dict[str, Any] = {"iteration": state.iteration, "epoch": state.iteration / iters_per_epoch,
                           "lr": state.optimizer.param_groups[0]["lr"]}
    row.update(zip(names, values.tolist()))
    return row


def save_sample_grid(images: torch.Tensor, path: Path, n: int = 100) -> None:
    """A PNG grid of the first ``n`` buffer images (torchvision.utils.save_image), written atomically."""
    from torchvision.utils import save_image

    grid = images[:n].detach().cpu().clamp(-1, 1) * 0.5 + 0.5
    with atomic.atomic_path(path) as tmp:
        save_image(grid, tmp, nrow=int(math.sqrt(min(n, len(grid)))) or 1, format="png")


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
