"""The options of an evaluation, declared once: the ``jembench eval`` flags and the ``jembench.evaluate`` keywords.

:class:`EvalOptions` is a settings class (:mod:`jembench.schema`): each field is one option with its type,
default, range or choices and help text, and :mod:`jembench.options` generates from it both the command-line
flag (``batch_size`` → ``--batch-size``; ``download`` → ``--no-download``) and the Python keyword of the same
name with the same default. Values are checked here, before torch is imported; a bad one is a one-line
:class:`~jembench.errors.JembenchError` naming the flag or keyword.

Adding an option is one field here; the library reads it as ``options.<name>`` (:mod:`jembench.evaluation`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import untrusted
from .precision import HELP as PRECISION_HELP
from .precision import PRECISIONS
from .protocols import Protocol
from .runtime import device_name
from .schema import setting
from .suites import BN_MODES

#: p_0 choices of fresh generation chains (the generation protocol's ``init``)
INITS = ("uniform", "informative", "checkpoint")


def preset_names(suite: str | None = None) -> list[str]:
    """The ``--preset`` names the shipped protocol files define: ``paper`` (``suites/<suite>.toml``) and every
    ``<preset>`` of a ``suites/<suite>-<preset>.toml`` (``tiny``, ``cpu``, ``jem-official``, ...) — of one suite,
    or of any suite."""
    from .protocols import available_protocols
    from .suites import SUITE_MODULES

    names = {"paper"}
    for stem in available_protocols():
        for s in ([suite] if suite else SUITE_MODULES):
            if stem.startswith(f"{s}-"):
                names.add(stem[len(s) + 1:])
    return sorted(names, key=lambda p: (p != "paper", p))


def _preset(value: Any) -> str:
    if not isinstance(value, str) or value not in preset_names():
        raise ValueError(f"must be one of {', '.join(map(repr, preset_names()))}")
    return value


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "shape")


def _path_or_tensor(value: Any) -> Any:
    """A file path (str / path-like) or, from Python, the tensor itself."""
    if _is_tensor(value):
        return value
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return Path(os.fspath(value))
    raise ValueError(f"must be a tensor (N x C x H x W in [-1, 1]) or the path of a torch.save'd one, not "
                     f"{type(value).__name__}")


def _protocol(value: Any) -> Any:
    """A protocol name (``ood-tiny``), a TOML path, or a :class:`jembench.protocols.Protocol`."""
    if isinstance(value, Protocol):
        return value
    if isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return os.fspath(value)
    raise ValueError(f"must be a protocol name, a .toml path or a jembench.Protocol, not {type(value).__name__}")


def _ensemble(value: Any) -> Any:
    """True (the command line's ``--ensemble``: pool the buffers of every checkpoint evaluated), False, or the
    checkpoints (paths) / buffer tensors to pool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)) and all(_is_tensor(v) or isinstance(v, (str, os.PathLike)) for v in value):
        return tuple(v if _is_tensor(v) else Path(os.fspath(v)) for v in value)
    raise ValueError("must be True / False or a list of checkpoint paths and buffer tensors")


GEN = {"group": "generation suite"}


