"""``jembench.train``: the library entry point of ``jembench train`` (the reference trainers, imported lazily).

What is trained is a :class:`jembench.reference_models.config.TrainConfig` (a method's preset with any field
changed); how the command runs is a :class:`TrainOptions`. Both are settings classes (:mod:`jembench.schema`), and the
``jembench train`` options and the keywords of :func:`train` are generated from them (:mod:`jembench.options`):
``--sgld-steps 40`` is ``sgld_steps=40``, ``--no-progress`` is ``progress=False``, ``--resume DIR`` is
``resume=DIR``. Every argument is checked — method, preset, every value's type, range and choices, the run
folder to resume — before torch is imported; a bad one is a one-line :class:`~jembench.errors.JembenchError`
naming it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import options, schema
from .errors import JembenchError
from .schema import setting

#: options of the training config that the command takes positionally (``jembench train METHOD``)
POSITIONAL = ("method",)


def preset_names() -> list[str]:
    """Every preset some method defines, in a stable order (each method lists its own in ``PRESETS``)."""
    from jembench.reference_models import available_methods, get_method

    names: list[str] = []
    for method in available_methods():
        names += [n for n in get_method(method).PRESETS if n not in names]
    return names


def _check_preset(value: Any) -> str:
    if not isinstance(value, str) or value not in preset_names():
        raise ValueError(f"must be one of {', '.join(map(repr, preset_names()))}")
    return value


def _check_resume(value: Any) -> Path | bool:
    """``resume``: a run folder to continue, or (as before) True = continue the run in ``out``; False = no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, Path)) and str(value):
        return Path(value)
    raise ValueError("must be the run folder to continue (a path), or True to continue the run in out")


@dataclass(frozen=True)
class TrainOptions:
    """How ``jembench train`` runs (the what is the :class:`~jembench.reference_models.config.TrainConfig`)."""

    preset: str = setting("tiny", convert=_check_preset, arg={"choices": preset_names},
                          help="hyperparameter preset: 'tiny' (CPU minutes), 'cpu' (32x32 on a CPU), 'paper' (the "
                               "paper's / official code's defaults, WRN-28-10, GPU-sized) or, for jempp and "
                               "sada_jem, 'paper-k5' / 'paper-k10' / 'paper-k20' (paper with K = M = 5 / 10 / 20 "
                               "SGLD steps); each with an official flavour, e.g. 'paper-official', that stops at "
                               "the first divergence as the official code does instead of rolling back and "
                               "retrying (--divergence stop)")
    out: Path | None = setting(None, help="run folder (default runs/<method>-<dataset>)")
    resume: Path | bool | None = setting(None, convert=_check_resume, arg={"type": str, "metavar": "DIR"},
                                         help="continue the run in DIR from its newest checkpoint (DIR/last.pt); "
                                              "options given here override the stored config (e.g. --epochs to "
                                              "extend)")
    progress: bool = setting(True, help="a progress bar on stderr when it is a terminal (else a heartbeat line with "
                                        "ETA every $JEMBENCH_HEARTBEAT s, default 30)",
                             arg={"help": "hide the progress bar (default: a bar when stderr is a terminal); "
                                          "without a bar a heartbeat line with ETA every $JEMBENCH_HEARTBEAT s "
                                          "(default 30; 0 = none)"})


def run_options() -> list[options.Option]:
    return options.options(TrainOptions)


def config_options() -> list[options.Option]:
    """The training config's options (every :class:`TrainConfig` field but the positional method)."""
    from jembench.reference_models.config import TrainConfig

    return options.options(TrainConfig, skip=POSITIONAL)


@dataclass(frozen=True)
class TrainRequest:
    """A checked ``jembench train`` call: the method, how to run, and the config (resolved unless resuming)."""

    method: str
    options: TrainOptions
    changes: dict[str, Any]  # field path -> value, as given
    config: Any  # the resolved TrainConfig (None when resuming: the stored config is read then)
    out: Path | None
    resume: bool


def prepare(method: Any, run_changes: dict[str, Any], config_changes: dict[str, Any], where: str,
            spell: Callable[[str, Any], str]) -> TrainRequest:
    """Check everything about a training call that can be checked without torch: the method, the options
    (``run_changes``: :class:`TrainOptions` paths), the config (``config_changes``: TrainConfig paths, on the
    method's preset) and, when resuming, that the run folder holds a checkpoint."""
    from jembench.reference_models import available_methods
    from jembench.reference_models.config import resolve_config

    if not isinstance(method, str) or method not in available_methods():
        raise JembenchError(f"{where}: unknown method {method!r}; use one of {', '.join(available_methods())}")
    opts = schema.resolve(TrainOptions, schema.nest(run_changes), where, spell)
    resume = opts.resume not in (None, False)
    out = opts.resume if isinstance(opts.resume, Path) else opts.out
    if resume:
        if out is None:
            raise JembenchError(f"{where}: resume=True needs out= (the run folder to continue)")
        last = out / "last.pt"
        if not last.is_file():
            raise JembenchError(f"cannot resume: {last} does not exist; start the run without --resume")
        config = None
    else:
        config = resolve_config(method, opts.preset, config_changes, where, spell)
    return TrainRequest(method, opts, dict(config_changes), config, out, resume)


def run(request: TrainRequest) -> Path:
    """Train what ``request`` says (:func:`jembench.reference_models.train_loop.train`); returns ``<out>/last.pt``."""
    from jembench.reference_models.train_loop import train as train_loop

    from .runtime import keep_freed_memory

    keep_freed_memory()  # the allocator only; training keeps the official arithmetic (no flush-to-zero)
    cfg = request.config if not request.resume else resumed_config(request)
    warn_if_gpu_idle(request.options.preset, cfg.device)
    out = request.out if request.out is not None else Path("runs") / cfg.run_name
    return Path(train_loop(cfg, out, resume=request.resume, progress=request.options.progress))


