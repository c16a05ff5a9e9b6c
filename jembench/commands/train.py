"""``jembench train METHOD``: train a reference model (preset + any hyperparameter override)."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields

from ._common import add_progress_argument

NAME = "train"
ORDER = 10
HELP = "train a reference model: jem, jempp, sada_jem, softmax, softmax_sam"
DESCRIPTION = ("Train a reference model with a preset (paper hyperparameters, or tiny for a CPU) and optional "
               "overrides of any hyperparameter. Writes OUT/last.pt (checkpoint with weights, replay buffer, "
               "optimizer and RNG states), OUT/log.csv, OUT/config.json and PNG grids of buffer samples. "
               "Under `torchrun --nproc_per_node=K -m jembench train ...` it runs distributed data parallel "
               "(gloo on CPUs, nccl on GPUs; each process its own data and buffer shard; rank 0 writes). "
               "A diverging run is rolled back to its last good state with a lower lr, more SGLD steps and a new "
               "seed (--max-recoveries times; events in OUT/events.jsonl).")

_SKIP = {"method"}  # positional


def add_arguments(p: argparse.ArgumentParser) -> None:
    from reference_models import available_methods
    from reference_models.config import TrainConfig

    p.add_argument("method", choices=available_methods(), help="training method")
    p.add_argument("--preset", default="tiny", choices=preset_names(),
                   help="hyperparameter preset: 'tiny' (CPU minutes), 'paper' (the paper's / official code's "
                        "defaults, WRN-28-10, GPU-sized) or, for jempp and sada_jem, 'paper-k5' / 'paper-k10' / "
                        "'paper-k20' (paper with K = M = 5 / 10 / 20 SGLD steps)")
    p.add_argument("--out", default=None, help="run folder (default runs/<method>-<dataset>)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run in DIR from its newest checkpoint (DIR/last.pt); options given here "
                        "override the stored config (e.g. --epochs to extend)")
    add_progress_argument(p, "hide the progress bar (default: a bar when stderr is a terminal)")
    hyper = p.add_argument_group("hyperparameters (default: from the preset)")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.name in _SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            hyper.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f.metadata["help"])
        elif kind is list:
            hyper.add_argument(flag, dest=f.name, type=float, nargs="*", default=None, help=f.metadata["help"])
        else:
            hyper.add_argument(flag, dest=f.name, type=kind, default=None, help=f.metadata["help"])


def preset_names() -> list[str]:
    """Every preset some method defines, in a stable order (each method lists its own in ``PRESETS``)."""
    from reference_models import available_methods, get_method

    names: list[str] = []
    for method in available_methods():
        names += [n for n in get_method(method).PRESETS if n not in names]
    return names


def overrides_from_args(args) -> dict:
    from reference_models.config import TrainConfig

    return {name: getattr(args, name) for name in TrainConfig.field_names()
            if name not in _SKIP and getattr(args, name, None) is not None}


def run(args) -> int:
    from .. import distributed
    from ..runtime import keep_freed_memory
    from ..training import train

    keep_freed_memory()  # the allocator only; training keeps the official arithmetic (no flush-to-zero)
    try:
        ckpt = train(args.method, args.preset, args.resume or args.out, resume=bool(args.resume),
                     progress=args.progress, **overrides_from_args(args))
        main = distributed.is_main()
    finally:
        distributed.cleanup()
    if main:
        print(f"checkpoint: {ckpt}")
    return 0
