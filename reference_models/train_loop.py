"""The one training loop every reference method shares (read it top to bottom: :func:`train`).

Per iteration (JEM Algorithm 1, generalised):
  1. a labelled batch (x, y) — augmented, plus input noise — and, for DA-free methods (SADA-JEM), a batch of
     un-augmented images for the p(x) term from a second loader;
  2. if the method has a generative term: x̂ = SGLD chains started from the replay buffer (reinit share from
     p_0: uniform, or JEM++'s per-class Gaussians), run on the *unwrapped* network, written back to the buffer;
  3. loss = the method's objective; backward; optimiser step — or, with SAM (``sam_rho > 0``), the two-pass
     SAM step on the same batch and the same x̂, batch-norm statistics updated by the first pass only;
     learning-rate schedule step (linear warm-up, step decay at epochs).
Around it (:func:`_train` reads as the list of these steps — start, build, open records, iterate, finish):
  * the data streams (:mod:`jembench.reference_models.training_data`);
  * a divergence guard (:mod:`jembench.reference_models.divergence`): checked on the log cadence and before every
    checkpoint; rolls back to the last good in-memory state with a lower lr, more SGLD steps and a new seed;
  * checkpoints (atomic, rank 0) every ``ckpt_every`` epochs / ``ckpt_every_iters`` iterations and at the end,
    and exact resume (:mod:`jembench.reference_models.train_state`) from ``last.pt``: model, optimiser, scheduler,
    buffer, every rank's RNG state, the guard's budget and the data order (the epoch sampler restarts
    mid-epoch) — on the CPU with ``workers = 0``, N + N iterations with a resume in between equal 2N
    uninterrupted, bit for bit;
  * DDP under ``torchrun`` (gloo on CPUs, nccl on GPUs): each rank has its own data shard, its own buffer
    shard of ``buffer_size / world`` chains and its own RNG stream (SGLD noise, buffer draws, augmentation);
    the weights start equal and stay equal (gradients are averaged); rank 0 writes checkpoints and logs;
  * a CSV log, ``events.jsonl`` (resolved config, resumes, divergences;
    :mod:`jembench.reference_models.run_log`), a tqdm bar and PNG sample grids.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from jembench import atomic, devices, distributed, memory, precision, run_lock, threads
from jembench import progress as messages
from jembench.catalog import DatasetInfo
from jembench.data import dataset_info, length
from jembench.errors import JembenchError
from jembench.figures import sample_grid
from jembench.models import read_checkpoint_file
from jembench.runtime import denormals_kept, require_device
from jembench.sampling import ReplayBuffer, UniformInit, sgld
from jembench.seeding import seed_everything

from . import get_method
from .config import TrainConfig
from .divergence import DivergenceGuard, TrainingDiverged
from .informative_init import informative_init
from .objectives import Step
from .run_log import RunEvents, RunLog, config_summary, log_row, refuse_to_overwrite
from .sam import SAM, frozen_bn_stats
from .train_state import TrainState, rank_seed, restore_state, save_state
from .training_data import TrainingData, accuracy_on, selection_noise, training_data
from .wideresnet import wide_resnet


# ------------------------------------------------------------------------------------- building blocks
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
    """x̂: ``n`` chains from the buffer, ``cfg.sgld.n_steps`` SGLD steps on the unwrapped network (no DDP hooks, no
    gradient all-reduce), written back. The network's mode during the chains:

    * eval mode (JEM code, ``sample_q`` calls ``f.eval()``): batch norm on its running statistics;
    * train mode, ``sgld_bn_updates`` (JEM++ / SADA-JEM code, whose ``f.eval()`` is commented out): batch norm on
      the chains' batch statistics, and each of the K forwards updates the running statistics (momentum .9);
    * train mode without ``sgld_bn_updates``: batch statistics, running statistics left alone."""
    cfg, model, buffer = state.cfg, state.model, state.buffer
    assert buffer is not None, "only methods with a replay buffer draw SGLD samples"
    x0, idx = buffer.sample(n)
    if x0.dim() == 4:
        x0 = x0.contiguous(memory_format=memory_format(cfg, x0.shape[1]))
    stats: dict = {}
    if cfg.sgld_train_mode and cfg.sgld_bn_updates:
        x = sgld(model, x0, cfg.sgld, stats=stats)
    elif cfg.sgld_train_mode:
        with frozen_bn_stats(model):
            x = sgld(model, x0, cfg.sgld, stats=stats)
    else:
        model.eval()  # chains see the deterministic network (as the official JEM code does)
        x = sgld(model, x0, cfg.sgld, stats=stats)
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


@contextlib.contextmanager
def stop_requests() -> Iterator[dict]:
    """SIGINT and SIGTERM set ``flag["signal"]`` instead of killing the run, so the loop can write a resumable
    checkpoint at the end of the current iteration (a second signal of the same kind acts at once). Outside the
    main thread (no signal handlers allowed) nothing is installed."""
    flag: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous: dict[signal.Signals, Any] = {}

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
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> Path:
    """Train ``cfg.method`` and return the path of the final checkpoint (``out_dir/last.pt``).

    SIGINT / SIGTERM end the run after the current iteration with a resumable ``last.pt``
    (:class:`TrainingInterrupted`); a fresh run into a folder that holds one is refused, and so is any run into a
    folder another process is writing (:mod:`jembench.run_lock`). Denormal floats are kept while it trains
    (:func:`jembench.runtime.denormals_kept`), whatever the process set: the same settings give the same weights
    from ``jembench train``, ``jembench demo`` and a process that evaluated first."""
    with stop_requests() as stop, contextlib.ExitStack() as held, denormals_kept():
        return _train(cfg, Path(out_dir), resume, progress, stop, held)


@dataclass
class _Run:
    """What one run is, fixed once it starts: config, folder, processes, device, method, data and schedule."""

    cfg: TrainConfig
    out_dir: Path
    resume: bool
    rank: int
    world: int
    main: bool
    device: torch.device
    method: ModuleType
    info: DatasetInfo
    data: TrainingData
    iters_per_epoch: int
    total_iters: int
    arch_kwargs: dict
    layout: torch.memory_format
    events: RunEvents = field(init=False)  # opened by _open_logs, before the first iteration
    log: RunLog = field(init=False)
    started: tuple[float, float] = (0.0, 0.0)  # wall and CPU clocks when the iterations began

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "last.pt"


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, progress: bool, stop: dict, held: ExitStack) -> Path:
    run = _start(cfg, out_dir, resume, held)
    with precision.scope(cfg.precision, run.device):  # TF32 / cudnn.benchmark / autocast, restored afterwards
        state, guard = _build(run, held)
        _open_records(run, state)
        saved_at = _iterate(run, state, guard, progress, stop)
        _finish(run, state, guard, saved_at)
    return run.ckpt_path


def _cpu_threads(run: _Run, model: nn.Module) -> int:
    """The CPU threads the run trains on (:func:`jembench.threads.for_model`): small batches of small images (the
    tiny presets) on one thread, since OpenMP threads spinning on a shared, busy machine slow them many-fold."""
    return threads.for_model(model, run.info.image_shape, run.cfg.batch_size, run.device)


def _start(cfg: TrainConfig, out_dir: Path, resume: bool, held: ExitStack) -> _Run:
    """Device and processes, the checks that leave nothing behind when they fail (run folder writable and free,
    data readable, buffer within memory), the data streams and the schedule; then the run folder, whose lock
    ``held`` keeps until the run ends (one writer per run folder: :mod:`jembench.run_lock`)."""
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
    data = training_data(cfg, rank, world, device)
    iters_per_epoch = data.labelled.iters_per_epoch
    if cfg.px_weight > 0:  # a replay buffer that cannot fit is refused before the run folder exists
        memory.require_buffer(max(info.n_classes, cfg.buffer_size // world), info.image_shape, device)
    if main:  # only now that the inputs are known to be good: a bad input leaves nothing behind
        out_dir.mkdir(parents=True, exist_ok=True)
        held.enter_context(run_lock.hold(out_dir))
        if not resume:
            refuse_to_overwrite(out_dir, cfg.method)  # again, now that no other process can start one here
    distributed.barrier()
    arch_kwargs = {"depth": cfg.depth, "widen_factor": cfg.width, "n_classes": info.n_classes,
                   "in_channels": info.image_shape[0], "norm": None if cfg.norm == "none" else cfg.norm,
                   "dropout_rate": cfg.dropout}
    return _Run(cfg, out_dir, resume, rank, world, main, device, method, info, data, iters_per_epoch,
                cfg.max_iters or cfg.epochs * iters_per_epoch, arch_kwargs, memory_format(cfg, info.image_shape[0]))


def _build(run: _Run, held: ExitStack) -> tuple[TrainState, DivergenceGuard]:
    """The network, optimiser (+ SAM), schedule, replay buffer and divergence guard — or, resuming, all of them
    as ``last.pt`` left them. From the network on, the run computes on its CPU threads (:func:`_cpu_threads`, held
    until the run ends): the buffer's initialisation (JEM++ / SADA-JEM: a class-conditional Gaussian fitted to the
    data) included, so the thread count the checkpoint's recipe names (:mod:`jembench.recipe`) is the one every
    computation that shaped the weights ran on."""
    cfg, info = run.cfg, run.info
    # torch accepts a device and a memory format in one call; its stub's overloads take one or the other
    model = wide_resnet(**run.arch_kwargs).to(run.device, memory_format=run.layout)  # type: ignore[call-overload]
    held.enter_context(threads.scoped(_cpu_threads(run, model)))
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, run.iters_per_epoch, run.total_iters))
    sam = SAM(optimizer, cfg.sam_rho, cfg.sam_adaptive) if cfg.sam_rho > 0 else None
    if run.rank > 0:
        seed_everything(rank_seed(cfg.seed, run.rank))  # each rank its own SGLD noise, buffer draws, augmentation
    buffer = (build_buffer(cfg, run.out_dir, info.n_classes, info.image_shape, run.device, run.world)
              if cfg.px_weight > 0 else None)
    net = distributed.wrap_ddp(model, run.device, info.image_shape) if run.world > 1 else model
    state = TrainState(cfg, model, net, optimizer, scheduler, sam, buffer)
    guard = DivergenceGuard(cfg.loss_bound, cfg.gap_bound, cfg.max_recoveries, cfg.recovery_lr_factor,
                            cfg.recovery_sgld_factor,
                            all_reduce_max=distributed.all_reduce_max if run.world > 1 else None)
    if run.resume:
        restore_state(state, guard, run.ckpt_path, run.rank, run.world, run.arch_kwargs)
        if run.data.select is not None and state.best_acc is None:
            state.best_acc = (read_checkpoint_file(run.ckpt_path).get("extra") or {}).get("best_acc")
    return state, guard


def _open_records(run: _Run, state: TrainState) -> None:
    """``events.jsonl`` (start or resume, with the resolved config), ``config.json``, the summary line, ``log.csv``."""
    cfg = run.cfg
    run.events = RunEvents(run.out_dir / "events.jsonl", enabled=run.main, fresh=not run.resume)
    run.events.write("resume" if run.resume else "start", state.iteration, config=cfg.to_dict(),
                     world_size=run.world, total_iters=run.total_iters, iters_per_epoch=run.iters_per_epoch,
                     environment=devices.describe(run.device), threads=torch.get_num_threads())
    if run.main:
        if not run.resume:
            atomic.write_json(run.out_dir / "config.json", cfg.to_dict())
        summary = config_summary(cfg, run.total_iters, run.iters_per_epoch, run.data.n_train, run.world)
        messages.info(f"[jembench] {summary}; full config: {run.out_dir / 'config.json'}")
    run.log = RunLog(run.out_dir / "log.csv", keep_up_to=state.iteration if run.resume else None, enabled=run.main)


def _iterate(run: _Run, state: TrainState, guard: DivergenceGuard, progress: bool, stop: dict) -> int:
    """The iterations, from ``state.iteration`` to the end: one training step each; on the log cadence and before
    every checkpoint the guard's check (a rollback on divergence), a log row; sample grids, the ``best.pt``
    selection, checkpoints and a clean stop on SIGINT / SIGTERM. Returns the iteration last saved."""
    cfg = run.cfg
    run.started = (time.perf_counter(), time.process_time())
    data, px_data = _streams(run, state)
    guard.remember(state.iteration, state.model, state.optimizer, state.scheduler, state.buffer)
    bar = messages.bar(total=run.total_iters, initial=state.iteration, desc=cfg.run_name, unit="it",
                       enabled=None if progress and run.main else False)  # a bar on a terminal, heartbeats in logs
    window = _Window()
    saved_at = state.iteration if run.resume else -1
    while state.iteration < run.total_iters:
        x, y, x_px = _next_batches(run, data, px_data)
        loss, stats = train_step(state, run.method.objective, x, y, x_px)
        guard.observe(loss, stats)
        state.iteration += 1
        window.iters += 1
        bar.update(1)
        it = state.iteration
        log_due, ckpt_due = _due(run, it)
        if log_due or ckpt_due:  # the guard's check point: one host sync
            found = guard.check(state.model, it)
            if found is not None:
                _roll_back(run, state, guard, found, it, bar)  # raises when the budget is spent
                data, px_data = _streams(run, state)
                continue
            guard.remember(it, state.model, state.optimizer, state.scheduler, state.buffer)
        if log_due:
            _write_log_row(run, state, loss, stats, window, bar)
        if run.main and cfg.sample_every and state.buffer is not None and it % cfg.sample_every == 0:
            sample_grid(state.buffer.images, run.out_dir / f"samples-{it:07d}.png")
        epoch_done = it % run.iters_per_epoch == 0 and (it // run.iters_per_epoch - 1) % cfg.eval_every == 0
        if run.data.select is not None and (epoch_done or it == run.total_iters):
            _select_best(run, state, guard, it)
        if ckpt_due:
            _checkpoint(run, state, guard)
            saved_at = it
        if (run.world == 1 or log_due) and distributed.any_rank(stop["signal"] is not None):
            _stop_interrupted(run, state, guard, stop["signal"], saved_at, bar)
    bar.close()
    return saved_at


def _finish(run: _Run, state: TrainState, guard: DivergenceGuard, saved_at: int) -> None:
    """The final checkpoint (unless the last iteration wrote it), the buffer's sample grid, the finish event."""
    if saved_at != state.iteration:
        _checkpoint(run, state, guard)
    if run.main and state.buffer is not None:
        sample_grid(state.buffer.images, run.out_dir / "samples.png")
    wall, cpu = run.started
    run.events.write("finish", state.iteration, recovered_divergences=guard.recoveries,
                     wall_s=round(time.perf_counter() - wall, 1), cpu_s=round(time.process_time() - cpu, 1),
                     threads=torch.get_num_threads())