@dataclass(frozen=True)
class EvalOptions:
    """How ``jembench eval`` / ``jembench.evaluate`` evaluate (the model and the suite are the call's arguments)."""

    preset: str = setting("paper", convert=_preset, arg={"choices": preset_names},
                          help="protocol preset: suites/<suite>.toml (paper) or suites/<suite>-<preset>.toml: tiny "
                               "(digits, CPU minutes), cpu (32x32 on a CPU, minutes), <paper>-official (the paper's "
                               "own evaluation code); with several suites, one without that preset is skipped with a "
                               "note")
    protocol: str | Protocol | None = setting(None, convert=_protocol, arg={"type": str},
                                         help="protocol TOML path or name (only with a single suite); from Python "
                                              "also a jembench.Protocol")
    out: Path | None = setting(None, help="record path (FILE.json) for one model and one suite, else a folder; "
                                          "default <checkpoint folder>/eval/<suite>.json (a module: "
                                          "runs/<name>/eval/<suite>.json)")
    dataset: str | None = setting(None, help="evaluation dataset; default: the one the checkpoint was trained on "
                                             "(needed for official checkpoints and modules)")
    data_root: Path | None = setting(None, help="folder holding torchvision datasets (default: $JEMBENCH_DATA, "
                                                "else data)")
    download: bool = setting(True, help="download a missing torchvision dataset",
                             arg={"help": "never download datasets (default: download a missing torchvision "
                                          "dataset)"})
    batch_size: int = setting(256, ge=1, help="evaluation batch size (a protocol's batch_size, e.g. the official "
                                              "100, takes precedence)")
    workers: int = setting(0, ge=0, le=64, help="DataLoader worker processes decoding images (0: in the main "
                                                "process)")
    method: str | None = setting(None, help="method named in the record (jem, jempp, sada_jem, softmax, ...: what "
                                            "`jembench check` matches published rows by); default: the checkpoint's "
                                            "('jem' for the JEM code's files, 'jempp' for JEM++ YOPO files; required "
                                            "for official files without f.linear or YOPO aliases, e.g. SADA-JEM's), "
                                            "'custom' for a module")
    name: str | None = setting(None, help="model name in the record (default: the checkpoint's / factory's)")
    dataset_label: str | None = setting(None, arg={"metavar": "TEXT"},
                                        help="how tables, figures and records name the evaluation dataset (default: "
                                             "the checkpoint's dataset_label, else the registry's label or the "
                                             "folder's name)")
    weights: Path | None = setting(None, arg={"metavar": "FILE"},
                                   help="with a module (--model): state dict to load (torch.save file: bare, or under "
                                        "state_dict / model_state_dict), read with weights_only=True")
    buffer: Path | Any | None = setting(None, convert=_path_or_tensor, arg={"type": str, "metavar": "FILE"},
                                        help="replay-buffer images (a torch.save'd tensor N x C x H x W in [-1, 1]; "
                                             "from Python also the tensor) for the generation suite; replaces a "
                                             "checkpoint's own buffer")
    uncond: bool = setting(False, help="official checkpoint trained with --uncond (the F model): log p(x) is its "
                                       "energy_output head, not the logsumexp of the logits, in every suite")
    trust_checkpoint: bool = setting(False, help="allow checkpoints that need arbitrary unpickling (runs code from "
                                                 "the file: only for files you trust)")
    bn_mode: str | None = setting(None, choices=BN_MODES,
                                  help="accuracy / calibration / ood: run the model in eval mode (batch-norm running "
                                       "statistics) or train mode (batch statistics, as JEM's eval_wrn_ebm.py); "
                                       "overrides the protocol")
    compile: bool = setting(False, help="run the model through torch.compile (results equal eager within float "
                                        "rounding; the first batch of each shape compiles, tens of seconds on a CPU; "
                                        "robustness stays eager)")
    channels_last: bool = setting(False, help="channels-last weights (faster convolutions for 3-channel 32x32 "
                                              "networks on x86 CPUs and tensor-core GPUs; see benchmarks/README.md)")
    inception_weights: Path | None = setting(None, arg=GEN,
                                             help="path of torch-fidelity's Inception weights "
                                                  "(weights-inception-2015-12-05-6726825d.pth)")
    n_samples: int | None = setting(None, ge=1, arg=GEN, help="fresh SGLD samples to draw (overrides the protocol)")
    steps: int | None = setting(None, ge=0, arg=GEN,
                                help="SGLD steps for fresh samples (overrides the protocol's sgld.n_steps)")
    init: str | None = setting(None, choices=INITS, arg=GEN,
                               help="initial distribution of fresh chains (overrides the protocol; checkpoint = the "
                                    "p_0 the checkpoint's buffer came from)")
    informative_stats: tuple[Path, ...] | None = setting(
        None, length=2, arg={**GEN, "metavar": ("MEAN", "COV")},
        help="the authors' class statistics (<dataset>_mean.pt [C, D], <dataset>_cov.pt [C, D, D], bare tensors) "
             "as the informative p_0 of fresh chains, N(mean, cov + 1e-4 I)")
    ensemble: bool | tuple = setting(False, convert=_ensemble, arg={**GEN, "action": "store_true"},
                                     help="also score the union of the buffers of all checkpoints evaluated (JEM "
                                          "App. B 'ensemble'); from Python also a list of checkpoint paths and "
                                          "buffer tensors")
    device: str = setting("cpu", convert=device_name, help="torch device: cpu, cuda, cuda:1, mps ...")
    precision: str = setting("fp32", choices=PRECISIONS, help=PRECISION_HELP)
    micro_batch: int = setting(0, ge=0, help="robustness: images per forward pass through the SGLD refinement (EOT "
                                             "draws and attacks are split into chunks of this many; 0 = all at once). "
                                             "Memory only: the numbers equal the unchunked computation's, so it is "
                                             "not part of the protocol (the paper protocol on a WRN-28-10 fits a "
                                             "40 GB GPU with about 120, an estimate: README)")
    seed: int = setting(0, ge=0, lt=2**63, help="seed for torch, numpy and python RNGs")
    progress: bool = setting(True, help="progress bars when stderr is a terminal, else one line per finished unit",
                             arg={"help": "no progress bars (one line per finished unit instead); bars are on "
                                          "when stderr is a terminal"})


