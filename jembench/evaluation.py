"""One entry point for running a suite on a model and writing its record; ``jembench eval`` and ``demo`` call it.

The Python API mirrors the CLI 1:1 (torch-fidelity style): every ``jembench eval`` option is a keyword of
:func:`evaluate`, and the model is a checkpoint file *or* any ``torch.nn.Module`` that maps images in [-1, 1] to
logits (OpenOOD / RobustBench style)::

    import jembench
    record = jembench.evaluate("runs/jem-digits/last.pt", "ood", preset="tiny")
    record = jembench.evaluate(my_net, "calibration", dataset="cifar10")          # any classifier
    record = jembench.evaluate(my_jem, "generation", dataset="cifar10", buffer=replay_buffer, method="jem")
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import atomic, distributed
from .data import dataset_info
from .errors import JembenchError
from .models import LoadedCheckpoint, from_module, load_checkpoint
from .protocols import Protocol, load_protocol
from .seeding import seed_everything
from .suites import EvalContext, get_suite

if TYPE_CHECKING:
    import torch


def protocol_for(suite: str, preset: str = "paper", protocol: str | Path | Protocol | None = None) -> Protocol:
    """``protocol`` (a Protocol, path or name) if given, else ``suites/<suite>.toml`` (preset ``paper``) /
    ``suites/<suite>-<preset>.toml``."""
    if isinstance(protocol, Protocol):
        if protocol.suite != suite:
            raise JembenchError(f"protocol {protocol.name} is for suite {protocol.suite!r}, not {suite!r}")
        return protocol
    return load_protocol(protocol or (suite if preset == "paper" else f"{suite}-{preset}"), suite=suite)


def apply_overrides(protocol: Protocol, **values: Any) -> Protocol:
    """``protocol`` with the suite's :data:`OVERRIDES` (e.g. generation's ``n_samples``, ``steps``, ``init``)
    applied when given (not None): a new protocol ``<name>+cli`` with its own hash. Options a suite does not
    take are ignored, so ``--suite all --steps 10`` changes the generation protocol only."""
    fields = getattr(get_suite(protocol.suite), "OVERRIDES", {})
    changes = {fields[k]: v for k, v in values.items() if v is not None and k in fields}
    return protocol.replace(changes) if changes else protocol


def check_compatible(ckpt: LoadedCheckpoint, dataset: str, data_root: str | Path | None = None) -> None:
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
              dataset: str | None = None, data_root: str | Path | None = None, download: bool = True,
              device: str = "cpu", seed: int = 0, batch_size: int = 256, inception_weights: str | Path | None = None,
              ensemble: Sequence = (), compile: bool = False, channels_last: bool = False) -> dict:
    """Run one suite on a loaded checkpoint; rank 0 writes the record to ``out_path`` atomically.
    ``compile`` / ``channels_last``: see :func:`fast_checkpoint` (results equal eager within float rounding)."""
    suite = get_suite(suite_name)
    if protocol.suite != suite_name:
        raise JembenchError(f"protocol {protocol.path} is for suite {protocol.suite!r}, not {suite_name!r}")
    if batch_size <= 0:
        raise JembenchError(f"batch size must be positive, got {batch_size}")
    ckpt = fast_checkpoint(ckpt, suite_name, compile, channels_last)
    dataset = dataset or ckpt.dataset
    if dataset == "unknown":
        raise JembenchError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    check_compatible(ckpt, dataset, data_root)
    out_path = Path(out_path)
    ctx = EvalContext(dataset=dataset, data_root=data_root, download=download, device=device,
                      out_dir=out_path.parent, seed=seed, batch_size=batch_size, record_path=out_path,
                      inception_weights=inception_weights, ensemble=tuple(ensemble))
    seed_everything(seed)
    record = suite.run(ckpt, protocol, ctx)
    distributed.barrier()  # every rank has finished writing its partial results
    if distributed.is_main():
        atomic.write_json(out_path, record)
        # Long suites checkpoint their progress as <record stem>.partial* files beside the record; only now
        # that the record is safely on disk are those obsolete. A suite that names them per protocol lists its
        # own (``partial_files``); names are compared exactly, never globbed (a record may be called r[1].json).
        own = getattr(suite, "partial_files", None)
        prefix = f"{out_path.stem}.partial"
        partials = own(out_path, protocol) if own is not None else [
            p for p in out_path.parent.iterdir() if p.name.startswith(prefix)]
        for partial in partials:
            partial.unlink(missing_ok=True)
    return record


def as_checkpoint(model: str | Path | torch.nn.Module | LoadedCheckpoint, *, dataset: str | None = None,
                  data_root: str | Path | None = None, device: str = "cpu", buffer: torch.Tensor | None = None,
                  method: str | None = None, name: str | None = None, trust_checkpoint: bool = False,
                  weights: str | Path | None = None) -> LoadedCheckpoint:
    """What :func:`evaluate` evaluates: a checkpoint file loaded (ours or the official JEM format), or an
    ``nn.Module`` wrapped with the image shape of ``dataset`` (:func:`jembench.models.from_module`)."""
    if isinstance(model, LoadedCheckpoint):
        return model
    if isinstance(model, (str, Path)):
        ckpt = load_checkpoint(model, device=device, dataset=dataset, trust=trust_checkpoint)
        if buffer is not None:
            ckpt.buffer = buffer.detach().cpu()
        if method is not None:
            ckpt.method = method
        if name is not None:
            ckpt.config = {**ckpt.config, "name": name}
        return ckpt
    if dataset is None:
        raise JembenchError(f"evaluating a {type(model).__name__} module needs dataset=... (--dataset): it "
                            f"fixes the image shape and the test split")
    return from_module(model, dataset_info(dataset, data_root).image_shape, dataset=dataset,
                       method=method or "custom", name=name, buffer=buffer, device=device,
                       path=str(weights) if weights is not None else None)


def default_out(model: str | Path | LoadedCheckpoint, ckpt: LoadedCheckpoint, suite: str) -> Path:
    """``<checkpoint folder>/eval/<suite>.json`` for a file, ``runs/<model name>/eval/<suite>.json`` for a
    module."""
    if isinstance(model, (str, Path)):
        return Path(model).parent / "eval" / f"{suite}.json"
    return Path("runs") / ckpt.name / "eval" / f"{suite}.json"


def evaluate(model: str | Path | torch.nn.Module | LoadedCheckpoint, suite: str = "accuracy", *,
             dataset: str | None = None, preset: str = "paper", protocol: str | Path | Protocol | None = None,
             out: str | Path | None = None, device: str = "cpu", seed: int = 0, batch_size: int = 256,
             data_root: str | Path | None = None, download: bool = True, buffer: torch.Tensor | None = None,
             method: str | None = None, name: str | None = None, inception_weights: str | Path | None = None,
             n_samples: int | None = None, steps: int | None = None, init: str | None = None,
             ensemble: Sequence = (), compile: bool = False, channels_last: bool = False,
             trust_checkpoint: bool = False) -> dict:
    """Run ``suite`` on ``model`` and write its record (JSON) to ``out``; returns the record.

    ``model``          a checkpoint file (``jembench train``'s, or the official JEM code's), or any
                       ``torch.nn.Module`` mapping images (N, C, H, W) in [-1, 1] to logits (N, n_classes).
    ``suite``          ``accuracy``, ``calibration``, ``ood``, ``generation`` or ``robustness``.
    ``dataset``        evaluation dataset (``digits``, ``cifar10``, ..., ``folder:PATH``); default: the one the
                       checkpoint was trained on; required for a module.
    ``preset``         ``paper`` (``suites/<suite>.toml``) or ``tiny`` (``suites/<suite>-tiny.toml``).
    ``protocol``       a protocol file or name, or a :class:`jembench.protocols.Protocol` (overrides ``preset``).
    ``out``            record path; default ``<checkpoint folder>/eval/<suite>.json`` for a file,
                       ``runs/<name>/eval/<suite>.json`` for a module. Figures go beside it.
    ``device``, ``seed``, ``batch_size``, ``data_root`` (default ``$JEMBENCH_DATA``, else ``data``),
    ``download``       as the CLI options of the same names.
    ``buffer``         replay-buffer images (N, C, H, W) in [-1, 1] (generation's ``buffer`` source); replaces a
                       checkpoint's own buffer.
    ``method``, ``name``  the record's method (``jem``, ... matches published rows in ``check``; modules:
                       ``custom``) and model name.
    ``inception_weights``  generation: torch-fidelity's Inception weights file.
    ``n_samples``, ``steps``, ``init``  generation: override the protocol's ``n_samples``, ``sgld.n_steps``,
                       ``init`` (the record's protocol is then ``<name>+cli`` with its own hash).
    ``ensemble``       generation: checkpoints (paths) or buffer tensors whose buffers are pooled (JEM App. B).
    ``compile``, ``channels_last``  run the model through ``torch.compile`` / with channels-last weights.
    ``trust_checkpoint``  allow checkpoint files that need arbitrary unpickling (only for files you trust).
    """
    ckpt = as_checkpoint(model, dataset=dataset, data_root=data_root, device=device, buffer=buffer, method=method,
                         name=name, trust_checkpoint=trust_checkpoint)
    proto = apply_overrides(protocol_for(suite, preset, protocol), n_samples=n_samples, steps=steps, init=init)
    return run_suite(ckpt, suite, proto, out or default_out(model, ckpt, suite), dataset=dataset,
                     data_root=data_root, download=download, device=device, seed=seed, batch_size=batch_size,
                     inception_weights=inception_weights, ensemble=ensemble, compile=compile,
                     channels_last=channels_last)
