"""``jembench export CKPT OUT``: a small, evaluation-only copy of a training checkpoint (for committing or sharing)."""

from __future__ import annotations

from pathlib import Path

NAME = "export"
ORDER = 35
HELP = "write a compact, evaluation-only copy of a checkpoint (weights + a uint8 replay-buffer subset)"
DESCRIPTION = ("Copy a jembench checkpoint without its optimizer, scheduler and RNG state, keeping the weights, "
               "the architecture, the training config and a seeded random subset of the replay buffer stored as "
               "uint8 (lossless for IS / FID, which quantize to uint8 anyway). The copy evaluates like the "
               "original but cannot be resumed.")


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="a checkpoint written by `jembench train` (e.g. runs/jem/last.pt)")
    p.add_argument("out", help="the compact checkpoint to write (.pt); written atomically")
    p.add_argument("--buffer-n", type=int, default=1000,
                   help="replay-buffer chains to keep (the generation suite's buffer source scores them); "
                        "0 keeps none")
    p.add_argument("--seed", type=int, default=0, help="seed of the random buffer subset")


def run(args) -> int:
    from .. import atomic
    from ..errors import JembenchError
    from ..models import compact_checkpoint

    if args.buffer_n < 0:
        raise JembenchError(f"--buffer-n must be >= 0, got {args.buffer_n}")
    if Path(args.out).resolve() == Path(args.checkpoint).resolve():
        raise JembenchError(f"the output {args.out} is the checkpoint itself; write the compact copy elsewhere")
    atomic.ensure_writable_dir(Path(args.out).parent or Path("."))
    summary = compact_checkpoint(args.checkpoint, args.out, args.buffer_n, seed=args.seed)
    print(f"{summary['path']}: {summary['bytes'] / 1e6:.2f} MB, {summary['buffer_n']} buffer images (uint8)")
    return 0
