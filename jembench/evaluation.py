"""One entry point for running a suite on a loaded checkpoint and writing its record (used by `eval` and `demo`).

The Python API mirrors the CLI 1:1 (torch-fidelity style)::

    from jembench.evaluate import evaluate
    record = evaluate("runs/jem-digits/last.pt", "ood", preset="tiny")
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from . import atomic, distributed
from .data import DEFAULT_DATA_ROOT, dataset_info
from .errors import JembenchError
from .models import LoadedCheckpoint, load_checkpoint
from .protocols import Protocol, load_protocol
from .seeding import seed_everything
from .suites import EvalContext, get_suite


def protocol_for(suite: str, preset: str = "paper", protocol: str | None = None) -> Protocol:
    """``protocol`` (a path or name) if given, else ``suites/<suite>.toml`` / ``suites/<suite>-tiny.toml``."""
    return load_protocol(protocol or (suite if preset == "paper" else f"{suite}-{preset}"), suite=suite)


def check_compatible(ckpt: LoadedCheckpoint, dataset: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> None:
    """The evaluation dataset must match the checkpoint's input shape and class count."""
    info = dataset_info(dataset, data_root)
    if tuple(info.image_shape) != tuple(ckpt.image_shape):
        raise JembenchError(f"{ckpt.path} takes {'x'.join(map(str, ckpt.image_shape))} images but dataset "
                            f"{dataset!r} has {'x'.join(map(str, info.image_shape))}; evaluate on the dataset it "
                            f"was trained on (--dataset {ckpt.dataset})")
    if info.n_classes != ckpt.n_classes:
        raise JembenchError(f"{ckpt.path} has {ckpt.n_classes} classes but dataset {dataset!r} has "
                            f"{info.n_classes}; evaluate on the dataset it was trained on (--dataset {ckpt.dataset})")


def fast_checkpoint(ckpt: LoadedCheckpoint, suite_name: str, compile: bool = False,
                    channels_last: bool = False) -> LoadedCheckpoint:
    """``ckpt`` with its model prepared by :mod:`jembench.compile` (channels-last weights, ``torch.compile``).
    Suites that differentiate through SGLD (:data:`jembench.compile.EAGER_ONLY_SUITES`) keep the eager model."""
    from .compile import EAGER_ONLY_SUITES, maybe_channels_last, maybe_compile

    model = maybe_channels_last(ckpt.model, channels_last)
    if compile and suite_name in EAGER_ONLY_SUITES:
        if distributed.is_main():
            print(f"jembench: --compile: the {suite_name} suite runs the eager model (it back-propagates through "
                  f"SGLD refinement, a double backward torch.compile does not support)", file=sys.stderr)
    elif compile:
        model = maybe_compile(model, True, freeze=True)  # evaluation needs input gradients only
    return ckpt if model is ckpt.model else dataclasses.replace(ckpt, model=model)


def run_suite(ckpt: LoadedCheckpoint, suite_name: str, protocol: Protocol, out_path: str | Path, *,
              dataset: str | None = None, data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = True,
              device: str = "cpu", seed: int = 0, batch_size: int = 256,
              options: dict[str, Any] | None = None, compile: bool = False, channels_last: bool = False) -> dict:
    """Run one suite on a loaded checkpoint; rank 0 writes the record to ``out_path`` atomically.
    ``compile`` / ``channels_last``: see :func:`fast_checkpoint` (results equal eager within float rounding)."""
    suite = get_suite(suite_name)
    ckpt = fast_checkpoint(ckpt, suite_name, compile, channels_last)
    dataset = dataset or ckpt.dataset
    if dataset == "unknown":
        raise JembenchError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    check_compatible(ckpt, dataset, data_root)
    out_path = Path(out_path)
    ctx = EvalContext(dataset=dataset, data_root=data_root, download=download, device=device,
                      out_dir=out_path.parent, seed=seed, batch_size=batch_size,
                      options=dict(options or {}, record_path=str(out_path)))
    seed_everything(seed)
    record = suite.run(ckpt, protocol, ctx)
    distributed.barrier()  # every rank has finished writing its partial results
    if distributed.is_main():
        atomic.write_json(out_path, record)
        # Long suites checkpoint their progress as <record stem>.partial* files beside the record; only now
        # that the record is safely on disk are those obsolete.
        for partial in out_path.parent.glob(f"{out_path.stem}.partial*"):
            partial.unlink(missing_ok=True)
    return record


def evaluate(checkpoint: str | Path, suite: str = "accuracy", preset: str = "paper", protocol: str | None = None,
             out: str | Path | None = None, device: str = "cpu", **kwargs: Any) -> dict:
    """Load ``checkpoint`` and run ``suite``; the record goes to ``out`` (default beside the checkpoint).
    Keyword arguments are :func:`run_suite`'s (``compile=True`` runs the model through ``torch.compile``)."""
    ckpt = load_checkpoint(checkpoint, device=device, dataset=kwargs.get("dataset"))
    out = Path(out) if out else Path(checkpoint).parent / "eval" / f"{suite}.json"
    return run_suite(ckpt, suite, protocol_for(suite, preset, protocol), out, device=device, **kwargs)
