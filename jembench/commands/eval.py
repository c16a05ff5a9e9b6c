"""``jembench eval``: run evaluation suites on checkpoints (or a model from your code), print paper-style tables,
write JSON records. Each option is a keyword of :func:`jembench.evaluation.evaluate`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import atomic, escape, progress
from ..errors import JembenchError
from ._common import add_device_argument, add_progress_argument, add_seed_argument

NAME = "eval"
ORDER = 20
HELP = "evaluate checkpoints (or a model from your code) with standardized suites and write JSON records"
DESCRIPTION = ("Evaluate one or more checkpoints (ours or the official JEM / JEM++ / SADA-JEM code's) — or any "
               "torch.nn.Module "
               "defined in your code (--model package.module:factory [--weights FILE]) — with one or more suites. "
               "Each (model, suite) pair prints a paper-style table and writes a JSON record plus figures (PNG, with "
               "a vector PDF beside each). "
               "Protocols are TOML files shipped with jembench (suites/ in the repository) whose resolved settings' "
               "hash goes into the record. A suite that cannot run (e.g. generation without Inception weights) is "
               "skipped with a note when others run; exit 2 when every requested suite was skipped. Python: "
               "jembench.evaluate(model, suite, ...) takes the same options as keywords.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..evaluation import presets
    from ..suites import available_suites

    p.add_argument("checkpoints", nargs="*", metavar="CKPT", help="checkpoint files (.pt)")
    p.add_argument("--model", default=None, metavar="PKG.MODULE:FACTORY",
                   help="evaluate the nn.Module that FACTORY() builds (images in [-1, 1] -> logits) instead of a "
                        "checkpoint; needs --dataset")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="with --model: state dict to load (torch.save file: bare, or under state_dict / "
                        "model_state_dict), read with weights_only=True")
    p.add_argument("--buffer", default=None, metavar="FILE",
                   help="replay-buffer images (torch.save'd tensor N x C x H x W in [-1, 1]) for the generation "
                        "suite; replaces a checkpoint's own buffer")
    p.add_argument("--method", default=None,
                   help="method named in the record (jem, jempp, sada_jem, softmax, ...: what `jembench check` "
                        "matches published rows by); default: the checkpoint's ('jem' for the JEM code's files, "
                        "'jempp' for JEM++ YOPO files; required for official files without f.linear or YOPO aliases, "
                        "e.g. SADA-JEM's), 'custom' for --model")
    p.add_argument("--uncond", action="store_true",
                   help="official checkpoint trained with --uncond (the F model): log p(x) is its energy_output "
                        "head, not the logsumexp of the logits, in every suite")
    p.add_argument("--name", default=None, help="model name in the record (default: the checkpoint's / factory's)")
    p.add_argument("--suite", action="append", default=None,
                   help=f"suite to run, repeatable, or 'all' ({', '.join(available_suites())}); default accuracy")
    p.add_argument("--preset", choices=presets(), default="paper",
                   help="protocol preset: suites/<suite>.toml (paper) or suites/<suite>-<preset>.toml: tiny (digits, "
                        "CPU minutes), cpu (32x32 on a CPU, minutes), <paper>-official (the paper's own evaluation "
                        "code); with several suites, one without that preset is skipped with a note")
    p.add_argument("--protocol", default=None, help="protocol TOML path or name (only with a single --suite)")
    p.add_argument("--out", default=None,
                   help="record path (FILE.json) for one model and one suite, else a folder of <stem>-<suite>.json "
                        "(checkpoints whose names collide, such as a/last.pt and b/last.pt, are named after their "
                        "folders too: a-last-<suite>.json); default <checkpoint folder>/eval/<suite>.json (--model: "
                        "runs/<name>/eval/<suite>.json)")
    p.add_argument("--dataset", default=None,
                   help="evaluation dataset; default: the one the checkpoint was trained on (needed for official "
                        "checkpoints and --model)")
    p.add_argument("--data-root", default=None,
                   help="folder holding torchvision datasets (default: $JEMBENCH_DATA, else data)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download datasets (default: download a missing torchvision dataset)")
    p.add_argument("--batch-size", type=int, default=256,
                   help="evaluation batch size (a protocol's batch_size, e.g. the official 100, takes precedence)")
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader worker processes decoding images (default 0: in the main process)")
    p.add_argument("--dataset-label", default=None, metavar="TEXT",
                   help="how tables, figures and records name the evaluation dataset (default: the checkpoint's "
                        "dataset_label, else the registry's label or the folder's name)")
    p.add_argument("--bn-mode", choices=["eval", "train"], default=None,
                   help="accuracy / calibration / ood: run the model in eval mode (batch-norm running statistics) "
                        "or train mode (batch statistics, as JEM's eval_wrn_ebm.py); overrides the protocol")
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
    gen.add_argument("--steps", type=int, default=None,
                     help="SGLD steps for fresh samples (overrides the protocol's sgld.n_steps)")
    gen.add_argument("--init", choices=["uniform", "informative", "checkpoint"], default=None,
                     help="initial distribution of fresh chains (overrides protocol; checkpoint = the p_0 the "
                          "checkpoint's buffer came from)")
    gen.add_argument("--informative-stats", nargs=2, default=None, metavar=("MEAN", "COV"),
                     help="the authors' class statistics (<dataset>_mean.pt [C, D], <dataset>_cov.pt [C, D, D], "
                          "bare tensors) as the informative p_0 of fresh chains, N(mean, cov + 1e-4 I)")
    gen.add_argument("--ensemble", action="store_true",
                     help="also score the union of all given checkpoints' buffers (JEM App. B 'ensemble')")
    add_device_argument(p)
    add_seed_argument(p)
    add_progress_argument(p, "no progress bars (one line per finished unit instead); bars are on when stderr is a "
                             "terminal")


def _suites(requested: list[str] | None) -> list[str]:
    from ..suites import available_suites, get_suite

    names = requested or ["accuracy"]
    if "all" in names:
        return available_suites()
    for name in names:
        get_suite(name)  # raises a clear error for unknown names
    return names


def _record_path(args, model: str, suite: str, single: bool, qualify: int = 0) -> Path:
    """Where the record of (``model``, ``suite``) goes; ``qualify`` > 0 names it after that many of the
    checkpoint's folders too (``a/last.pt`` → ``a-last-<suite>.json``), for checkpoints whose names collide."""
    stem = Path(model).stem if not args.model else (args.name or args.model.rpartition(":")[2])
    if args.out is None:
        folder = (Path(model).parent if not args.model else Path("runs") / stem) / "eval"
        return folder / (f"{stem}-{suite}.json" if qualify else f"{suite}.json")
    out = Path(args.out)
    if single and out.suffix == ".json":
        return out
    if qualify and not args.model:
        parents = [p.name for p in Path(os.path.realpath(model)).parents][:qualify][::-1]
        stem = "-".join([*(p for p in parents if p), stem])
    return out / f"{stem}-{suite}.json"