# ------------------------------------------------------------------------------------------ the plan
def options_from_keywords(keywords: dict[str, Any], where: str = "jembench.evaluate") -> EvalOptions:
    """:class:`EvalOptions` from API keywords; an unknown keyword or a bad value is a one-line error naming it."""
    from . import options, schema

    opts = options.options(EvalOptions)
    changes = options.keyword_changes(keywords, opts, where)
    return schema.resolve(EvalOptions, schema.nest(changes), where, options.api_spelling(opts))


def options_from_arguments(args: Any) -> EvalOptions:
    """:class:`EvalOptions` from parsed ``jembench eval`` arguments, checked (errors spell the flags)."""
    from . import options, schema

    opts = options.options(EvalOptions)
    changes = {o.path: getattr(args, o.name) for o in opts}
    return schema.resolve(EvalOptions, schema.nest(changes), "bad option", options.cli_spelling(opts))


@dataclass(frozen=True)
class EvalPlan:
    """A checked evaluation: models × suites under ``options`` (what :func:`jembench.evaluation.run_plan` runs).
    ``notes``: suites left out because they have no protocol of the preset (with several suites)."""

    models: tuple
    suites: tuple[str, ...]
    options: EvalOptions
    notes: tuple[str, ...] = ()
    qualify: tuple[int, ...] = ()  # per model: how many of its folders its record names carry (see record_path)

    @property
    def single(self) -> bool:
        return len(self.models) == 1 and len(self.suites) == 1

    def record_path(self, index: int, suite: str) -> Path:
        """Where the record of model ``index`` and ``suite`` goes — the one rule: ``out`` for one model and one
        suite when it ends in ``.json``, else ``<out>/<model>-<suite>.json``; without ``out``,
        ``<checkpoint folder>/eval/<suite>.json`` for a file and ``runs/<model name>/eval/<suite>.json`` for a
        module. Checkpoints whose record names would collide (``a/last.pt`` and ``b/last.pt`` into one ``out``,
        two checkpoints of one folder) are named after their folders too (``qualify``, set by :func:`plan`):
        ``<out>/a-last-<suite>.json``, ``<checkpoint folder>/eval/<stem>-<suite>.json``."""
        model = self.models[index]
        is_file = isinstance(model, (str, Path))
        stem = Path(model).stem if is_file else model_name(model, self.options.name)
        level = self.qualify[index] if index < len(self.qualify) else 0
        out = self.options.out
        if out is None:
            folder = (Path(model).parent if is_file else Path("runs") / stem) / "eval"
            return folder / (f"{stem}-{suite}.json" if level else f"{suite}.json")
        if self.single and out.suffix == ".json":
            return out
        if level and is_file:
            parents = [p.name for p in Path(os.path.realpath(model)).parents][:level][::-1]
            stem = "-".join([*(p for p in parents if p), stem])
        return out / f"{stem}-{suite}.json"


