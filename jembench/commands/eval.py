"""``jembench eval``: run evaluation suites on checkpoints, print paper-style tables, write JSON records."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import atomic
from ..defaults import DEFAULT_DATA_ROOT
from ..errors import JembenchError
from ._common import add_device_argument, add_seed_argument

NAME = "eval"
ORDER = 20
HELP = "evaluate checkpoints with standardized suites and write JSON records"
DESCRIPTION = ("Evaluate one or more checkpoints (ours or the official JEM code's) with one or more suites. "
               "Each (checkpoint, suite) pair prints a paper-style table and writes a JSON record plus PNG "
               "figures. Protocols are TOML files in suites/ whose hash goes into the record.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..suites import available_suites

    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint files (.pt)")
    p.add_argument("--suite", action="append", default=None,
                   help=f"suite to run, repeatable, or 'all' ({', '.join(available_suites())}); default accuracy")
    p.add_argument("--preset", choices=["paper", "tiny"], default="paper",
                   help="protocol preset: suites/<suite>.toml (paper) or suites/<suite>-tiny.toml (CPU minutes)")
    p.add_argument("--protocol", default=None, help="protocol TOML path or name (only with a single --suite)")
    p.add_argument("--out", default=None,
                   help="record path (FILE.json) for one checkpoint and one suite, else a folder; default "
                        "<checkpoint folder>/eval/<suite>.json")
    p.add_argument("--dataset", default=None,
                   help="evaluation dataset; default: the one the checkpoint was trained on (needed for official "
                        "JEM checkpoints)")
    p.add_argument("--data-root", default=None, help="folder holding torchvision datasets (env JEMBENCH_DATA)")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download datasets")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation batch size")
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (results equal eager within float rounding; the first "
                        "batch of each shape compiles, tens of seconds on a CPU; robustness stays eager)")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last weights (faster convolutions for 3-channel 32x32 networks on x86 CPUs and "
                        "tensor-core GPUs; see benchmarks/README.md)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need arbitrary unpickling (runs code from the file: only for "
                        "files you trust)")
    gen = p.add_argument_group("generation suite")
    gen.add_argument("--inception-weights", default=None,
                     help="path of torch-fidelity's Inception weights (weights-inception-2015-12-05-6726825d.pth)")
    gen.add_argument("--n-samples", type=int, default=None, help="fresh SGLD samples to draw (overrides protocol)")
    gen.add_argument("--steps", type=int, default=None, help="SGLD steps for fresh samples (overrides protocol)")
    gen.add_argument("--init", choices=["uniform", "informative"], default=None,
                     help="initial distribution of fresh chains (overrides protocol)")
    gen.add_argument("--ensemble", action="store_true",
                     help="also score the union of all given checkpoints' buffers (JEM App. B 'ensemble')")
    add_device_argument(p)
    add_seed_argument(p)


def _suites(requested: list[str] | None) -> list[str]:
    from ..suites import available_suites, get_suite

    names = requested or ["accuracy"]
    if "all" in names:
        return available_suites()
    for name in names:
        get_suite(name)  # raises a clear error for unknown names
    return names


def _record_path(args, ckpt_path: Path, suite: str, single: bool) -> Path:
    if args.out is None:
        return ckpt_path.parent / "eval" / f"{suite}.json"
    out = Path(args.out)
    if single and out.suffix == ".json":
        return out
    return out / f"{ckpt_path.stem}-{suite}.json"


def run(args) -> int:
    from .. import distributed
    from ..evaluate import protocol_for, run_suite
    from ..models import load_checkpoint
    from ..runtime import configure_torch
    from ..suites import get_suite

    configure_torch()
    suites = _suites(args.suite)
    if args.protocol and len(suites) > 1:
        raise JembenchError("--protocol applies to one suite; pass a single --suite or use --preset")
    if args.batch_size <= 0:
        raise JembenchError(f"--batch-size must be positive, got {args.batch_size}")
    if args.compile:
        from ..compile import compile_unavailable_reason

        reason = compile_unavailable_reason()
        if reason is not None:
            raise JembenchError(reason)
    distributed.init(args.device)
    device = distributed.device_for_rank(args.device)
    options = {k: getattr(args, k) for k in ("inception_weights", "n_samples", "steps", "init", "ensemble")}
    options["ensemble_checkpoints"] = list(args.checkpoints) if args.ensemble else []
    protocols = {s: protocol_for(s, args.preset, args.protocol) for s in suites}
    single = len(suites) == 1 and len(args.checkpoints) == 1
    out_paths = {(c, s): _record_path(args, Path(c), s, single) for c in args.checkpoints for s in suites}
    for path in out_paths.values():
        atomic.ensure_writable_dir(path.parent)
    for ckpt_arg in args.checkpoints:
        ckpt = load_checkpoint(ckpt_arg, device=device, dataset=args.dataset, trust=args.trust_checkpoint)
        for suite_name in suites:
            out = out_paths[(ckpt_arg, suite_name)]
            record = run_suite(ckpt, suite_name, protocols[suite_name], out, dataset=args.dataset,
                               data_root=args.data_root or DEFAULT_DATA_ROOT, download=args.download, device=device,
                               seed=args.seed, batch_size=args.batch_size, options=options,
                               compile=args.compile, channels_last=args.channels_last)
            if distributed.is_main():
                print(get_suite(suite_name).format_table(record))
                print(f"record: {out}\n")
    distributed.cleanup()
    return 0
