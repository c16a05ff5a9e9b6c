"""``jembench.train``: the library entry point of ``jembench train`` (the reference trainers, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


#: training options a resumed run cannot change: they define the network and the optimizer state it continues
FIXED_ON_RESUME = ("depth", "width", "norm", "dropout", "optimizer")


def train(method: str, preset: str = "tiny", out: str | Path | None = None, *, resume: bool = False,
          progress: bool = True, **overrides: Any) -> Path:
    """Train a reference model (``jem``, ``jempp``, ``sada_jem``, ``softmax``, ``softmax_sam``) and return the
    path of its checkpoint (``<out>/last.pt``).

    ``preset`` is ``tiny`` (CPU minutes), ``paper`` or, for jempp / sada_jem, ``paper-k5`` / ``-k10`` / ``-k20``;
    ``overrides`` are any :class:`reference_models.config.TrainConfig` fields (``dataset="cifar10"``,
    ``sgld_steps=40``, ...; unknown names are errors). ``out`` defaults to ``runs/<method>-<dataset>``;
    ``resume=True`` continues the run in ``out`` (its stored config, with ``overrides`` on top)."""
    from reference_models.config import TrainConfig, resolve_config
    from reference_models.train_loop import train as train_loop

    from .errors import JembenchError

    if resume:
        if out is None:
            raise JembenchError("resume=True needs out= (the run folder to continue)")
        last = Path(out) / "last.pt"
        if not last.is_file():
            raise JembenchError(f"cannot resume: {last} does not exist; start the run without --resume")
        stored = _stored_config(last)
        stored = {k: v for k, v in stored.items() if k in TrainConfig.field_names()}
        if stored.get("method") != method:
            raise JembenchError(f"{out} holds a {stored.get('method')!r} run, not {method!r}; "
                                f"pass the matching method")
        changed = [f"--{k} {stored[k]!r} -> {overrides[k]!r}" for k in FIXED_ON_RESUME
                   if k in overrides and k in stored and overrides[k] != stored[k]]
        if changed:
            raise JembenchError(f"cannot resume {out} with another network or optimizer ({', '.join(changed)}): "
                                f"its checkpoint holds the trained one; drop those options or start a new run")
        try:
            cfg = TrainConfig.from_dict({**stored, **overrides})
        except (TypeError, ValueError) as exc:  # a stored value of the wrong type (hand-edited or foreign file)
            raise JembenchError(f"cannot resume: the training config stored in {last} is malformed ({exc}); "
                                f"start a new run in another folder") from None
    else:
        cfg = resolve_config(method, preset, overrides)
    warn_if_gpu_idle(preset, cfg.device)
    out = Path(out) if out is not None else Path("runs") / cfg.run_name
    return Path(train_loop(cfg, out, resume=resume, progress=progress))


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
    from .errors import JembenchError
    from .models import FORMAT, check_our_checkpoint, read_checkpoint_file

    state = read_checkpoint_file(last)
    if state.get("format") != FORMAT:
        raise JembenchError(f"cannot resume: {last} is not a jembench training checkpoint (no format "
                            f"{FORMAT!r}); start the run without --resume or in another folder")
    check_our_checkpoint(state, str(last))
    if not isinstance(state.get("config"), dict) or not state["config"]:
        raise JembenchError(f"cannot resume: {last} holds no training config; start a new run in another folder")
    return state["config"]
