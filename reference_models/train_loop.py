"""The one training loop every reference method shares (read it top to bottom: :func:`train`).

Per iteration (JEM Algorithm 1, generalised):
  1. a labelled batch (x, y) — augmented, plus input noise — and, for DA-free methods, an un-augmented batch
     for the p(x) term from a second loader;
  2. if the method has a generative term: x̂ = SGLD chains started from the replay buffer (reinit share ρ from
     p_0), written back to the buffer;
  3. loss = the method's objective; backward; optimiser step; learning-rate schedule step.
Around it: checkpoints (atomic) every ``ckpt_every`` epochs / ``ckpt_every_iters`` iterations and at the end,
exact resume from ``last.pt`` (model, optimiser, scheduler, buffer, RNG states and the data order are
restored), a CSV log, a tqdm progress bar, and PNG grids of buffer samples.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from jembench import atomic
from jembench.data import dataset_info, load_dataset, stack_dataset
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file, save_checkpoint
from jembench.sampling import ClassGaussianInit, ReplayBuffer, SGLDConfig, UniformInit, sgld
from jembench.seeding import rng_state, seed_everything, set_rng_state

from . import get_method
from .config import TrainConfig
from .objectives import Step
from .wideresnet import wide_resnet

LOG_FIELDS = ["iteration", "epoch", "lr", "loss", "ce", "acc", "e_data", "e_samples", "e_gap", "sgld_grad_norm",
              "it_per_s"]


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start``: resuming mid-epoch replays the same order
    without touching the global RNG."""

    def __init__(self, n: int, seed: int, epoch: int = 0, start: int = 0):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen)[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start


@dataclass
class TrainState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
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
    return SGLDConfig(n_steps=cfg.sgld_steps, step_size=cfg.sgld_step_size, noise=cfg.sgld_noise,
                      grad_clamp=cfg.sgld_grad_clamp or None, x_clamp=cfg.sgld_x_clamp)


def informative_init(cfg: TrainConfig, out_dir: Path, n_classes: int) -> ClassGaussianInit:
    """JEM++'s per-class Gaussians, fitted once to the un-augmented training images and cached in the run."""
    cache = out_dir / "informative_init.pt"
    if cache.is_file():
        return ClassGaussianInit.from_state_dict(read_checkpoint_file(cache))
    images, labels = stack_dataset(load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download))
    init = ClassGaussianInit.fit(images, labels, n_classes)
    atomic.torch_save(cache, init.state_dict())
    return init


def _loader(dataset, cfg: TrainConfig, seed: int, epoch: int, start: int) -> DataLoader:
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=EpochSampler(len(dataset), seed, epoch, start),
                      drop_last=False, num_workers=cfg.workers,
                      generator=torch.Generator().manual_seed(seed + epoch))