def record_paths(args, models: list[str], suites: list[str], single: bool) -> dict[tuple[str, str], Path]:
    """One distinct record path per (model, suite): checkpoints whose default names collide (``a/last.pt`` and
    ``b/last.pt`` into one ``--out`` folder, or two checkpoints of one folder) are named after their folders too
    (up to three levels); a checkpoint given twice, or names that still collide, are a one-line error — never
    one record silently overwriting another."""
    real = [os.path.realpath(m) for m in models]  # never raises, even for a symlink loop
    if len(set(real)) < len(models):
        twice = next(m for i, m in enumerate(models) if real[i] in real[:i])
        raise JembenchError(f"checkpoint {twice} is given twice; pass each checkpoint once")
    qualify = {m: 0 for m in models}
    for _ in range(4):
        paths = {(m, s): _record_path(args, m, s, single, qualify[m]) for m in models for s in suites}
        seen: dict[Path, list[str]] = {}
        for (m, _s), path in paths.items():
            seen.setdefault(path, []).append(m)
        clashing = {m for ms in seen.values() if len(ms) > 1 for m in ms}
        if not clashing:
            return paths
        for m in clashing:
            qualify[m] += 1
    path, ms = next((p, ms) for p, ms in seen.items() if len(ms) > 1)
    raise JembenchError(f"checkpoints {ms[0]} and {ms[1]} would write the same record {path}; evaluate them "
                        f"into separate --out folders")


