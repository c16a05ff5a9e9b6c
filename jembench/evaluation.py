"""One entry point for running suites on models and writing their records; ``jembench eval`` and ``demo`` call it.

The Python API mirrors the CLI by construction: the keywords of :func:`evaluate` and the ``jembench eval`` flags are
generated from one declaration, :class:`jembench.eval_options.EvalOptions`, and both go through the same two
steps — :func:`jembench.eval_options.plan` checks the call (torch-free), :func:`run_plan` runs it. The model is a
checkpoint file *or* any ``torch.nn.Module`` that maps images in [-1, 1] to logits (OpenOOD / RobustBench
style)::

    import jembench
    record = jembench.evaluate("runs/jem-digits/last.pt", "ood", preset="tiny")
    record = jembench.evaluate(my_net, "calibration", dataset="cifar10")          # any classifier
    record = jembench.evaluate(my_jem, "generation", dataset="cifar10", buffer=replay_buffer, method="jem")
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import atomic, catalog, distributed, options, partials, precision, progress
from .data import dataset_info
from .errors import JembenchError
from .eval_options import EvalOptions, EvalPlan, model_name, options_from_keywords, plan, preset_names
from .forward_guard import guarded_forward
from .models import LoadedCheckpoint, from_module, load_checkpoint, load_weights_file
from .protocols import Protocol, load_protocol
from .seeding import seed_everything
from .suites import get_suite
from .suites.context import EvalContext

if TYPE_CHECKING:
    import torch


def protocol_for(suite: str, preset: str = "paper", protocol: str | Path | Protocol | None = None) -> Protocol:
    """``protocol`` (a Protocol, path or name) if given, else ``suites/<suite>.toml`` (preset ``paper``) /
    ``suites/<suite>-<preset>.toml``; a preset the suite has no file for is a one-line error naming the suite's
    presets."""
    if isinstance(protocol, Protocol):
        if protocol.suite != suite:
            raise JembenchError(f"protocol {protocol.name} is for suite {protocol.suite!r}, not {suite!r}")
        return protocol
    if protocol is None and preset not in preset_names(suite):
        raise JembenchError(f"suite {suite!r} has no preset {preset!r} (no suites/{suite}-{preset}.toml); its "
                            f"presets: {', '.join(preset_names(suite))}")
    return load_protocol(protocol or (suite if preset == "paper" else f"{suite}-{preset}"), suite=suite)


def apply_overrides(protocol: Protocol, /, **values: Any) -> Protocol:
    """``protocol`` with the options its suite's ``OVERRIDES`` name (e.g. generation's ``n_samples``, ``steps``,
    ``init``: option → protocol field) applied when given (not None): a new protocol ``<name>+cli`` with its own
    hash. Other options are ignored, so ``--suite all --steps 10`` changes the generation protocol only."""
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
    if not logits.is_floating_point() or not torch.isfinite(logits).all():
        raise JembenchError(f"{ckpt.path}: the network's logits for 2 blank images are "
                            f"{'NaN or Inf' if logits.is_floating_point() else logits.dtype}, although its weights "
                            f"are finite; such logits cannot be scored — fix the model")
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


def run_suite(ckpt: LoadedCheckpoint, suite_name: str, protocol: Protocol, out_path: str | Path,
              options: EvalOptions | None = None, *, ensemble: Sequence = (), **keywords: Any) -> dict:
    """Run one suite on a loaded checkpoint under ``options`` (default :class:`EvalOptions`, with any
    ``keywords`` — ``seed=3``, ``batch_size=16`` — on top); rank 0 writes the record to ``out_path`` atomically.
    ``ensemble``: the checkpoints / buffers the generation suite pools (already resolved)."""
    options = options_from_keywords(keywords, "run_suite") if options is None else (
        dataclasses.replace(options, **keywords) if keywords else options)
    suite = get_suite(suite_name)
    if protocol.suite != suite_name:
        raise JembenchError(f"protocol {protocol.path} is for suite {protocol.suite!r}, not {suite_name!r}")
    check_seed(options.seed)
    dataset = options.dataset or ckpt.dataset
    if dataset == "unknown":
        raise JembenchError(f"{ckpt.path} does not say which dataset it was trained on; pass --dataset")
    check_compatible(ckpt, dataset, options.data_root)
    ckpt = fast_checkpoint(ckpt, suite_name, options.compile, options.channels_last)
    out_path = Path(out_path)
    ctx = EvalContext.from_options(options, dataset=dataset, device=distributed.device_for_rank(options.device),
                                   record_path=out_path, ensemble=tuple(ensemble),
                                   dataset_label=dataset_label_for(ckpt, dataset, options.dataset_label))
    seed_everything(options.seed)
    sharded = getattr(suite, "SHARDED", False)  # the suite shares its work among torchrun's ranks
    record = None
    if sharded or distributed.is_main():  # any other suite runs on rank 0 alone (one set of caches), others wait
        with precision.scope(options.precision, ctx.device), \
                guarded_forward(ckpt.model, str(ckpt.path), user_code=ckpt.config.get("source") == "nn.Module"):
            record = _with_dataset_label(suite.run(ckpt, protocol, ctx), ctx.label)
            record = _with_environment(record, ctx.device)
    else:
        print(f"jembench: [rank {distributed.rank()}] {suite_name} runs on rank 0 alone; waiting for it",
              file=sys.stderr)
    distributed.barrier()  # every rank has finished writing its partial results (or waited for rank 0)
    if not sharded:
        record = distributed.broadcast_from_main(record)
    assert record is not None  # every rank holds the record now: its own run's or rank 0's broadcast
    evidence = ctx.evidence  # the suite's per-input arrays (jembench.evidence), if it keeps any
    if suite_name == "robustness" and distributed.is_main():  # per-input flags from the record's own details
        from .suites.robustness_evidence import robustness_evidence

        evidence = robustness_evidence(record, protocol, ctx)
    if distributed.is_main():
        if evidence is not None:  # the per-input arrays first: the record never names a file not yet there
            record["evidence"] = evidence.write(out_path)
        atomic.write_json(out_path, record)
        # Long suites save finished units as partial files beside the record (jembench.partials); only now that
        # the record is safely on disk are this protocol's obsolete (exact names, never globbed).
        for partial in partials.files(out_path, protocol.hash):
            partial.unlink(missing_ok=True)
    return record


def _with_environment(record: dict, device: str) -> dict:
    """``record`` with ``environment``: where it ran — the device, its name, the numerical settings in force
    (:func:`jembench.devices.describe`: precision, TF32, cudnn.benchmark, autocast) and the number of processes.
    Records from the CPU and from a GPU can be told apart; no metric depends on it being there."""
    from . import devices

    return {**record, "environment": {**devices.describe(device), "world_size": distributed.world_size()}}


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
    from .importers import resolve_method
    from .models import load_class_gaussians

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
        if weights is not None:
            load_weights_file(model, weights)
        ckpt = from_module(model, dataset_info(dataset, data_root).image_shape, dataset=dataset,
                           method=method or "custom", name=name, buffer=buffer, device=device,
                           path=str(weights) if weights is not None else None)
    if informative_stats:
        mean, cov = informative_stats
        init = load_class_gaussians(mean, cov, ckpt.image_shape, ckpt.n_classes)
        ckpt.init_state = {**init.state_dict(), "source": f"{Path(mean).name}, {Path(cov).name}"}
    return ckpt


def run_plan(p: EvalPlan, on_record: Callable[[dict, Path, str], None] | None = None) -> list[dict]:
    """Run every (model, suite) of a checked plan and write the records; ``on_record(record, path, suite)`` is
    called after each (rank 0). With several pairs a pair that fails with a :class:`JembenchError` is skipped
    with a note; with one the error is raised. Returns the records of the pairs that ran.

    Applies :func:`jembench.runtime.configure_torch` first (process-wide, as ``jembench eval`` always did), so
    ``evaluate()`` and the CLI run under the same process settings."""
    from .runtime import configure_torch

    opts = p.options
    configure_torch()  # the CLI's process settings (flush denormals, allocator) for the API too: same numbers, speed
    with progress.configured(None if opts.progress else False):  # None: bars when stderr is a terminal
        for note in p.notes:
            print(f"note: {note}", file=sys.stderr)
        if opts.compile:
            from .compile import compile_unavailable_reason

            reason = compile_unavailable_reason()
            if reason is not None:
                raise JembenchError(reason)
        started_group = not distributed.is_active()
        distributed.init(opts.device, timeout_hours=distributed.EVAL_TIMEOUT_HOURS)
        try:
            return _run_pairs(p, on_record)
        finally:
            if started_group:
                distributed.cleanup()


def _run_pairs(p: EvalPlan, on_record: Callable[[dict, Path, str], None] | None) -> list[dict]:
    opts = p.options
    device = distributed.device_for_rank(opts.device)
    given = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}  # each suite's OVERRIDES pick theirs
    protocols = {s: apply_overrides(protocol_for(s, opts.preset, opts.protocol), **given) for s in p.suites}
    paths = {(i, s): p.record_path(i, s) for i in range(len(p.models)) for s in p.suites}
    for path in paths.values():
        atomic.ensure_writable_dir(path.parent)
    buffer = _tensor_option(opts.buffer, "--buffer")
    ensemble = _ensemble(p)
    records, skipped = [], []
    for i, model in enumerate(p.models):
        ckpt = as_checkpoint(model, dataset=opts.dataset, data_root=opts.data_root, device=device, buffer=buffer,
                             method=opts.method, name=opts.name, trust_checkpoint=opts.trust_checkpoint,
                             weights=opts.weights, uncond=opts.uncond, informative_stats=opts.informative_stats)
        for suite in p.suites:
            try:
                record = run_suite(ckpt, suite, protocols[suite], paths[(i, suite)], opts, ensemble=ensemble)
            except JembenchError as exc:
                if p.single:
                    raise
                label = Path(model).name if isinstance(model, (str, Path)) else model_name(model, opts.name)
                skipped.append(f"{label}/{suite} skipped: {exc}")
                print(f"note: {skipped[-1]}", file=sys.stderr)
                continue
            records.append(record)
            if on_record is not None and distributed.is_main():
                on_record(record, paths[(i, suite)], suite)
    if not records:
        raise JembenchError(f"every requested suite was skipped ({len(skipped)}); see the notes above")
    return records


def _tensor_option(value: Any, flag: str) -> torch.Tensor | None:
    """A tensor option given as a tensor (Python) or a file (``--buffer FILE``)."""
    from .models import load_tensor_file

    return load_tensor_file(value, flag) if isinstance(value, Path) else value


def _ensemble(p: EvalPlan) -> tuple:
    """The checkpoints / buffers the generation suite pools: every checkpoint file evaluated (``--ensemble``), or
    the ones given (Python)."""
    if p.options.ensemble is True:
        return tuple(m for m in p.models if isinstance(m, (str, Path)))
    return tuple(p.options.ensemble or ())


def evaluate(model: str | Path | torch.nn.Module | LoadedCheckpoint, suite: str = "accuracy",
             **keywords: Any) -> dict:
    """Run ``suite`` on ``model`` and write its record (JSON); returns the record.

    ``model``   a checkpoint file (``jembench train``'s, or the official JEM / JEM++ / SADA-JEM code's), any
                ``torch.nn.Module`` mapping images (N, C, H, W) in [-1, 1] to logits (N, n_classes), or a
                :class:`jembench.models.LoadedCheckpoint`.
    ``suite``   ``accuracy``, ``calibration``, ``ood``, ``generation`` or ``robustness``.

    The keywords are the ``jembench eval`` options (``--batch-size`` is ``batch_size=``, ``--no-download`` is
    ``download=False``; :class:`jembench.eval_options.EvalOptions` declares each once), every one checked before
    anything runs — a bad one is a :class:`jembench.JembenchError` naming it:

{keywords}
    """
    opts = options_from_keywords(keywords)
    if not isinstance(model, (str, Path, LoadedCheckpoint)) and not hasattr(model, "forward"):
        raise JembenchError(f"jembench.evaluate: model={options._short(model)} must be a checkpoint path, a "
                            f"torch.nn.Module or a LoadedCheckpoint")
    if not isinstance(suite, str):
        raise JembenchError(f"jembench.evaluate: suite={options._short(suite)} must be one suite name (a string); "
                            f"evaluate suites one at a time")
    return run_plan(plan([model], [suite], opts))[0]


evaluate.__signature__ = options.signature(  # type: ignore[attr-defined]
    options.options(EvalOptions),
    [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     inspect.Parameter("suite", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="accuracy", annotation=str)],
    returns=dict)
evaluate.__doc__ = (evaluate.__doc__ or "").replace("{keywords}", options.keyword_doc(options.options(EvalOptions)))