#: training options a resumed run cannot change: they define the network and the optimizer state it continues
FIXED_ON_RESUME = ("depth", "width", "norm", "dropout", "optimizer")


def resumed_config(request: TrainRequest):
    """The config stored in the run's ``last.pt`` with the call's changes on top."""
    from jembench.reference_models.config import TrainConfig, upgrade
    from jembench.reference_models.presets import derive

    assert request.out is not None, "prepare() gives a resumed run its folder"
    last = request.out / "last.pt"
    stored = upgrade(_stored_config(last))
    stored = {k: v for k, v in stored.items() if k in {f.name for f in TrainConfig.__dataclass_fields__.values()}}
    if stored.get("method") != request.method:
        raise JembenchError(f"{request.out} holds a {stored.get('method')!r} run, not {request.method!r}; "
                            f"pass the matching method")
    changed = [f"--{k} {stored[k]!r} -> {request.changes[k]!r}" for k in FIXED_ON_RESUME
               if k in request.changes and k in stored and request.changes[k] != stored[k]]
    if changed:
        raise JembenchError(f"cannot resume {request.out} with another network or optimizer ({', '.join(changed)}): "
                            f"its checkpoint holds the trained one; drop those options or start a new run")
    try:
        return TrainConfig.from_dict(derive(stored, **schema.nest(request.changes)))
    except JembenchError as exc:  # a stored value of the wrong type (hand-edited or foreign file)
        raise JembenchError(f"cannot resume: the training config stored in {last} is malformed ({exc}); "
                            f"start a new run in another folder") from None


def train(method: str, preset: str = "tiny", out: str | Path | None = None, **keywords: Any) -> Path:
    """Train a reference model (``jem``, ``jempp``, ``sada_jem``, ``softmax``, ``softmax_sam``) and return the
    path of its checkpoint (``<out>/last.pt``). The keywords are the ``jembench train`` options (``--x-y`` is
    ``x_y=``); every one is checked before anything runs.

    ``preset`` is ``tiny`` (CPU minutes), ``cpu``, ``paper`` or, for jempp / sada_jem, ``paper-k5`` / ``-k10`` /
    ``-k20``, each also as its official flavour (``paper-official``: stop at the first divergence); ``out`` defaults to
    ``runs/<method>-<dataset>``; ``resume`` continues a run (a folder, or True for ``out``) with its stored config and
    the given keywords on top. The other keywords set :class:`jembench.reference_models.config.TrainConfig` fields
    (default: the preset's value):

{keywords}
    """
    run_opts, config_opts = run_options(), config_options()
    spell = options.api_spelling(run_opts + config_opts)
    changes = options.keyword_changes(dict(keywords, preset=preset, out=out), run_opts + config_opts,
                                      "jembench.train")
    run_paths = {o.path for o in run_opts}
    request = prepare(method, {k: v for k, v in changes.items() if k in run_paths},
                      {k: v for k, v in changes.items() if k not in run_paths and v is not None},
                      "jembench.train", spell)
    return run(request)


def _signature() -> inspect.Signature:
    run_opts = run_options()
    positional = [inspect.Parameter("method", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)]
    positional += [inspect.Parameter(o.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=o.default,
                                     annotation=o.kind) for o in run_opts if o.name in ("preset", "out")]
    rest = options.signature([o for o in run_opts if o.name not in ("preset", "out")], [])
    config = options.signature(config_options(), [], from_preset=True)
    return inspect.Signature(positional + list(rest.parameters.values()) + list(config.parameters.values()),
                             return_annotation=Path)


train.__signature__ = _signature()  # type: ignore[attr-defined]
train.__doc__ = (train.__doc__ or "").replace("{keywords}", options.keyword_doc(config_options(), from_preset=True))


def gpu_idle_warning(preset: str, device: str) -> str | None:
    """The one-line warning for a GPU-sized ``paper`` preset (WRN-28-10, 150-200 epochs) about to train on the
    CPU although ``torch.cuda.is_available()`` — a forgotten ``--device cuda`` costs days; None otherwise."""
    import torch

    if not preset.startswith("paper") or not str(device).startswith("cpu") or not torch.cuda.is_available():
        return None
    return (f"jembench: warning: the {preset!r} preset is GPU-sized but trains on the CPU although a CUDA GPU "
            f"is available; pass --device cuda")


def warn_if_gpu_idle(preset: str, device: str) -> None:
    """Print :func:`gpu_idle_warning`'s line (a warning: shown under ``-q`` too), if any."""
    from . import progress

    message = gpu_idle_warning(preset, device)
    if message:
        progress.warning(message)


def _stored_config(last: Path) -> dict:
    """The training config inside a run's ``last.pt``: the file must be a jembench checkpoint (our format's
    structure checked field by field) whose ``config`` is a mapping — anything else cannot be resumed."""
    from .models import FORMAT, check_our_checkpoint, read_checkpoint_file

    state = read_checkpoint_file(last)
    if state.get("format") != FORMAT:
        raise JembenchError(f"cannot resume: {last} is not a jembench training checkpoint (no format "
                            f"{FORMAT!r}); start the run without --resume or in another folder")
    check_our_checkpoint(state, str(last))
    if not isinstance(state.get("config"), dict) or not state["config"]:
        raise JembenchError(f"cannot resume: {last} holds no training config; start a new run in another folder")
    return state["config"]
