"""Generation suite: IS, FID and KID of a JEM's samples (JEM Table 1 + App. B; SADA-JEM Tables 1–2).

Sample sources (metric keys ``is/<source>``, ``fid/<source>``, ``kid/<source>``):
  ``buffer``       the replay buffer stored in the checkpoint — JEM App. B: "single" scores are computed on the
                   training buffer of the last checkpoint (with uniform reinit it equals re-sampling the model).
  ``fresh``        ``n_samples`` new SGLD chains (JEM Eq. 3 on log p(x), :func:`jembench.sampling.sgld`) of
                   ``steps`` steps from p_0: ``uniform`` U(−1, 1) or ``informative`` — JEM++'s per-class Gaussians,
                   taken from the checkpoint when it stores them, else fitted to the training set.
  ``conditional``  JEM App. B: the top ``conditional_fraction`` (10%) of a pool (the buffer, or the fresh samples
                   without one) by max_y p(y|x).
  ``ensemble``     with ``--ensemble``: the union of the buffers of all checkpoints given on the command line
                   (JEM App. B lumps together 5 buffers from the last epochs).
FID and KID compare against the in-distribution training set; its features are computed once and cached on disk
(:mod:`jembench.metrics.fidelity`). Every image is quantized to uint8 exactly once (:func:`to_uint8_rgb`).

Protocol: :class:`GenerationProtocol` (defaults = the paper setting; ``suites/generation.toml`` comments every
field), with the fresh chains' SGLD settings in ``[sgld]`` (:class:`jembench.sampling.SGLDConfig`).
``--n-samples``, ``--steps`` and ``--init`` (:data:`OVERRIDES`) change ``n_samples``, ``sgld.n_steps`` and
``init``; the record then carries the changed protocol (and its own hash), so overridden runs never compare equal
to plain ones.
Figures: ``<record>_samples_<source>.png`` — a grid of (up to ``grid_n``) scored samples per source.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tabulate import tabulate

from .. import atomic, metric_keys
from ..data import load_dataset, stack_dataset
from ..errors import JembenchError
from ..figures import sample_grid
from ..metric_keys import SOURCES
from ..metrics.fidelity import (INCEPTION, QuantizedDataset, default_cache_root, feature_extractor_kwargs,
                                fidelity_metrics, reference_cache_name, to_uint8_rgb)
from ..models import load_checkpoint
from ..records import make_record
from ..sampling import ClassGaussianInit, SGLDConfig, UniformInit, sgld
from ..schema import setting
from . import EvalContext

NAME = "generation"
OVERRIDES = {"n_samples": "n_samples", "steps": "sgld.n_steps", "init": "init"}  # evaluate() keyword -> field


@dataclass(frozen=True)
class GenerationProtocol:
    """The generation protocol; defaults = the paper setting (JEM Table 1 + App. B, Inception features)."""

    sources: tuple[str, ...] = setting(("buffer", "fresh", "conditional"), nonempty=True, choices=SOURCES[:3],
                                       help="sample sources (ensemble is switched on by --ensemble)")
    feature_extractor: str = setting(INCEPTION, help="torch-fidelity feature extractor name")
    reference_split: str = setting("train", choices=("train", "test"), help="FID / KID reference split")
    reference_n: int = setting(0, ge=0, help="reference images (fixed seed-0 subset); 0 = the whole split")
    n_samples: int = setting(10000, ge=2, help="fresh SGLD chains (--n-samples)")
    init: str = setting("uniform", choices=("uniform", "informative"), help="p_0 of fresh chains (--init)")
    sgld: SGLDConfig = setting(SGLDConfig(n_steps=100, step_size=1.0, noise=0.01),
                               help="SGLD of the fresh chains (n_steps: --steps)")
    conditional_fraction: float = setting(0.1, gt=0, le=1, help="top share by max_y p(y|x) (JEM App. B: 0.1)")
    conditional_pool: str = setting("buffer", choices=("buffer", "fresh"), help="pool of the conditional samples")
    informative_fit_n: int = setting(0, ge=0, help="training images for fitting the informative init; 0 = all")
    isc_splits: int = setting(10, ge=1, help="Inception Score splits")
    kid_subsets: int = setting(100, ge=1, help="KID subsets")
    kid_subset_size: int = setting(1000, ge=2, help="KID subset size")
    grid_n: int = setting(100, ge=0, help="samples per PNG grid; 0 = no grid")


PROTOCOL = GenerationProtocol


@dataclass
class _Pool:
    """Scored images of one source: uint8 RGB images, max_y p(y|x) and argmax_y of the float images."""

    images: torch.Tensor
    confidence: torch.Tensor
    label: torch.Tensor


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    print(f"jembench: generation: {text}", file=sys.stderr)


@torch.no_grad()
def _classify_and_quantize(model, x: torch.Tensor, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    probs = torch.softmax(model(x.to(device)).float(), dim=1).cpu()
    conf, label = probs.max(dim=1)
    return to_uint8_rgb(x.cpu()), conf, label


def _pool_from_images(model, images: torch.Tensor, device: str, batch_size: int) -> _Pool:
    parts = [_classify_and_quantize(model, images[i:i + batch_size], device) for i in range(0, len(images), batch_size)]
    return _Pool(*(torch.cat(p) for p in zip(*parts)))


def initial_distribution(ckpt, cfg: GenerationProtocol, ctx: EvalContext) -> tuple[object, str]:
    """p_0 of fresh chains and where it came from: U(−1, 1), or JEM++'s class Gaussians from the checkpoint
    (when its buffer was initialised from them) or fitted to the training set."""
    if cfg.init == "uniform":
        return UniformInit(ckpt.image_shape), "uniform U(-1, 1)"
    state = ckpt.init_state or {}
    if state.get("name") == ClassGaussianInit.name and "means" in state:
        return ClassGaussianInit.from_state_dict(state), "class Gaussians stored in the checkpoint"
    x, y = stack_dataset(load_dataset(ctx.dataset, "train", ctx.data_root, download=ctx.download),
                         limit=cfg.informative_fit_n or None, seed=ctx.seed)
    try:
        init = ClassGaussianInit.fit(x, y, ckpt.n_classes)
    except (ValueError, RuntimeError) as exc:
        raise JembenchError(f"cannot fit the informative init to {ctx.dataset} train ({exc}); raise "
                            f"informative_fit_n in the protocol or use init = \"uniform\"") from None
    return init, f"class Gaussians fitted to {len(x)} {ctx.dataset} training images"


def fresh_samples(ckpt, cfg: GenerationProtocol, init, ctx: EvalContext) -> _Pool:
    """``cfg.n_samples`` SGLD chains of ``cfg.sgld.n_steps`` steps on log p(x), ``ctx.batch_size`` at a time."""
    parts = []
    for start in range(0, cfg.n_samples, ctx.batch_size):
        y = torch.arange(start, min(start + ctx.batch_size, cfg.n_samples)) % ckpt.n_classes
        x = sgld(ckpt.model, init.sample(y, ctx.device), cfg.sgld)
        parts.append(_classify_and_quantize(ckpt.model, x, ctx.device))
    return _Pool(*(torch.cat(p) for p in zip(*parts)))


def _resumable_fresh_samples(ckpt, cfg: GenerationProtocol, init, protocol, ctx: EvalContext) -> _Pool:
    """:func:`fresh_samples`, saved (atomically) as ``<record stem>.partial.fresh.pt`` beside the record: a rerun
    with the same output path, checkpoint, protocol and seed reuses them instead of running the chains again
    (the expensive part of this suite). :func:`jembench.evaluation.run_suite` deletes the file once the record
    is written."""
    record_path = ctx.record_path
    if not record_path:
        return fresh_samples(ckpt, cfg, init, ctx)
    partial = Path(record_path).with_name(f"{Path(record_path).stem}.partial.fresh.pt")
    key = {"protocol": protocol.hash, "sha256": ckpt.sha256, "seed": ctx.seed, "dataset": ctx.dataset}
    if partial.is_file():
        try:
            saved = torch.load(partial, map_location="cpu", weights_only=True)
        except Exception:  # a foreign or damaged file: recompute and overwrite it
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key:
            print(f"generation: reusing the fresh samples saved in {partial}", file=sys.stderr)
            return _Pool(saved["images"], saved["confidence"], saved["label"])
    pool = fresh_samples(ckpt, cfg, init, ctx)
    atomic.torch_save(partial, {"key": key, "images": pool.images, "confidence": pool.confidence,
                                "label": pool.label})
    return pool


def top_fraction(confidence: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the ⌈fraction·N⌉ (at least 2) most confident samples, most confident first (JEM App. B)."""
    k = min(len(confidence), max(2, math.ceil(fraction * len(confidence))))
    return torch.topk(confidence, k).indices


