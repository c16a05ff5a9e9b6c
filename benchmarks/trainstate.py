"""Real training iterations without the outer loop: the shared loop's own building blocks.

``jembench.reference_models.train_loop.train_step(state, objective, x, y, x_px)`` is the loop's per-iteration API
(SGLD from the replay buffer, the objective, backward, optimiser or two-pass SAM step, schedule step). The
state is assembled here from the loop's helpers exactly as :func:`jembench.reference_models.train_loop.train` does
(``wide_resnet``, ``build_optimizer``, ``lr_factor``, ``SAM``, ``build_buffer``,
``jembench.distributed.wrap_ddp``), with the config from :func:`jembench.reference_models.config.resolve_config` — so
what is timed is the code a training run executes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .common import ModelSpec

METHODS = ("jem", "jempp", "sada_jem")


def config_for(spec: ModelSpec, method: str, **overrides):
    """The method's tiny preset on ``spec``'s dataset / network / batch (``resolve_config``)."""
    from jembench.reference_models.config import resolve_config

    values = {"dataset": spec.dataset, "seed": 0, "batch_size": spec.batch_size}
    if spec.key != "tiny":
        values.update(depth=spec.depth, width=spec.width)
    cfg = resolve_config(method, "tiny", {**values, **overrides})
    if cfg.px_unaugmented and cfg.px_batch_size:
        cfg = cfg.replace(px_batch_size=spec.batch_size)
    return cfg


def plain_config(cfg):
    """The plain classifier with the same network, optimiser and batch: no p(x) term, no SAM."""
    return cfg.replace(method="softmax", px_weight=0.0, sam_rho=0.0, px_unaugmented=False, px_batch_size=0)


@functools.lru_cache(maxsize=4)
def _train_set(name: str):
    from jembench.data import load_dataset

    return load_dataset(name, "train")


def fixed_batches(spec: ModelSpec, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` un-augmented training images and labels of ``spec.dataset`` (the same every call)."""
    ds = _train_set(spec.dataset)
    step = max(1, len(ds) // (n + offset + 1))  # spread over the classes of a class-sorted folder
    items = [ds[(offset + i) * step % len(ds)] for i in range(n)]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def _class_gaussian_cache(cfg, out_dir: Path, spec: ModelSpec, n_classes: int) -> None:
    """For 32×32 data: write the informative-init cache the loop reads (``informative_init.pt``) from class
    means of a few images and a fixed dense covariance factor. Sampling costs exactly what a fitted one costs
    (a dense D×D product per class); fitting 3072-d covariances to 50,000 JPEGs is set-up, not iteration."""
    from jembench import atomic
    from jembench.sampling import ClassGaussianInit
    from jembench.reference_models.informative_init import CACHE_NAME

    x, y = fixed_batches(spec, 20 * n_classes)
    flat = x.flatten(1)
    means = torch.stack([flat[y == c].mean(0) if (y == c).any() else flat.mean(0) for c in range(n_classes)])
    tril = (0.25 * torch.eye(flat.shape[1])).expand(n_classes, -1, -1).contiguous()
    atomic.torch_save(out_dir / CACHE_NAME, ClassGaussianInit(means, tril, spec.image_shape).state_dict())


def build_state(cfg, spec: ModelSpec, out_dir: Path, device: str = "cpu", ddp: bool = False):
    """A :class:`jembench.reference_models.train_loop.TrainState` as ``train`` builds it (``ddp``: wrap in DDP)."""
    from jembench import distributed
    from jembench.data import dataset_info
    from jembench.reference_models import train_loop as tl
    from jembench.reference_models.sam import SAM
    from jembench.reference_models.wideresnet import wide_resnet

    info = dataset_info(cfg.dataset, cfg.data_root)
    world = distributed.world_size()
    arch_kwargs = {"depth": cfg.depth, "widen_factor": cfg.width, "n_classes": info.n_classes,
                   "in_channels": info.image_shape[0], "norm": None if cfg.norm == "none" else cfg.norm,
                   "dropout_rate": cfg.dropout}
    dev = torch.device(device)
    model = wide_resnet(**arch_kwargs).to(dev)
    optimizer = tl.build_optimizer(cfg, model)
    iters_per_epoch = max(1, 50_000 // cfg.batch_size if spec.key != "tiny" else 1437 // cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, tl.lr_factor(cfg, iters_per_epoch))
    sam = SAM(optimizer, cfg.sam_rho, cfg.sam_adaptive) if cfg.sam_rho > 0 else None
    buffer = None
    if cfg.px_weight > 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.init == "class_gaussian" and spec.key != "tiny" and distributed.is_main():
            _class_gaussian_cache(cfg, out_dir, spec, info.n_classes)
        distributed.barrier()
        buffer = tl.build_buffer(cfg, out_dir, info.n_classes, info.image_shape, dev, world)
    net = distributed.wrap_ddp(model, dev, info.image_shape) if ddp else model
    return tl.TrainState(cfg, model, net, optimizer, scheduler, sam, buffer)


def iteration_inputs(cfg, spec: ModelSpec, device: str = "cpu", batch: int | None = None):
    """(x, y, x_px) of one iteration: the labelled batch, and a second batch for DA-free p(x) (SADA-JEM)."""
    b = batch or cfg.batch_size
    x, y = fixed_batches(spec, b)
    x_px = fixed_batches(spec, b, offset=b)[0] if cfg.px_unaugmented and cfg.px_weight > 0 else x
    return x.to(device), y.to(device), x_px.to(device)


def sam_passes(cfg) -> int:
    return 2 if cfg.sam_rho > 0 else 1


def batches_per_pass(cfg) -> int:
    """Forward/backward batches per objective evaluation: x̂ and x, plus x_px when DA-free (SADA-JEM)."""
    if cfg.px_weight <= 0:
        return 1
    return 3 if cfg.px_unaugmented else 2
