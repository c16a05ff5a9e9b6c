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

from . import atomic, catalog, distributed
from .data import dataset_info
from .errors import JembenchError
from .models import LoadedCheckpoint, from_module, load_checkpoint
from .protocols import Protocol, load_protocol
from .seeding import seed_everything
from .suites import EvalContext, get_suite

if TYPE_CHECKING:
    import torch


def presets(suite: str | None = None) -> list[str]:
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


def protocol_for(suite: str, preset: str = "paper", protocol: str | Path | Protocol | None = None) -> Protocol:
    """``protocol`` (a Protocol, path or name) if given, else ``suites/<suite>.toml`` (preset ``paper``) /
    ``suites/<suite>-<preset>.toml``; a preset the suite has no file for is a one-line error naming the suite's
    presets."""
    if isinstance(protocol, Protocol):
        if protocol.suite != suite:
            raise JembenchError(f"protocol {protocol.name} is for suite {protocol.suite!r}, not {suite!r}")
        return protocol
    if protocol is None and preset not in presets(suite):
        raise JembenchError(f"suite {suite!r} has no preset {preset!r} (no suites/{suite}-{preset}.toml); its "
                            f"presets: {', '.join(presets(suite))}")
    return load_protocol(protocol or (suite if preset == "paper" else f"{suite}-{preset}"), suite=suite)


def apply_overrides(protocol: Protocol, **values: Any) -> Protocol:
    """``protocol`` with the suite's :data:`OVERRIDES` (e.g. generation's ``n_samples``, ``steps``, ``init``)
    applied when given (not None): a new protocol ``<name>+cli`` with its own hash. Options a suite does not
    take are ignored, so ``--suite all --steps 10`` changes the generation protocol only."""
    fields = getattr(get_suite(protocol.suite), "OVERRIDES", {})
    changes = {fields[k]: v for k, v in values.items() if v is not None and k in fields}
    return protocol.replace(changes) if changes else protocol


def check_compatible(ckpt: LoadedCheckpoint, dataset: str, data_root: str | Path | None = None) -> None:
    """The evaluation dataset must match the checkpoint's input shape and class count, and the network itself
    must agree (:func:`check_model`): a mismatch would give a number that means nothing."""
    info = dataset_info(dataset, data_root)
    if tuple(info.image_shape) != tuple(ckpt.image_shape):
        raise JembenchError(f"{ckpt.path} takes {'x'.join(map(str, ckpt.image_shape))} images but dataset "
                            f"{dataset!r} has {'x'.join(map(str, info.image_shape))}; evaluate on the dataset it "
                            f"was trained on (--dataset {ckpt.dataset})")
    if info.n_classes != ckpt.n_classes:
        raise JembenchError(f"{ckpt.path} has {ckpt.n_classes} classes but dataset {dataset!r} has "
                            f"{info.n_classes}; evaluate on the dataset it was trained on (--dataset {ckpt.dataset})")
    check_model(ckpt)