# ------------------------------------------------------------------------------------- the loop's steps
class _Window:
    """Iterations since the last log row, and when that row was written (for ``it_per_s``)."""

    def __init__(self) -> None:
        self.start, self.iters = time.perf_counter(), 0

    def rate(self) -> float | str:
        elapsed = time.perf_counter() - self.start
        return self.iters / elapsed if elapsed > 0 else ""

    def reset(self) -> None:
        self.start, self.iters = time.perf_counter(), 0


def _streams(run: _Run, state: TrainState) -> tuple[Iterator, Iterator | None]:
    """The labelled and p(x) batches from ``state.iteration`` on, as an uninterrupted run sees them."""
    px = run.data.px
    return run.data.labelled.batches(state.iteration), (px.batches(state.iteration) if px else None)


def _next_batches(run: _Run, data: Iterator, px_data: Iterator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The next labelled batch (x, y) and the p(x) images (x itself without a separate p(x) stream), on the
    device in the run's memory layout."""
    x, y = next(data)
    x, y = devices.to_device(x, run.device, memory_format=run.layout), devices.to_device(y, run.device)
    x_px = (devices.to_device(next(px_data)[0], run.device, memory_format=run.layout) if px_data is not None
            else x)
    return x, y, x_px


def _due(run: _Run, it: int) -> tuple[bool, bool]:
    """(a log row is due, a checkpoint is due) after iteration ``it``."""
    cfg = run.cfg
    log_due = it % cfg.log_every == 0 or it == run.total_iters
    epoch_end = it % run.iters_per_epoch == 0 and (it // run.iters_per_epoch) % cfg.ckpt_every == 0
    ckpt_due = epoch_end or bool(cfg.ckpt_every_iters and it % cfg.ckpt_every_iters == 0) or it == run.total_iters
    return log_due, ckpt_due


def _checkpoint(run: _Run, state: TrainState, guard: DivergenceGuard, path: Path | None = None,
                selected: tuple[str, float, float] | None = None) -> None:
    save_state(state, guard, path or run.ckpt_path, run.arch_kwargs, run.info, run.iters_per_epoch, run.world,
               final=state.iteration >= run.total_iters, selected=selected)


def _write_log_row(run: _Run, state: TrainState, loss: torch.Tensor, stats: dict, window: _Window, bar) -> None:
    row = log_row(state, loss, stats, run.iters_per_epoch, run.world)
    row["it_per_s"] = window.rate()
    run.log.write(row)
    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('acc', 0):.3f}")
    window.reset()


def _select_best(run: _Run, state: TrainState, guard: DivergenceGuard, it: int) -> None:
    """Accuracy on the hold-out (or test) split, with ``select_noise`` on its inputs (JEM code: σ = .03);
    ``best.pt`` when it beats the best so far (JEM / JEM++ / SADA-JEM code: strictly greater, checked every
    ``eval_every`` epochs)."""
    cfg = run.cfg
    assert run.data.select is not None, "select_best runs only with a selection split"
    # a collective: each rank scores its share with each image's own noise, every rank gets the summed accuracy
    acc = accuracy_on(state.model, run.data.select, run.device, noise_std=cfg.select_noise,
                      noise_seeds=selection_noise(cfg.seed, it, length(run.data.select)))
    improved = state.best_acc is None or acc > state.best_acc
    if improved:
        state.best_acc = acc
        _checkpoint(run, state, guard, run.out_dir / "best.pt", selected=(cfg.select_best, cfg.select_noise, acc))
    run.events.write("select", it, split=cfg.select_best, noise=cfg.select_noise, accuracy=acc,
                     best=state.best_acc, saved=improved)
    if run.main:
        with tqdm.external_write_mode(file=sys.stderr):  # above the bar, as tqdm.write
            noise = f" (σ = {cfg.select_noise:g})" if cfg.select_noise else ""
            messages.info(f"[jembench] iteration {it}: {cfg.select_best} accuracy{noise} {acc:.2f}% (best "
                          f"{state.best_acc:.2f}%{', best.pt saved' if improved else ''})")


def _roll_back(run: _Run, state: TrainState, guard: DivergenceGuard, found: dict, it: int, bar) -> None:
    """Back to the last good state with the remedies (:meth:`DivergenceGuard.recover`); when the budget is spent,
    or at once with ``divergence = "stop"`` (the official runs' end), that state is written and the run stops with a
    one-line :class:`TrainingDiverged` (exit 3)."""
    cfg = run.cfg
    if state.cfg.divergence == "stop":
        event = guard.stop(found, it, state.model, state.optimizer, state.scheduler, state.buffer)
        state.iteration = event["rolled_back_to"]
        run.events.write(event.pop("event"), it, **event, recovered_divergences=guard.recoveries)
        _checkpoint(run, state, guard)
        bar.close()
        raise TrainingDiverged(guard.stop_message(event, str(run.ckpt_path)))
    state.cfg, event = guard.recover(found, it, state.model, state.optimizer, state.scheduler, state.buffer,
                                     state.cfg, new_seed=rank_seed(cfg.seed + 7_919 * (guard.recoveries + 1),
                                                                   run.rank))
    state.iteration = event["rolled_back_to"]
    kind = event.pop("event")
    run.events.write(kind, it, **event, recovered_divergences=guard.recoveries)
    if kind == "give_up":  # keep the last good state on disk, then stop
        _checkpoint(run, state, guard)
        bar.close()
        raise TrainingDiverged(guard.give_up_message(event, str(run.ckpt_path)))
    if run.main:
        messages.warning(f"[jembench] divergence at iteration {it} ({'; '.join(found['reasons'])}): rolled "
                         f"back to {state.iteration}, lr {state.cfg.lr:g}, SGLD steps {state.cfg.sgld.n_steps} "
                         f"(recovery {guard.recoveries}/{cfg.max_recoveries})")
    run.log.truncate(state.iteration)
    bar.n = state.iteration
    bar.refresh()


def _stop_interrupted(run: _Run, state: TrainState, guard: DivergenceGuard, signum: int, saved_at: int,
                      bar) -> None:
    """SIGINT / SIGTERM: write a resumable ``last.pt`` (unless this iteration's is on disk) and stop."""
    it = state.iteration
    if saved_at != it:
        _checkpoint(run, state, guard)
    name = signal.Signals(signum).name
    run.events.write("interrupted", it, signal=name)
    bar.close()
    raise TrainingInterrupted(f"training interrupted by {name} at iteration {it} of {run.total_iters}; "
                              f"{run.ckpt_path} holds it: continue with `jembench train {run.cfg.method} --resume "
                              f"{run.out_dir}`", signum)