def _ensemble_buffers(ckpt, ctx: EvalContext, notes: list[str]) -> torch.Tensor | None:
    """The union of the replay buffers of ``ctx.ensemble`` (checkpoint paths, or buffer tensors)."""
    buffers = []
    for item in ctx.ensemble:
        if isinstance(item, torch.Tensor):
            what, buf = "a buffer tensor", item
        else:
            same = Path(item).resolve() == Path(ckpt.path).resolve()
            what, buf = str(item), ckpt.buffer if same else load_checkpoint(item, device="cpu").buffer
        if buf is None:
            _note(notes, f"ensemble: {what} has no replay buffer; left out")
        elif tuple(buf.shape[1:]) != tuple(ckpt.image_shape):
            _note(notes, f"ensemble: {what} holds {tuple(buf.shape[1:])} images, not {tuple(ckpt.image_shape)};"
                         f" left out")
        else:
            buffers.append(to_uint8_rgb(buf.detach().cpu()))
    if not buffers:
        _note(notes, "ensemble: no checkpoint with a usable replay buffer; pass several checkpoints with --ensemble")
        return None
    return torch.cat(buffers)


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: GenerationProtocol = protocol.settings
    fe_kwargs = feature_extractor_kwargs(cfg.feature_extractor, ctx.inception_weights)  # fail fast
    notes: list[str] = []
    details: dict = {"feature_extractor": cfg.feature_extractor, "sources": {}}
    if "feature_extractor_weights_path" in fe_kwargs:
        details["feature_extractor_weights"] = Path(fe_kwargs["feature_extractor_weights_path"]).name
    # the FID / KID reference: a fixed (seed 0) subset of the training set, so its cache entry is shared by runs
    base = load_dataset(ctx.dataset, cfg.reference_split, ctx.data_root, download=ctx.download)
    n_ref = min(cfg.reference_n or len(base), len(base))
    indices = torch.randperm(len(base), generator=torch.Generator().manual_seed(0))[:n_ref].sort().values.tolist()
    reference = QuantizedDataset(base, indices)
    cache = reference_cache_name(ctx.dataset, cfg.reference_split, n_ref, fe_kwargs)
    details["reference"] = {"dataset": ctx.dataset, "split": cfg.reference_split, "n": n_ref, "cache_name": cache,
                            "cache_root": str(default_cache_root())}

    pools: dict[str, _Pool] = {}
    want_buffer = "buffer" in cfg.sources or ("conditional" in cfg.sources and cfg.conditional_pool == "buffer")
    if want_buffer:
        if ckpt.buffer is None:
            _note(notes, "buffer: the checkpoint stores no replay buffer; buffer source skipped")
        else:
            pools["buffer"] = _pool_from_images(ckpt.model, ckpt.buffer, ctx.device, ctx.batch_size)
    cond_pool = cfg.conditional_pool if cfg.conditional_pool in pools else "fresh"
    if "fresh" in cfg.sources or ("conditional" in cfg.sources and cond_pool == "fresh"):
        init, init_source = initial_distribution(ckpt, cfg, ctx)
        pools["fresh"] = _resumable_fresh_samples(ckpt, cfg, init, protocol, ctx)
        details["fresh"] = {"n": cfg.n_samples, "init": init_source, "sgld": cfg.sgld.to_dict()}

    samples: dict[str, _Pool | torch.Tensor] = {s: pools[s] for s in ("buffer", "fresh") if s in cfg.sources
                                                 and s in pools}
    if "conditional" in cfg.sources:
        if cond_pool != cfg.conditional_pool:
            _note(notes, "conditional: no replay buffer, so the top samples are taken from the fresh chains")
        pool = pools[cond_pool]
        idx = top_fraction(pool.confidence, cfg.conditional_fraction)
        idx = idx[torch.argsort(pool.label[idx], stable=True)]  # class-sorted, for the grid
        samples["conditional"] = _Pool(pool.images[idx], pool.confidence[idx], pool.label[idx])
        details["conditional"] = {"pool": cond_pool, "fraction": cfg.conditional_fraction, "k": len(idx),
                                  "min_confidence": float(pool.confidence[idx].min())}
    if ctx.ensemble:
        union = _ensemble_buffers(ckpt, ctx, notes)
        if union is not None:
            samples["ensemble"] = union
            details["ensemble"] = {"checkpoints": [str(p) if not isinstance(p, torch.Tensor) else "<tensor>"
                                                   for p in ctx.ensemble]}

    metrics: dict[str, float] = {}
    figures: list[str] = []
    for source, item in samples.items():
        images = item.images if isinstance(item, _Pool) else item
        if len(images) < 2:
            _note(notes, f"{source}: only {len(images)} image(s); IS/FID/KID need at least 2, skipped")
            continue
        result = fidelity_metrics(images, reference, reference_cache=cache, fe_kwargs=fe_kwargs,
                                  isc_splits=cfg.isc_splits, kid_subsets=cfg.kid_subsets,
                                  kid_subset_size=cfg.kid_subset_size, device=ctx.device,
                                  batch_size=ctx.batch_size, seed=ctx.seed)
        for key in metric_keys.FIDELITY_METRICS:
            metrics[metric_keys.fidelity(key, source)] = result[key]
        details["sources"][source] = {"n": len(images), "is_std": result["is_std"], "kid_std": result["kid_std"]}
        if cfg.grid_n:
            path = ctx.figure_path(f"samples_{source}")
            sample_grid(images, path, n=cfg.grid_n, labels=item.label if source == "conditional" else None,
                        class_names=getattr(base, "classes", None))
            figures.append(path.name)
    details["notes"] = notes
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=figures, seed=ctx.seed, wall_time_s=time.perf_counter() - start)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else ("nan" if math.isnan(value) else format(value, spec))


def format_table(record: dict) -> str:
    m = record["metrics"]
    details = record.get("details", {})
    key = metric_keys.fidelity
    rows = [[source, _fmt(m.get(key("is", source)), ".3f"), _fmt(m.get(key("fid", source)), ".2f"),
             _fmt(m.get(key("kid", source)), ".4f"), info.get("n", "")]
            for source, info in details.get("sources", {}).items()]
    lines = [f"Generation, {record['model']['name']} vs {record['dataset']} "
             f"{details.get('reference', {}).get('split', 'train')} (feature extractor "
             f"{details.get('feature_extractor', '?')})",
             tabulate(rows, headers=["samples", "IS ↑", "FID ↓", "KID ↓", "n"], tablefmt="github")]
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
            return {f"IS ({source}) ↑": m[metric_keys.fidelity("is", source)],
                    f"FID ({source}) ↓": m[metric_keys.fidelity("fid", source)]}
    return {}
