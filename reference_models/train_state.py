"""What one training iteration reads and changes (:class:`TrainState`), and how it goes to disk and comes back.

A checkpoint (``last.pt``, ``best.pt``; :func:`save_state`) holds the weights, optimiser, scheduler, every rank's
buffer shard (concatenated) and RNG state, the divergence guard's budget, the effective config and the
``training`` block (:func:`training_block`: recovered divergences, what chose ``best.pt``); rank 0 writes
it atomically (:func:`jembench.models.save_checkpoint`). :func:`restore_state` puts it back exactly — on the CPU
with ``workers = 0``, N + N iterations with a resume in between equal 2N uninterrupted, bit for bit — and splits
the buffer evenly when the number of processes changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from jembench import devices, distributed, recipe
from jembench import progress as messages
from jembench.errors import JembenchError
from jembench.models import read_checkpoint_file, save_checkpoint
from jembench.sampling import ReplayBuffer
from jembench.seeding import rng_state, seed_everything, set_rng_state

from .config import TrainConfig
from .divergence import DivergenceGuard, set_base_lr
from .sam import SAM


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


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s RNG stream (SGLD noise, buffer draws, augmentation); rank 0 keeps ``seed``."""
    return seed if rank == 0 else (seed * 1_000_003 + 7_919 * rank) % 2**62


def weights_digest(model: nn.Module) -> str:
    """sha256 of the parameters' and batch-norm statistics' bytes (DDP: every rank must report the same)."""
    return recipe.weights_digest(model.state_dict())


def training_block(state: TrainState, guard: DivergenceGuard,
                   selected: tuple[str, float, float] | None = None) -> dict:
    """The checkpoint's ``training`` block, which every record evaluated from it copies (``model.training``): how
    the run handled divergence (:meth:`DivergenceGuard.summary`: ``recovered_divergences`` ...) and, for
    ``best.pt``, what chose it (``selected_on``: split, input noise σ, accuracy, iteration)."""
    block = guard.summary(state.cfg.divergence)
    if selected is not None:
        split, noise, accuracy = selected
        block["selected_on"] = {"split": split, "noise": float(noise), "accuracy": float(accuracy),
                                "iteration": state.iteration}
    return block


def save_state(state: TrainState, guard: DivergenceGuard, path: Path, arch_kwargs: dict, info, iters_per_epoch: int,
               world: int, final: bool, selected: tuple[str, float, float] | None = None) -> None:
    """Rank 0 writes the checkpoint: weights, optimiser, scheduler, every rank's buffer shard (concatenated)
    and RNG states (CPU and the rank's device), the guard's budget, the effective config, where it ran and the
    :func:`training_block`. A collective under DDP: every rank calls it; the shards travel to rank 0 only (a gather,
    not an all-gather)."""
    buffer = state.buffer
    device = next((p.device for p in state.model.parameters()), torch.device("cpu"))
    mine = {"rng": rng_state(device), "buffer_size": buffer.size if buffer is not None else 0,
            "images": buffer.images.detach().cpu() if buffer is not None else None,
            "labels": buffer.labels.cpu() if buffer is not None else None,
            "weights_digest": weights_digest(state.model) if final else None}
    ranks = distributed.gather_to_main(mine)
    if ranks is None:  # not rank 0
        return
    buffer_state = None
    if buffer is not None:
        buffer_state = dict(buffer.state_dict(), images=torch.cat([r["images"] for r in ranks]),
                            labels=torch.cat([r["labels"] for r in ranks]))
    extra = {"guard": guard.state_dict(), "world_size": world, "best_acc": state.best_acc,
             "ranks": [{"rng": r["rng"], "buffer_size": r["buffer_size"]} for r in ranks],
             "environment": devices.describe(device)}
    if final:
        extra["weights_digests"] = [r["weights_digest"] for r in ranks]
    cfg = state.cfg
    # what determines these weights bit for bit (jembench.recipe): `check` names a baseline stale by it
    extra["recipe"] = recipe.of_training(cfg.to_dict(), device, world)
    save_checkpoint(path, arch="wrn", arch_kwargs=arch_kwargs, model=state.model, method=cfg.method,
                    dataset=cfg.dataset, n_classes=info.n_classes, image_shape=info.image_shape,
                    config=dict(cfg.to_dict(), name=cfg.run_name), buffer=buffer_state,
                    optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
                    epoch=state.iteration // iters_per_epoch, iteration=state.iteration, rng=ranks[0]["rng"],
                    extra=extra, training=training_block(state, guard, selected))


def check_resumable(state: TrainState, saved: dict, ckpt_path: Path, now: dict | None) -> None:
    """A resumed run continues the same network with the same optimizer: the architecture (depth, width, norm,
    dropout, classes, channels) and the optimizer must be the checkpoint's, else one line names what differs —
    before any state is loaded (``load_state_dict`` would raise a size-mismatch traceback, or an optimizer state
    of another kind would load silently)."""
    ours = saved.get("arch_kwargs") or {}
    differ = [] if now is None else [f"{k} {ours.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(ours) | set(now))
                                     if ours.get(k) != now.get(k)]
    stored = (saved.get("config") or {}).get("optimizer")
    if stored is not None and stored != state.cfg.optimizer:
        differ.append(f"optimizer {stored!r} -> {state.cfg.optimizer!r}")
    theirs, mine = saved.get("model_state") or {}, state.model.state_dict()
    if not differ and (set(theirs) != set(mine) or any(tuple(theirs[k].shape) != tuple(v.shape)
                                                      for k, v in mine.items() if k in theirs)):
        differ.append("the network's layers")
    if differ:
        raise JembenchError(f"cannot resume from {ckpt_path}: this run asks for another network or optimizer than "
                            f"the checkpoint holds ({'; '.join(differ)[:240]}); resume without changing "
                            f"--depth / --width / --norm / --dropout / --optimizer, or start a new run")


def restore_state(state: TrainState, guard: DivergenceGuard, ckpt_path: Path, rank: int, world: int,
                  arch_kwargs: dict | None = None) -> None:
    if not ckpt_path.is_file():
        raise JembenchError(f"cannot resume: {ckpt_path} does not exist; train without --resume first")
    saved = read_checkpoint_file(ckpt_path)
    check_resumable(state, saved, ckpt_path, arch_kwargs)
    try:
        state.model.load_state_dict(saved["model_state"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise JembenchError(f"cannot resume from {ckpt_path}: its model or optimizer state does not fit this run "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); resume with the options "
                            f"it was trained with, or start a new run") from None
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
    device = next((p.device for p in state.model.parameters()), torch.device("cpu"))
    if same_world:
        if not set_rng_state(ranks[rank]["rng"], device) and distributed.is_main():
            saved_on = ((extra.get("environment") or {}).get("device") or "another device")
            messages.warning(f"[jembench] the run was saved on {saved_on}: the random stream of {device} starts "
                             f"afresh, so the continuation is not bit-identical to an uninterrupted run")
    else:
        seed_everything(rank_seed(state.cfg.seed + state.iteration, rank))
        if distributed.is_main():
            messages.warning(f"[jembench] resuming a {len(ranks)}-process run on {world}: RNG streams reseeded, so "
                             f"the continuation is not bit-identical to an uninterrupted run")