def _batches(dataset, cfg: TrainConfig, seed: int, iteration: int, iters_per_epoch: int) -> Iterator:
    """Endless batches from ``iteration`` on, epoch after epoch, in the same order as an uninterrupted run."""
    epoch, within = divmod(iteration, iters_per_epoch)
    start = within * cfg.batch_size
    while True:
        yield from _loader(dataset, cfg, seed, epoch, start)
        epoch, start = epoch + 1, 0


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg.method`` and return the path of the final checkpoint (``out_dir/last.pt``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    method = get_method(cfg.method)
    device = torch.device(cfg.device)
    seed_everything(cfg.seed)

    info = dataset_info(cfg.dataset, cfg.data_root)
    train_set = load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, augment=cfg.augment, flip=cfg.flip,
                             noise_std=cfg.input_noise)
    px_set = (load_dataset(cfg.dataset, "train", cfg.data_root, cfg.download, noise_std=cfg.input_noise)
              if cfg.px_unaugmented and cfg.px_weight > 0 else None)
    iters_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    total_iters = cfg.max_iters or cfg.epochs * iters_per_epoch

    arch_kwargs = dict(depth=cfg.depth, widen_factor=cfg.width, n_classes=info.n_classes,
                       in_channels=info.image_shape[0], norm=None if cfg.norm == "none" else cfg.norm,
                       dropout_rate=cfg.dropout)
    model = wide_resnet(**arch_kwargs).to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, iters_per_epoch))
    buffer = None
    if cfg.px_weight > 0:
        p0 = (informative_init(cfg, out_dir, info.n_classes) if cfg.init == "class_gaussian"
              else UniformInit(info.image_shape))
        buffer = ReplayBuffer(cfg.buffer_size, info.n_classes, p0, device, cfg.reinit_freq)
    state = TrainState(model, optimizer, scheduler, buffer)

    ckpt_path = out_dir / "last.pt"
    if resume:
        _restore(state, ckpt_path)
    else:
        atomic.write_json(out_dir / "config.json", cfg.to_dict())
    print(f"[jembench] {cfg.method} on {cfg.dataset}: {total_iters} iterations ({iters_per_epoch}/epoch), "
          f"config:\n{json.dumps(cfg.to_dict(), sort_keys=True)}", file=sys.stderr)
    log = _Log(out_dir / "log.csv", keep_up_to=state.iteration if resume else None)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, arch="wrn", arch_kwargs=arch_kwargs, model=model, method=cfg.method,
                        dataset=cfg.dataset, n_classes=info.n_classes, image_shape=info.image_shape,
                        config=dict(cfg.to_dict(), name=cfg.run_name),
                        buffer=buffer.state_dict() if buffer is not None else None,
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        epoch=state.iteration // iters_per_epoch, iteration=state.iteration, rng=rng_state())

    sampler_cfg = sgld_config(cfg)
    data = _batches(train_set, cfg, cfg.seed, state.iteration, iters_per_epoch)
    px_data = (_batches(px_set, cfg, cfg.seed + 1, state.iteration, iters_per_epoch) if px_set is not None else None)
    bar = tqdm(total=total_iters, initial=state.iteration, disable=not progress, desc=cfg.run_name, unit="it",
               file=sys.stderr, dynamic_ncols=True)
    window_start, window_iters = time.perf_counter(), 0
    while state.iteration < total_iters:
        x, y = next(data)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x_px = next(px_data)[0].to(device) if px_data is not None else x
        x_samples, grad_norm = None, None
        if buffer is not None:
            x0, idx = buffer.sample(len(x))
            model.eval()  # chains see the deterministic network (as the official JEM code does)
            sgld_stats: dict = {}
            x_samples = sgld(model, x0, sampler_cfg, stats=sgld_stats)
            model.train()
            buffer.update(idx, x_samples)
            grad_norm = sgld_stats.get("grad_norm")
        model.train()
        loss, stats = method.objective(Step(model, x, y, x_px, x_samples, cfg.px_weight))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state.iteration += 1
        window_iters += 1
        bar.update(1)

        if state.iteration % cfg.log_every == 0 or state.iteration == total_iters:
            elapsed = time.perf_counter() - window_start
            row = {"iteration": state.iteration, "epoch": state.iteration / iters_per_epoch,
                   "lr": optimizer.param_groups[0]["lr"], "loss": loss.item(),
                   "sgld_grad_norm": grad_norm.item() if grad_norm is not None else "",
                   "it_per_s": window_iters / elapsed if elapsed > 0 else ""}
            row.update({k: v.item() for k, v in stats.items()})
            log.write(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('acc', 0):.3f}")
            window_start, window_iters = time.perf_counter(), 0
        if cfg.sample_every and buffer is not None and state.iteration % cfg.sample_every == 0:
            save_sample_grid(buffer.images, out_dir / f"samples-{state.iteration:07d}.png")
        epoch_done = state.iteration % iters_per_epoch == 0 and (state.iteration // iters_per_epoch) % cfg.ckpt_every == 0
        if epoch_done or (cfg.ckpt_every_iters and state.iteration % cfg.ckpt_every_iters == 0):
            checkpoint()
    bar.close()
    checkpoint()
    if buffer is not None:
        save_sample_grid(buffer.images, out_dir / "samples.png")
    return ckpt_path


def _restore(state: TrainState, ckpt_path: Path) -> None:
    if not ckpt_path.is_file():
        raise JembenchError(f"cannot resume: {ckpt_path} does not exist; train without --resume first")
    saved = read_checkpoint_file(ckpt_path)
    state.model.load_state_dict(saved["model_state"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if state.buffer is not None and saved.get("buffer") is not None:
        state.buffer.load_state_dict(saved["buffer"])
    state.iteration = int(saved["iteration"])
    set_rng_state(saved["rng"])


def save_sample_grid(images: torch.Tensor, path: Path, n: int = 100) -> None:
    """A PNG grid of the first ``n`` buffer images (torchvision.utils.save_image), written atomically."""
    from torchvision.utils import save_image

    grid = images[:n].detach().cpu().clamp(-1, 1) * 0.5 + 0.5
    with atomic.atomic_path(path) as tmp:
        save_image(grid, tmp, nrow=int(math.sqrt(min(n, len(grid)))) or 1, format="png")


class _Log:
    """CSV log of training statistics; on resume, rows past the checkpoint are dropped (rewritten atomically)."""

    def __init__(self, path: Path, keep_up_to: int | None):
        self.path = path
        if keep_up_to is not None and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= keep_up_to]
            with atomic.atomic_path(path) as tmp, open(tmp, "w", newline="") as out:
                writer = csv.DictWriter(out, LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        elif keep_up_to is None:
            with atomic.atomic_path(path) as tmp:
                tmp.write_text(",".join(LOG_FIELDS) + "\n")

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore").writerow(row)