def check_model(ckpt: LoadedCheckpoint) -> None:
    """The network is fit to evaluate: every weight finite (a NaN / Inf weight — a diverged run — gives chance
    accuracy, not an error, so it is refused here), its output count equal to the checkpoint's class count (one
    probe forward pass on two blank images), and a replay buffer, if any, of its image shape."""
    import torch

    for name, tensor in ckpt.model.state_dict().items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise JembenchError(f"{ckpt.path} has non-finite weights (NaN or Inf in {name}): the run diverged; "
                                f"evaluate an earlier checkpoint or retrain")
    shape = tuple(ckpt.image_shape)
    device = next((p.device for p in ckpt.model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            logits = ckpt.model(torch.zeros((2, *shape), device=device))
    except Exception as exc:  # noqa: BLE001 - any failure of the network on its own input shape is the same error
        raise JembenchError(f"{ckpt.path}: the network fails on {'x'.join(map(str, shape))} images "
                            f"({type(exc).__name__}: {str(exc)[:160]}); its architecture settings do not match "
                            f"its image shape — re-save the checkpoint") from None
    outputs = tuple(logits.shape) if isinstance(logits, torch.Tensor) else None
    if outputs is None or len(outputs) != 2 or outputs[0] != 2 or outputs[1] != ckpt.n_classes:
        raise JembenchError(f"{ckpt.path}: the network outputs {outputs or type(logits).__name__} for 2 images, "
                            f"but the checkpoint declares {ckpt.n_classes} classes; fix its n_classes or "
                            f"architecture settings (arch_kwargs) so they agree")
    buffer = ckpt.buffer
    if buffer is not None and (not isinstance(buffer, torch.Tensor) or buffer.dim() != 4 or len(buffer) == 0
                               or tuple(buffer.shape[1:]) != shape or not buffer.is_floating_point()):
        got = (f"{buffer.dtype} {'x'.join(map(str, buffer.shape))}" if isinstance(buffer, torch.Tensor)
               else type(buffer).__name__)
        raise JembenchError(f"the replay buffer of {ckpt.path} is {got}, not float images N x "
                            f"{'x'.join(map(str, shape))} in [-1, 1]; pass a matching --buffer file")


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


def dataset_label_for(ckpt: LoadedCheckpoint, dataset: str, label: str | None = None) -> str:
    """The in-distribution dataset's display label: ``label`` (``--dataset-label``) if given, else the
    checkpoint's own ``dataset_label`` (``jembench train --dataset-label``) when evaluating on the dataset it was
    trained on, else :func:`jembench.catalog.label` (``CIFAR-10``, a folder's base name)."""
    own = str(ckpt.config.get("dataset_label") or "") if dataset == ckpt.dataset else ""
    return label or own or catalog.label(dataset)


def _with_dataset_label(record: dict, label: str) -> dict:
    """``record`` with ``dataset_label`` right after ``dataset`` (every suite's record carries it)."""
    out = {}
    for key, value in record.items():
        out[key] = value
        if key == "dataset":
            out["dataset_label"] = label
    return out


def run_suite(ckpt: LoadedCheckpoint, suite_name: str, protocol: Protocol, out_path: str | Path, *,
              dataset: str | None = None, data_root: str | Path | None = None, download: bool = True,
              device: str = "cpu", seed: int = 0, batch_size: int = 256, inception_weights: str | Path | None = None,
              ensemble: Sequence = (), compile: bool = False, channels_last: bool = False, workers: int = 0,
              dataset_label: str | None = None) -> dict:
    """Run one suite on a loaded checkpoint; rank 0 writes the record to ``out_path`` atomically.
    ``compile`` / ``channels_last``: see :func:`fast_checkpoint` (results equal eager within float rounding);
    ``workers``: DataLoader processes decoding images; ``dataset_label``: see :func:`dataset_label_for`."""
    suite = get_suite(suite_name)
    if protocol.suite != suite_name:
        raise JembenchError(f"protocol {protocol.path} is for suite {protocol.suite!r}, not {suite_name!r}")
    if batch_size <= 0:
        raise JembenchError(f"batch size must be positive, got {batch_size}")
    check_seed(seed)
    if workers < 0:
        raise JembenchError(f"workers must be >= 0, got {workers}")
    ckpt = fast_checkpoint(ckpt, suite_name, compile, channels_last)
    dataset = dataset or ckpt.dataset
    if dataset == "unknown":
        raise JembenchError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    check_compatible(ckpt, dataset, data_root)
    ckpt = fast_checkpoint(ckpt, suite_name, compile, channels_last)
    out_path = Path(out_path)
    ctx = EvalContext(dataset=dataset, data_root=data_root, download=download, device=device,
                      out_dir=out_path.parent, seed=seed, batch_size=batch_size, record_path=out_path,
                      inception_weights=inception_weights, ensemble=tuple(ensemble), workers=workers,
                      dataset_label=dataset_label_for(ckpt, dataset, dataset_label))
    seed_everything(seed)
    record = _with_dataset_label(suite.run(ckpt, protocol, ctx), ctx.label)
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


def check_seed(seed: int) -> None:
    """Seeds are 64-bit (torch takes [0, 2**63) here; negative seeds would wrap differently per library)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise JembenchError(f"seed {seed} is outside [0, 2**63); pass a smaller --seed")


def as_checkpoint(model: str | Path | torch.nn.Module | LoadedCheckpoint, *, dataset: str | None = None,
                  data_root: str | Path | None = None, device: str = "cpu", buffer: torch.Tensor | None = None,
                  method: str | None = None, name: str | None = None, trust_checkpoint: bool = False,
                  weights: str | Path | None = None, uncond: bool = False,
                  informative_stats: Sequence[str | Path] | None = None) -> LoadedCheckpoint:
    """What :func:`evaluate` evaluates: a checkpoint file loaded (ours or an official one,
    :mod:`jembench.importers`), or an ``nn.Module`` wrapped with the image shape of ``dataset``
    (:func:`jembench.models.from_module`). An official checkpoint whose layout fits several methods needs
    ``method`` (:func:`jembench.importers.resolve_method`)."""
    from .importers import load_class_gaussians, resolve_method

    if isinstance(model, LoadedCheckpoint):
        return model
    from .runtime import require_device

    require_device(device)
    if isinstance(model, (str, Path)):
        ckpt = load_checkpoint(model, device=device, dataset=dataset, trust=trust_checkpoint, uncond=uncond)
        resolve_method(ckpt, method)
        if buffer is not None:
            ckpt.buffer = buffer.detach().cpu()
        if name is not None:
            ckpt.config = {**ckpt.config, "name": name}
    else:
        if dataset is None:
            raise JembenchError(f"evaluating a {type(model).__name__} module needs dataset=... (--dataset): it "
                                f"fixes the image shape and the test split")
        if uncond:
            raise JembenchError("--uncond applies to official checkpoint files; a module defines its own logits")
        ckpt = from_module(model, dataset_info(dataset, data_root).image_shape, dataset=dataset,
                           method=method or "custom", name=name, buffer=buffer, device=device,
                           path=str(weights) if weights is not None else None)
    if informative_stats:
        mean, cov = informative_stats
        init = load_class_gaussians(mean, cov, ckpt.image_shape, ckpt.n_classes)
        ckpt.init_state = {**init.state_dict(), "source": f"{Path(mean).name}, {Path(cov).name}"}
    return ckpt


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
             trust_checkpoint: bool = False, uncond: bool = False,
             informative_stats: Sequence[str | Path] | None = None, workers: int = 0,
             dataset_label: str | None = None, bn_mode: str | None = None) -> dict:
    """Run ``suite`` on ``model`` and write its record (JSON) to ``out``; returns the record.

    ``model``          a checkpoint file (``jembench train``'s, or the official JEM / JEM++ / SADA-JEM code's), or any
                       ``torch.nn.Module`` mapping images (N, C, H, W) in [-1, 1] to logits (N, n_classes).
    ``suite``          ``accuracy``, ``calibration``, ``ood``, ``generation`` or ``robustness``.
    ``dataset``        evaluation dataset (``digits``, ``cifar10``, ..., ``folder:PATH``); default: the one the
                       checkpoint was trained on; required for a module.
    ``preset``         ``paper`` (``suites/<suite>.toml``) or another ``<preset>`` of a shipped
                       ``suites/<suite>-<preset>.toml``: ``tiny`` (digits), ``cpu`` (32×32 on a CPU), ``jem-official``,
                       ``jempp-official``, ``sadajem-official`` (:func:`presets`).
    ``protocol``       a protocol file or name, or a :class:`jembench.protocols.Protocol` (overrides ``preset``).
    ``out``            record path; default ``<checkpoint folder>/eval/<suite>.json`` for a file,
                       ``runs/<name>/eval/<suite>.json`` for a module. Figures go beside it.
    ``device``, ``seed``, ``batch_size``, ``data_root`` (default ``$JEMBENCH_DATA``, else ``data``),
    ``download``       as the CLI options of the same names.
    ``buffer``         replay-buffer images (N, C, H, W) in [-1, 1] (generation's ``buffer`` source); replaces a
                       checkpoint's own buffer.
    ``method``, ``name``  the record's method (``jem``, ``jempp``, ``sada_jem``, ``softmax``, ...: what ``check``
                       matches published rows by; modules: ``custom``; required for official checkpoints that do
                       not say) and model name.
    ``inception_weights``  generation: torch-fidelity's Inception weights file.
    ``n_samples``, ``steps``, ``init``  generation: override the protocol's ``n_samples``, ``sgld.n_steps``,
                       ``init`` (the record's protocol is then ``<name>+cli`` with its own hash).
    ``ensemble``       generation: checkpoints (paths) or buffer tensors whose buffers are pooled (JEM App. B).
    ``compile``, ``channels_last``  run the model through ``torch.compile`` / with channels-last weights.
    ``trust_checkpoint``  allow checkpoint files that need arbitrary unpickling (only for files you trust).
    ``uncond``         an official checkpoint trained with ``--uncond``: log p(x) is its ``energy_output`` head.
    ``informative_stats``  (MEAN, COV): the authors' ``<dataset>_mean.pt`` / ``<dataset>_cov.pt`` as the
                       informative p_0 of fresh chains (generation ``init = "informative"``).
    ``workers``        DataLoader worker processes decoding images (0 = in the main process).
    ``dataset_label``  the in-distribution dataset's name in tables, figures and the record's ``dataset_label``
                       (default: the checkpoint's ``dataset_label``, else the registry's / folder's name).
    ``bn_mode``        accuracy / calibration / OOD: override the protocol's ``bn_mode`` (``eval`` or ``train``).
    """
    ckpt = as_checkpoint(model, dataset=dataset, data_root=data_root, device=device, buffer=buffer, method=method,
                         name=name, trust_checkpoint=trust_checkpoint, uncond=uncond,
                         informative_stats=informative_stats)
    proto = apply_overrides(protocol_for(suite, preset, protocol), n_samples=n_samples, steps=steps, init=init,
                            bn_mode=bn_mode)
    return run_suite(ckpt, suite, proto, out or default_out(model, ckpt, suite), dataset=dataset,
                     data_root=data_root, download=download, device=device, seed=seed, batch_size=batch_size,
                     inception_weights=inception_weights, ensemble=ensemble, compile=compile,
                     channels_last=channels_last, workers=workers, dataset_label=dataset_label)