def run(args) -> int:
    from .. import distributed
    from ..evaluation import apply_overrides, as_checkpoint, presets, protocol_for, run_suite
    from ..models import load_tensor_file, load_weights_file, module_from_factory
    from ..runtime import configure_torch
    from ..suites import get_suite

    progress.configure(None if args.progress else False)  # None: bars when stderr is a terminal
    configure_torch()
    if bool(args.model) == bool(args.checkpoints):
        raise JembenchError("pass checkpoint files or --model PKG.MODULE:FACTORY (one of the two)")
    if args.weights and not args.model:
        raise JembenchError("--weights goes with --model; a checkpoint file holds its own weights")
    if args.ensemble and args.model:
        raise JembenchError("--ensemble pools the buffers of several checkpoints; it does not apply to --model")
    suites = _suites(args.suite)
    if args.protocol and len(suites) > 1:
        raise JembenchError("--protocol applies to one suite; pass a single --suite or use --preset")
    if args.batch_size <= 0:
        raise JembenchError(f"--batch-size must be positive, got {args.batch_size}")
    if args.workers < 0:
        raise JembenchError(f"--workers must be >= 0, got {args.workers}")
    if args.compile:
        from ..compile import compile_unavailable_reason

        reason = compile_unavailable_reason()
        if reason is not None:
            raise JembenchError(reason)
    distributed.init(args.device)
    device = distributed.device_for_rank(args.device)
    if not args.protocol and len(suites) > 1:  # --suite all --preset cpu: suites without that preset are skipped
        missing = [s for s in suites if args.preset not in presets(s)]
        for s in missing:
            print(f"note: {s} skipped: no suites/{s}-{args.preset}.toml (its presets: {', '.join(presets(s))})",
                  file=sys.stderr)
        suites = [s for s in suites if s not in missing] or suites
    protocols = {s: apply_overrides(protocol_for(s, args.preset, args.protocol), n_samples=args.n_samples,
                                    steps=args.steps, init=args.init, bn_mode=args.bn_mode) for s in suites}
    models = [args.model] if args.model else list(args.checkpoints)
    single = len(suites) == 1 and len(models) == 1
    out_paths = record_paths(args, models, suites, single)
    for path in out_paths.values():
        atomic.ensure_writable_dir(path.parent)
    buffer = load_tensor_file(args.buffer, "--buffer") if args.buffer else None
    ensemble = list(args.checkpoints) if args.ensemble else []
    ran, skipped = 0, []
    for model_arg in models:
        if args.model:
            module = module_from_factory(args.model)
            if args.weights:
                load_weights_file(module, args.weights)
            name = args.name or args.model.rpartition(":")[2]
            ckpt = as_checkpoint(module, dataset=args.dataset, data_root=args.data_root, device=device,
                                 buffer=buffer, method=args.method, name=name, weights=args.weights,
                                 uncond=args.uncond, informative_stats=args.informative_stats)
        else:
            ckpt = as_checkpoint(model_arg, dataset=args.dataset, device=device, buffer=buffer, method=args.method,
                                 name=args.name, trust_checkpoint=args.trust_checkpoint, uncond=args.uncond,
                                 informative_stats=args.informative_stats)
        for suite_name in suites:
            out = out_paths[(model_arg, suite_name)]
            try:
                record = run_suite(ckpt, suite_name, protocols[suite_name], out, dataset=args.dataset,
                                   data_root=args.data_root, download=args.download, device=device, seed=args.seed,
                                   batch_size=args.batch_size, inception_weights=args.inception_weights,
                                   ensemble=ensemble, compile=args.compile, channels_last=args.channels_last,
                                   workers=args.workers, dataset_label=args.dataset_label)
            except JembenchError as exc:
                if len(models) * len(suites) == 1:
                    raise
                skipped.append(f"{Path(model_arg).name}/{suite_name} skipped: {exc}")
                print(f"note: {skipped[-1]}", file=sys.stderr)
                continue
            ran += 1
            if distributed.is_main():
                # names from the checkpoint / dataset made one line each, so they cannot split the table's rows
                print(get_suite(suite_name).format_table(escape.deep(record, escape.one_line)))
                print(f"record: {out}\n")
    distributed.cleanup()
    if not ran:
        raise JembenchError(f"every requested suite was skipped ({len(skipped)}); see the notes above")
    return 0