def _distinct_records(draft: EvalPlan) -> EvalPlan:
    """``draft`` with record names that never collide: the models whose paths clash are qualified by their
    folders, one level at a time (up to three); a checkpoint given twice, or names that still clash (two
    modules of one name), are a one-line error — never one record silently overwriting another."""
    import dataclasses

    from .errors import JembenchError

    files = [os.path.realpath(m) for m in draft.models if isinstance(m, (str, Path))]  # never raises (loops)
    twice = next((f for i, f in enumerate(files) if f in files[:i]), None)
    if twice is not None:
        raise JembenchError(f"checkpoint {twice} is given twice; pass each checkpoint once")
    qualify = [0] * len(draft.models)
    for _ in range(4):
        current = dataclasses.replace(draft, qualify=tuple(qualify))
        owners: dict[Path, list[int]] = {}
        for i in range(len(draft.models)):
            for suite in draft.suites:
                owners.setdefault(current.record_path(i, suite), []).append(i)
        clash = sorted({i for who in owners.values() if len(who) > 1 for i in who})
        if not clash:
            return current
        for i in clash:
            qualify[i] += 1
    path, who = next((p, w) for p, w in owners.items() if len(w) > 1)
    names = [str(draft.models[i]) if isinstance(draft.models[i], (str, Path)) else model_name(draft.models[i],
                                                                                          draft.options.name)
             for i in who[:2]]
    raise JembenchError(f"{names[0]} and {names[1]} would write the same record {path}; evaluate them into "
                        f"separate --out folders or give them distinct names")


def model_name(model: Any, name: str | None) -> str:
    """The name of a model that is not a file: ``name``, else a module's class name (as
    :func:`jembench.models.from_module` names it) or a loaded checkpoint's own name."""
    if name:
        return name
    return type(model).__name__.lower() if hasattr(model, "forward") else str(getattr(model, "name", "model"))


def plan(models: list, suites: list[str] | str, options: EvalOptions, where: str = "jembench.evaluate") -> EvalPlan:
    """Check a call before any work (and before torch is imported): suite names (``all`` = every suite), each
    suite's preset, options that contradict each other or the models, and that checkpoint files exist."""
    from .errors import JembenchError
    from .suites import available_suites

    names = [suites] if isinstance(suites, str) else list(suites)
    for name in names:
        if not isinstance(name, str):
            raise JembenchError(f"{where}: suite {name!r} must be a suite name: one of "
                                f"{', '.join(available_suites())} or all")
        if name != "all" and name not in available_suites():
            raise JembenchError(f"unknown suite {name!r}; use one of {', '.join(available_suites())} or all")
    chosen = available_suites() if "all" in names else list(dict.fromkeys(names))
    files = [m for m in models if isinstance(m, (str, Path))]
    modules = [m for m in models if hasattr(m, "forward")]
    if options.protocol is not None and len(chosen) > 1:
        raise JembenchError("--protocol applies to one suite; pass a single --suite or use --preset")
    if options.weights is not None and files:
        raise JembenchError("--weights goes with --model (a module); a checkpoint file holds its own weights")
    if options.weights is not None:
        untrusted.check_file(options.weights, "weights", label="--weights")
    if options.ensemble is True and modules:
        raise JembenchError("--ensemble pools the buffers of several checkpoints; it does not apply to a module")
    for path in files:  # a missing, non-regular or oversized file, named now (jembench.untrusted)
        untrusted.check_file(path, "checkpoint")
    notes: list[str] = []
    if options.protocol is None:
        missing = [s for s in chosen if options.preset not in preset_names(s)]
        if missing and (len(chosen) == 1 or len(missing) == len(chosen)):
            raise JembenchError(f"suite {missing[0]!r} has no preset {options.preset!r} (no "
                                f"suites/{missing[0]}-{options.preset}.toml); its presets: "
                                f"{', '.join(preset_names(missing[0]))}")
        if missing and len(missing) < len(chosen):  # --suite all --preset cpu: suites without it are left out
            notes = [f"{s} skipped: no suites/{s}-{options.preset}.toml (its presets: "
                     f"{', '.join(preset_names(s))})" for s in missing]
            chosen = [s for s in chosen if s not in missing]
    return _distinct_records(EvalPlan(tuple(models), tuple(chosen), options, tuple(notes)))
