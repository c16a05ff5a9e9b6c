"""Generation suite: IS, FID and KID of a JEM's samples (JEM Table 1 + App. B; SADA-JEM Tables 1–2; JEM++ README).

Sample sources (metric keys ``is/<source>``, ``fid/<source>``, ``kid/<source>``):
  ``buffer``       the replay buffer stored in the checkpoint (JEM App. B: "single" scores are computed on the
                   training buffer of the last checkpoint), after ``[buffer_selection]``: all of it (JEM), or each
                   predicted class's most confident images (SADA-JEM ``cond_is_fid``: IS on 10 %, FID on 90 %;
                   JEM++ ``cond_fid``: 100 per class) — :mod:`jembench.metrics.sample_selection`.
  ``fresh``        ``n_samples`` new SGLD chains (JEM Eq. 3 on log p(x), :func:`jembench.sampling.sgld`) of
                   ``steps`` steps from p_0: ``uniform`` U(−1, 1), ``informative`` (JEM++'s per-class Gaussians,
                   taken from the checkpoint when it stores them, else fitted to the training set and cached) or
                   ``checkpoint`` (whichever of the two the checkpoint's buffer was initialised from).
  ``conditional``  JEM App. B: ``[conditional_selection]`` of a pool (the buffer, or the fresh samples without
                   one) — by default the top 10 % of the whole pool by max_y p(y|x).
  ``ensemble``     with ``--ensemble``: the union of the buffers of all checkpoints given on the command line
                   (JEM App. B lumps together 5 buffers from the last epochs).
FID and KID compare against the reference split(s) of the evaluation dataset (``train``, ``test`` or
``train+test`` — SADA-JEM / JEM++ use CIFAR-10 train + test); their features are computed once and cached on disk
(:mod:`jembench.metrics.fidelity`). Every image is quantized to uint8 exactly once (:func:`to_uint8_rgb`).

Faults: a replay buffer that is not a float tensor of the model's image shape is a one-line error; one holding
NaN / Inf is not scored (a note says why, as for a missing buffer); fresh chains that end non-finite leave their
source unscored with a note; a run with nothing left to score is a one-line error. The fresh chains are saved
batch by batch (``<record stem>.partial.fresh.<batch>.pt``, atomically, keyed by protocol hash, checkpoint SHA-256,
seed, dataset and batch size), so an interrupted run resumes at the first missing batch; every batch draws from its
own seeded RNG stream, so a resumed run gives the record an uninterrupted one gives.

Protocol: :class:`GenerationProtocol` (defaults = the JEM paper setting; ``suites/generation*.toml`` comment every
field with the official file:line it reproduces), with the fresh chains' SGLD settings in ``[sgld]``
(:class:`jembench.sampling.SGLDConfig`). ``--n-samples``, ``--steps`` and ``--init`` (:data:`OVERRIDES`) change
``n_samples``, ``sgld.n_steps`` and ``init``; the record then carries the changed protocol (and its own hash), so
overridden runs never compare equal to plain ones.
Figures: ``<record>_samples_<source>.png`` — a grid of (up to ``grid_n``) scored samples per source.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tabulate import tabulate
from torch.utils.data import ConcatDataset

from .. import atomic, metric_keys, progress, untrusted
from ..catalog import slug
from ..data import length, load_dataset, stack_dataset
from ..errors import JembenchError
from ..figures import sample_grid
from ..metric_keys import SOURCES, SPECS
from ..metrics.fidelity import (INCEPTION, QuantizedDataset, default_cache_root, feature_extractor_kwargs,
                                fidelity_metrics, isc_split_count, jembench_cache_root, reference_cache_name,
                                to_uint8_rgb)
from ..metrics.sample_selection import Selection, select
from ..models import load_checkpoint
from ..partials import PartialStore
from ..records import make_record
from ..refine import fixed_rng
from ..sampling import ClassGaussianInit, UniformInit, sgld
from . import EvalContext
from .generation_protocol import GenerationProtocol

NAME = "generation"
OVERRIDES = {"n_samples": "n_samples", "steps": "sgld.n_steps", "init": "init"}  # evaluate() keyword -> field
PROTOCOL = GenerationProtocol  # defined torch-free in :mod:`.generation_protocol`


@dataclass
class _Pool:
    """Classified images of one source: uint8 RGB images, max_y p(y|x), argmax_y f(x)[y] of the float images,
    and whether each float image was finite."""

    images: torch.Tensor
    confidence: torch.Tensor
    label: torch.Tensor
    finite: torch.Tensor = field(default=None)  # type: ignore[assignment]

    FIELDS = ("images", "confidence", "label", "finite")

    def __post_init__(self) -> None:
        if self.finite is None:
            self.finite = torch.ones(len(self.images), dtype=torch.bool)

    @classmethod
    def cat(cls, parts: list[_Pool]) -> _Pool:
        return cls(*(torch.cat([getattr(p, f) for p in parts]) for f in cls.FIELDS))

    def subset(self, idx: torch.Tensor) -> _Pool:
        return _Pool(self.images[idx], self.confidence[idx], self.label[idx], self.finite[idx])


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    print(f"jembench: generation: {text}", file=sys.stderr)


# ----------------------------------------------------------------------------------------- the buffer
def usable_buffer(buffer, image_shape: tuple[int, ...], what: str) -> tuple[torch.Tensor | None, str | None]:
    """``buffer`` as float images on the CPU, or (None, why) when it cannot be scored.

    Not a float tensor (N, *image_shape) with N ≥ 1: a one-line :class:`JembenchError` naming ``what`` (a
    hostile or mis-saved file). Holding NaN / Inf (a diverged run's buffer): (None, a note) — it must not yield an
    FID, and the suite treats it as no buffer at all."""
    shape = tuple(int(s) for s in image_shape)
    want = f"float images (N, {', '.join(map(str, shape))}) in [-1, 1]"
    if buffer is None:
        return None, None
    if not isinstance(buffer, torch.Tensor):
        raise JembenchError(f"{what} is a {type(buffer).__name__}, not a tensor; it must hold {want}")
    if not buffer.is_floating_point():
        raise JembenchError(f"{what} has dtype {str(buffer.dtype).replace('torch.', '')}; it must hold {want} "
                            f"(uint8 levels: convert with jembench.models.dequantize_images)")
    if buffer.dim() != len(shape) + 1 or tuple(buffer.shape[1:]) != shape or len(buffer) == 0:
        raise JembenchError(f"{what} has shape {tuple(buffer.shape)}; it must hold {want} for this model")
    buffer = buffer.detach().cpu()
    bad = int((~torch.isfinite(buffer.flatten(1))).any(1).sum())
    if bad:
        return None, f"{bad} of {len(buffer)} images of {what} hold NaN/Inf (a diverged run?); it is not scored"
    return buffer, None


@torch.inference_mode()
def _classify(model, x: torch.Tensor, device: str) -> _Pool:
    """One batch: argmax of the logits and max softmax (official: ``logits.max(1)[1]``, ``Softmax(dim=1)(logits)
    .max(1)[0]``, SADAJEM Task/eval_buffer.py:24-26), uint8 images, finiteness."""
    logits = model(x.to(device)).float()
    conf = torch.softmax(logits, dim=1).max(1).values.cpu()
    label = logits.max(1).indices.cpu()
    x = x.detach().cpu()
    return _Pool(to_uint8_rgb(x), conf, label, torch.isfinite(x.flatten(1)).all(1))


def _pool_from_images(model, images: torch.Tensor, device: str, batch_size: int) -> _Pool:
    return _Pool.cat([_classify(model, images[i:i + batch_size], device) for i in range(0, len(images), batch_size)])


# -------------------------------------------------------------------------------- p_0 of fresh chains
def informative_cache_path(dataset: str, n: int) -> Path:
    """``$JEMBENCH_CACHE/informative-init/<dataset>-<hash>-n<n>.pt``: refitted class Gaussians (377 MB on CIFAR)."""
    digest = hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return jembench_cache_root() / "informative-init" / f"{slug(dataset)}-{digest}-n{n}.pt"


def fitted_class_gaussians(ctx: EvalContext, n_classes: int, fit_n: int) -> tuple[ClassGaussianInit, str]:
    """JEM++'s class Gaussians fitted to a fixed (seed-0) subset of ``fit_n`` training images (0 = all), cached
    on disk (:func:`informative_cache_path`) so later runs skip the fit; returns the init and where it came from."""
    base = load_dataset(ctx.dataset, "train", ctx.data_root, download=ctx.download)
    n = min(fit_n or length(base), length(base))
    key = {"dataset": ctx.dataset, "n": n, "subset_seed": 0, "n_classes": int(n_classes), "jitter": 1e-4}
    path = informative_cache_path(ctx.dataset, n)
    what = f"class Gaussians fitted to {n} {ctx.dataset} training images"
    cached = untrusted.load_cache(path, lambda saved: ClassGaussianInit.from_state_dict(saved["state"])
                                  if saved.get("key") == key else None, "informative-init")
    if cached is not None:  # a damaged or foreign cache file is refitted and overwritten
        return cached, f"{what} (cache {path})"
    start = time.perf_counter()
    x, y = stack_dataset(base, limit=n if n < length(base) else None, seed=0)
    try:
        init = ClassGaussianInit.fit(x, y, n_classes)
    except (ValueError, RuntimeError) as exc:
        raise JembenchError(f"cannot fit the informative init to {ctx.dataset} train ({exc}); raise "
                            f"informative_fit_n in the protocol or use init = \"uniform\"") from None
    atomic.torch_save(path, {"key": key, "state": init.state_dict()})
    progress.unit_done("generation: informative init", f"fitted to {n} images, cached in {path}",
                       time.perf_counter() - start)
    return init, f"{what} (fitted now, cached in {path})"


def initial_distribution(ckpt, cfg: GenerationProtocol, ctx: EvalContext) -> tuple[object, str]:
    """p_0 of fresh chains and where it came from: U(−1, 1); JEM++'s class Gaussians — stored in the checkpoint
    (``init_state`` with tensors), else refitted to the training set (:func:`fitted_class_gaussians`; training
    checkpoints record only the init's kind, ``{"name": "class_gaussian", "stored": False}``); or, for
    ``checkpoint``, whichever of the two the checkpoint's buffer was initialised from."""
    state = ckpt.init_state or {}
    kind = cfg.init
    if kind == "checkpoint":
        if state.get("name") == ClassGaussianInit.name:
            kind = "informative"
        else:
            why = "the checkpoint's p_0" if state.get("name") == UniformInit.name else "the checkpoint records no p_0"
            return UniformInit(ckpt.image_shape), f"uniform U(-1, 1) ({why})"
    if kind == "uniform":
        return UniformInit(ckpt.image_shape), "uniform U(-1, 1)"
    if state.get("name") == ClassGaussianInit.name and "means" in state:
        return ClassGaussianInit.from_state_dict(state), "class Gaussians stored in the checkpoint"
    return fitted_class_gaussians(ctx, ckpt.n_classes, cfg.informative_fit_n)


# ------------------------------------------------------------------------------------------ fresh chains
def _batch_seed(seed: int, batch: int) -> int:
    """The seed of batch ``batch``'s RNG stream: a batch's chains do not depend on the batches before it."""
    return int.from_bytes(hashlib.sha256(f"jembench-fresh:{seed}:{batch}".encode()).digest()[:8], "big") >> 1


def chain_store(ckpt, protocol, ctx: EvalContext) -> PartialStore | None:
    """Where finished batches of fresh chains are kept (:class:`jembench.partials.PartialStore`, unit
    ``fresh/<batch>``); a batch is reused only under the same protocol, checkpoint, seed, dataset and batch size.
    None when the evaluation writes no record."""
    if not ctx.record_path:
        return None
    hw = tuple(int(s) for s in ckpt.image_shape[1:])

    def valid(unit: str, saved: object) -> bool:
        n = min(ctx.batch_size, protocol.settings.n_samples - int(unit.rpartition("/")[2]) * ctx.batch_size)
        return (isinstance(saved, dict) and all(isinstance(saved.get(k), torch.Tensor) for k in _Pool.FIELDS)
                and saved["images"].dtype == torch.uint8 and tuple(saved["images"].shape) == (n, 3, *hw)
                and all(len(saved[k]) == n for k in _Pool.FIELDS))

    key = {"checkpoint_sha256": ckpt.sha256, "seed": int(ctx.seed), "dataset": ctx.dataset,
           "batch_size": int(ctx.batch_size), **ctx.execution_key()}
    return PartialStore(ctx.record_path, protocol.hash, key, tensors=True, valid=valid,
                        what="generation: fresh chains")


def fresh_samples(ckpt, cfg: GenerationProtocol, init, ctx: EvalContext, store: PartialStore | None = None
                  ) -> _Pool:
    """``cfg.n_samples`` SGLD chains of ``cfg.sgld.n_steps`` steps on log p(x), ``ctx.batch_size`` at a time
    (chain i starts from p_0 of class i mod C). Batch b runs under its own seed (:func:`_batch_seed`); with a
    ``store`` finished batches are read back and new ones saved as they finish."""
    n, bs = cfg.n_samples, ctx.batch_size
    n_batches = math.ceil(n / bs)
    parts, reused = [], 0
    desc = "generation: fresh SGLD chains"
    with progress.bar(total=n, desc=desc, unit="chain") as bar:
        for b in range(n_batches):
            start, stop = b * bs, min((b + 1) * bs, n)
            saved = store.load(f"fresh/{b:05d}") if store is not None else None
            part = _Pool(*(saved[k] for k in _Pool.FIELDS)) if saved is not None else None
            reused += part is not None
            if part is None:
                t0 = time.perf_counter()
                with fixed_rng(_batch_seed(ctx.seed, b), ctx.device):  # the CPU's and the device's streams
                    y = torch.arange(start, stop) % ckpt.n_classes
                    x = sgld(ckpt.model, init.sample(y, ctx.device), cfg.sgld)
                part = _classify(ckpt.model, x, ctx.device)
                if store is not None:
                    store.save(f"fresh/{b:05d}", {k: getattr(part, k) for k in _Pool.FIELDS})
                progress.unit_done(desc, f"batch {b + 1}/{n_batches} ({stop - start} chains × {cfg.sgld.n_steps} "
                                         f"steps)", time.perf_counter() - t0)
            parts.append(part)
            bar.update(stop - start)
    if reused:
        print(f"jembench: generation: reused {reused} of {n_batches} saved batches of fresh chains", file=sys.stderr)
    return _Pool.cat(parts)


# ------------------------------------------------------------------------------------------- selection
@dataclass
class _Scored:
    """What one source scores: IS on ``is_pool``, FID / KID on ``fid_pool`` (often the same images)."""

    is_pool: _Pool
    fid_pool: _Pool
    info: dict


def _selected(pool: _Pool, selection: Selection, n_classes: int, pool_name: str) -> _Scored:
    """``pool`` after ``selection`` (:func:`jembench.metrics.sample_selection.select`), with what was kept."""
    def pick(ratio: float) -> _Pool:
        idx = select(pool.confidence, pool.label, selection.rule, ratio, n_classes, selection.chunk)
        if selection.rule == "top":  # class-sorted for the grid (JEM App. B gives no order; IS splits shuffle)
            idx = idx[torch.argsort(pool.label[idx], stable=True)]
        return pool.subset(idx)

    is_pool = pick(selection.is_ratio)
    fid_pool = is_pool if selection.same_sets else pick(selection.fid_ratio)
    info = {"pool": pool_name, "pool_n": len(pool.images), "selection": selection.describe()}
    if selection.rule != "all" and len(is_pool.images):
        info["min_confidence"] = float(is_pool.confidence.min())
    if selection.rule == "per_class_top":
        info["class_counts"] = torch.bincount(pool.label, minlength=n_classes).tolist()  # official prints these
    return _Scored(is_pool, fid_pool, info)


def _ensemble_buffers(ckpt, ctx: EvalContext, notes: list[str]) -> torch.Tensor | None:
    """The union of the replay buffers of ``ctx.ensemble`` (checkpoint paths, or buffer tensors)."""
    buffers = []
    buf: torch.Tensor | None
    for item in ctx.ensemble:
        if isinstance(item, torch.Tensor):
            what, buf = "a buffer tensor", item
        else:
            same = Path(item).resolve() == Path(ckpt.path).resolve()
            what, buf = str(item), ckpt.buffer if same else load_checkpoint(item, device="cpu").buffer
        try:
            buf, problem = usable_buffer(buf, ckpt.image_shape, f"the replay buffer of {what}")
        except JembenchError as exc:
            buf, problem = None, str(exc)
        if buf is None:
            _note(notes, f"ensemble: {problem or f'{what} has no replay buffer'}; left out")
        else:
            buffers.append(to_uint8_rgb(buf))
    if not buffers:
        _note(notes, "ensemble: no checkpoint with a usable replay buffer; pass several checkpoints with --ensemble")
        return None
    return torch.cat(buffers)


# ------------------------------------------------------------------------------------------- reference
def reference_set(cfg: GenerationProtocol, ctx: EvalContext, fe_kwargs: dict) -> tuple[QuantizedDataset, str, dict]:
    """The FID / KID reference: the protocol's split(s) of the evaluation dataset (``train+test`` = the two
    concatenated, as SADAJEM Task/eval_buffer.py:89-91 with Task/data.py:248-262 reads CIFAR-10), a fixed seed-0
    subset of ``reference_n`` of them when asked; its cache name and what the record says about it."""
    splits = ("train", "test") if cfg.reference_split == "train+test" else (cfg.reference_split,)
    parts = [load_dataset(ctx.dataset, s, ctx.data_root, download=ctx.download) for s in splits]
    base = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    n_ref = min(cfg.reference_n or length(base), length(base))
    indices = torch.randperm(length(base), generator=torch.Generator().manual_seed(0))[:n_ref].sort().values.tolist()
    cache = reference_cache_name(ctx.dataset, cfg.reference_split, n_ref, fe_kwargs)
    info = {"dataset": ctx.dataset, "split": cfg.reference_split, "n": n_ref, "split_sizes": [length(p) for p in parts],
            "cache_name": cache, "cache_root": str(default_cache_root())}
    return QuantizedDataset(base, indices), cache, info


def _fresh_pool(ckpt, cfg: GenerationProtocol, protocol, ctx: EvalContext, details: dict) -> _Pool:
    init, init_source = initial_distribution(ckpt, cfg, ctx)
    pool = fresh_samples(ckpt, cfg, init, ctx, chain_store(ckpt, protocol, ctx))
    details["fresh"] = {"n": cfg.n_samples, "init": init_source, "sgld": cfg.sgld.to_dict(),
                        "non_finite": int((~pool.finite).sum())}
    return pool


def _score(scored: _Scored, cfg: GenerationProtocol, reference, cache: str, fe_kwargs: dict, ctx: EvalContext,
           source: str) -> dict[str, float]:
    """IS on the IS images, FID / KID on the FID images: one torch-fidelity call when they are the same."""
    common = dict(reference_cache=cache, fe_kwargs=fe_kwargs, isc_splits=cfg.isc_splits, isc_shuffle=cfg.isc_shuffle,
                  kid_subsets=cfg.kid_subsets, kid_subset_size=cfg.kid_subset_size, device=ctx.device,
                  batch_size=ctx.batch_size, seed=ctx.seed, desc=f"generation: {source} features")
    if scored.is_pool is scored.fid_pool:
        return fidelity_metrics(scored.is_pool.images, reference, **common)
    result = fidelity_metrics(scored.is_pool.images, None, fid=False, kid=False, **common)
    result.update(fidelity_metrics(scored.fid_pool.images, reference, isc=False, **common))
    return result


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: GenerationProtocol = protocol.settings
    fe_kwargs = feature_extractor_kwargs(cfg.feature_extractor, ctx.inception_weights)  # fail fast
    buffer, buffer_problem = usable_buffer(ckpt.buffer, ckpt.image_shape, f"the replay buffer of {ckpt.path}")
    notes: list[str] = []
    details: dict = {"feature_extractor": cfg.feature_extractor, "sources": {}}
    if "feature_extractor_weights_path" in fe_kwargs:
        details["feature_extractor_weights"] = Path(fe_kwargs["feature_extractor_weights_path"]).name
    reference, cache, details["reference"] = reference_set(cfg, ctx, fe_kwargs)

    pools: dict[str, _Pool] = {}
    want_buffer = "buffer" in cfg.sources or ("conditional" in cfg.sources and cfg.conditional_pool == "buffer")
    if want_buffer:
        if buffer is None:
            _note(notes, f"buffer: {buffer_problem or 'the checkpoint stores no replay buffer'}; buffer source "
                         f"skipped")
        else:
            pools["buffer"] = _pool_from_images(ckpt.model, buffer, ctx.device, ctx.batch_size)
    cond_pool = cfg.conditional_pool if cfg.conditional_pool in pools else "fresh"
    if "fresh" in cfg.sources or ("conditional" in cfg.sources and cond_pool == "fresh"):
        pools["fresh"] = _fresh_pool(ckpt, cfg, protocol, ctx, details)

    scored: dict[str, _Scored] = {}
    if "buffer" in cfg.sources and "buffer" in pools:
        scored["buffer"] = _selected(pools["buffer"], cfg.buffer_selection, ckpt.n_classes, "buffer")
    if "fresh" in cfg.sources:
        scored["fresh"] = _selected(pools["fresh"], Selection(), ckpt.n_classes, "fresh")
    if "conditional" in cfg.sources:
        if cond_pool != cfg.conditional_pool:
            _note(notes, "conditional: no usable replay buffer, so the samples are selected from the fresh chains")
        chosen = scored["conditional"] = _selected(pools[cond_pool], cfg.conditional_selection, ckpt.n_classes,
                                                   cond_pool)
        details["conditional"] = {"pool": cond_pool, "k": len(chosen.is_pool.images),
                                  **{k: v for k, v in chosen.info.items() if k == "min_confidence"}}
    if ctx.ensemble:
        union = _ensemble_buffers(ckpt, ctx, notes)
        if union is not None:
            pool = _Pool(union, torch.ones(len(union)), torch.zeros(len(union), dtype=torch.long))
            scored["ensemble"] = _Scored(pool, pool, {"pool": "ensemble", "pool_n": len(union),
                                                      "selection": Selection().describe()})
            details["ensemble"] = {"checkpoints": [str(p) if not isinstance(p, torch.Tensor) else "<tensor>"
                                                   for p in ctx.ensemble]}

    metrics: dict[str, float] = {}
    figures: list[str] = []
    for source, item in scored.items():
        pool_name = item.info["pool"]
        if pool_name in pools and not bool(pools[pool_name].finite.all()):
            bad = int((~pools[pool_name].finite).sum())
            _note(notes, f"{source}: {bad} of {len(pools[pool_name].images)} {pool_name} images are NaN/Inf "
                         f"(diverged chains); not scored")
            continue
        small = min(len(item.is_pool.images), len(item.fid_pool.images))
        if small < 2:
            _note(notes, f"{source}: only {small} image(s) selected; IS/FID/KID need at least 2, skipped")
            continue
        result = _score(item, cfg, reference, cache, fe_kwargs, ctx, source)
        for key in metric_keys.heads("fidelity"):
            metrics[metric_keys.fidelity(key, source)] = result[key]
        details["sources"][source] = {"n": len(item.fid_pool.images), "n_is": len(item.is_pool.images),
                                      "is_splits": isc_split_count(cfg.isc_splits, len(item.is_pool.images)),
                                      "is_std": result["is_std"], "kid_std": result["kid_std"], **item.info}
        if cfg.grid_n:
            path = ctx.figure_path(f"samples_{source}")
            pool = item.is_pool
            names = getattr(getattr(reference, "base", None), "classes", None)
            sample_grid(pool.images, path, n=cfg.grid_n, labels=pool.label if source == "conditional" else None,
                        class_names=names)
            figures.append(path.name)
    if not metrics:
        raise JembenchError("generation: nothing could be scored (" + "; ".join(notes or ["no source"]) + ")")
    details["notes"] = notes
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=figures, seed=ctx.seed, wall_time_s=time.perf_counter() - start)


def format_table(record: dict) -> str:
    m = record["metrics"]
    details = record.get("details", {})
    key = metric_keys.fidelity

    def n_text(info: dict) -> str:
        n, n_is = info.get("n", ""), info.get("n_is", info.get("n", ""))
        return f"{n_is} / {n}" if n_is != n else str(n)

    heads = metric_keys.heads("fidelity")
    rows = [[source, *(SPECS[h].format(m.get(key(h, source))) for h in heads), n_text(info),
             info.get("selection", "")] for source, info in details.get("sources", {}).items()]
    reference = details.get("reference", {})
    lines = [f"Generation, {record['model']['name']} vs {record['dataset']} {reference.get('split', 'train')} "
             f"(n = {reference.get('n', '?')}; feature extractor {details.get('feature_extractor', '?')})",
             tabulate(rows, headers=["samples", *(SPECS[h].column for h in heads), "n (IS / FID)", "selection"],
                      tablefmt="github")]
    if details.get("feature_extractor") not in (None, INCEPTION):
        lines.append("note: not Inception features — numbers are not comparable with the papers'")
    lines += [f"note: {n}" for n in details.get("notes", [])]
    return "\n".join(lines)


def headline(record: dict) -> dict[str, float]:
    """IS / FID of fresh SGLD chains when measured (every model has them, so rows compare like with like),
    else of the first source measured."""
    m = record["metrics"]
    for source in ("fresh", *SOURCES):
        if metric_keys.fidelity("fid", source) in m:
            return {f"{SPECS[h].label} ({source}) {SPECS[h].arrow}": m[metric_keys.fidelity(h, source)]
                    for h in ("is", "fid")}
    return {}
