"""Out-of-distribution detection suite (JEM §5.3, Tables 2/3/7; SADA-JEM Table 3).

Each score s(x) (higher = more in-distribution; :mod:`jembench.metrics.ood_scores`) — ``log_px`` = LSE f(x),
``max_py`` = max_y p(y|x), ``grad_norm`` = −‖∂ log p(x)/∂x‖₂ — is computed on the in-distribution test split and
on every OOD set; AUROC (the papers' number), AUPR-In and FPR@95%TPR (:mod:`jembench.metrics.detection`) treat
in-distribution as positive. The table prints scores × sets like JEM Table 3 / Table 7.

OOD sets (protocol ``sets``):
  ``svhn``, ``cifar100``, ``celeba`` (or any registered dataset), ``folder:PATH`` — the test split, streamed in
      batches. Images with another spatial size are resized (+ centre crop) to the in-distribution size, with a
      note; a different channel count (digits 1×8×8 vs SVHN 3×32×32) or a missing dataset skips the set with a
      visible note — never fatal.
  ``uniform``   every pixel i.i.d. U(−1, 1) (JEM Table 7 "Uniform").
  ``constant``  every pixel 0, i.e. mid-grey in [−1, 1] — JEM App. E.2 defines the Constant dataset as "all
      examples = 0"; the set is a single point, so its AUROC is P(s(x_in) > s(0)).
  ``interp``    λ·x_a + (1 − λ)·x_b for random pairs a ≠ b of in-distribution test images ("CIFAR10 Interp",
      JEM §5.3); λ = ``interp_lambda`` = 0.5 as the official evaluation, which averages two shuffled batches.
Synthetic sets have as many images as the in-distribution set unless ``n_out`` says otherwise.

Protocol (:class:`OODProtocol`, ``suites/ood.toml``): ``sets``, ``scores``, ``n_in``, ``n_out``, ``input_noise`` (σ
added to every input, official JEM default .03, SADA-JEM 0), ``interp_lambda``, ``hist_bins``.
Figures: ``<record>_hist_<score>.png`` — per OOD set, histograms of the in-distribution (green) and OOD (red)
scores, like JEM Table 2.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torchvision.transforms.functional as TF
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, Subset

from .. import metric_keys
from ..catalog import PAPER_OOD_SETS, SYNTHETIC_OOD
from ..data import dataset_info, dataset_names, load_dataset, synthetic_ood_batch
from ..errors import JembenchError
from ..figures import score_histograms
from ..metrics.detection import CONVENTION, detection_metrics
from ..metrics.ood_scores import SCORES, score_batches, score_tensor
from ..records import make_record
from ..schema import Invalid, setting
from . import EvalContext

NAME = "ood"


@dataclass(frozen=True)
class OODProtocol:
    """The OOD protocol; defaults = the paper setting (JEM Table 7 sets, the three JEM scores, whole splits)."""

    sets: tuple[str, ...] = setting(PAPER_OOD_SETS, nonempty=True,
                                    help="OOD sets: datasets, uniform / constant / interp, folder:PATH")
    scores: tuple[str, ...] = setting(("log_px", "max_py", "grad_norm"), nonempty=True,
                                      help="registered OOD scores (jembench.metrics.ood_scores)")
    n_in: int = setting(0, ge=0, help="in-distribution test images, chosen by seed; 0 = the whole test split")
    n_out: int = setting(0, ge=0, help="images per OOD set; 0 = whole test split (synthetic: as many as n_in)")
    input_noise: float = setting(0.0, ge=0, help="sigma of Gaussian noise added to every input")
    interp_lambda: float = setting(0.5, ge=0, le=1, help="interp = lambda*x_a + (1-lambda)*x_b")
    hist_bins: int = setting(100, ge=1, help="bins of the score histograms")

    def validate(self) -> None:
        for s in self.scores:
            if s not in SCORES:
                raise Invalid(f"scores has {s!r}; use registered scores: {', '.join(SCORES)}")
        for s in self.sets:
            if not (s in SYNTHETIC_OOD or s in dataset_names() or s.startswith("folder:")):
                raise Invalid(f"unknown OOD set {s!r} in sets; use {', '.join(SYNTHETIC_OOD)}, a dataset "
                              f"({', '.join(dataset_names())}) or folder:PATH")


PROTOCOL = OODProtocol


def _note(notes: list[str], text: str) -> None:
    notes.append(text)
    print(f"jembench: ood: {text}", file=sys.stderr)


def _shape(shape) -> str:
    return "×".join(str(s) for s in shape)


# -------------------------------------------------------------------------------------------- OOD inputs
def _synthetic_batches(name: str, x_in: torch.Tensor, n: int, batch_size: int, seed: int,
                       lam: float) -> Iterator[torch.Tensor]:
    """``n`` images of a synthetic set (see the module docstring), generated ``batch_size`` at a time."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        yield synthetic_ood_batch(name, x_in, min(batch_size, n - start), gen, lam)


class _Resized(Dataset):
    """A dataset's images resized (shorter side) and centre-cropped to ``size`` (H, W); right-sized ones pass."""

    def __init__(self, base: Dataset, size: tuple[int, int]):
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        if tuple(x.shape[1:]) != self.size:
            x = TF.center_crop(TF.resize(x, min(self.size), antialias=True), list(self.size))
        return x, y


def _dataset_batches(name: str, in_shape: tuple[int, ...], n: int, ctx: EvalContext, notes: list[str]
                     ) -> Iterator[torch.Tensor] | None:
    """Stream the test split of dataset ``name`` brought to ``in_shape``; None (with a note) when unusable."""
    if name == ctx.dataset:
        _note(notes, f"skipped {name}: it is the in-distribution dataset")
        return None
    if not name.startswith("folder:"):
        shape = dataset_info(name).image_shape
        if shape[0] != in_shape[0]:
            _note(notes, f"skipped {name}: its images are {_shape(shape)} but the model takes {_shape(in_shape)} "
                         f"(channel mismatch)")
            return None
    try:
        ds = load_dataset(name, "test", ctx.data_root, download=ctx.download)
        first = ds[0][0]
    except JembenchError as exc:
        _note(notes, f"skipped {name}: {exc}")
        return None
    except (OSError, RuntimeError, IndexError) as exc:
        _note(notes, f"skipped {name}: cannot read its test split ({type(exc).__name__}: {exc})")
        return None
    if first.shape[0] != in_shape[0]:
        _note(notes, f"skipped {name}: its images are {_shape(first.shape)} but the model takes {_shape(in_shape)} "
                     f"(channel mismatch)")
        return None
    if tuple(first.shape[1:]) != tuple(in_shape[1:]):
        _note(notes, f"{name}: images resized from {_shape(first.shape)} to {_shape(in_shape)}")
    if name.startswith("folder:") or tuple(first.shape[1:]) != tuple(in_shape[1:]):
        ds = _Resized(ds, tuple(in_shape[1:]))  # folder images may differ in size from one file to the next
    if n and n < len(ds):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(ctx.seed))[:n].sort().values
        ds = Subset(ds, idx.tolist())
    loader = DataLoader(ds, batch_size=ctx.batch_size, shuffle=False, num_workers=0)
    return (x for x, _ in loader)


def _noisy(batches: Iterator[torch.Tensor], sigma: float, gen: torch.Generator) -> Iterator[torch.Tensor]:
    for x in batches:
        yield x + sigma * torch.randn(x.shape, generator=gen) if sigma > 0 else x


# ------------------------------------------------------------------------------------------------- suite
def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: OODProtocol = protocol.settings
    notes: list[str] = []
    x_in, _ = ctx.test_set(cfg.n_in or None)
    in_shape = tuple(x_in.shape[1:])
    noise_gen = torch.Generator().manual_seed(ctx.seed + 1)
    model = ckpt.model
    model.eval()
    noisy_in = x_in + cfg.input_noise * torch.randn(x_in.shape, generator=noise_gen) if cfg.input_noise else x_in
    scores_in = score_tensor(model, noisy_in, cfg.scores, ctx.device, ctx.batch_size)
    del noisy_in
    metrics: dict[str, float] = {}
    per_set: dict[str, dict] = {}
    scores_out: dict[str, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(cfg.sets):
        if name in SYNTHETIC_OOD:
            n = cfg.n_out or len(x_in)
            batches = _synthetic_batches(name, x_in, n, ctx.batch_size, ctx.seed * 1000 + i, cfg.interp_lambda)
        else:
            batches = _dataset_batches(name, in_shape, cfg.n_out, ctx, notes)
            if batches is None:
                continue
        try:
            out = score_batches(model, _noisy(batches, cfg.input_noise, noise_gen), cfg.scores, ctx.device)
        except OSError as exc:  # an unreadable image file deep in a dataset: skip the set, keep the rest
            _note(notes, f"skipped {name}: reading it failed ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        if len(next(iter(out.values()))) == 0:
            _note(notes, f"skipped {name}: no images")
            continue
        scores_out[name] = out
        per_set[name] = {"n": len(next(iter(out.values()))), "scores": {}}
        for score in cfg.scores:
            result = detection_metrics(scores_in[score], out[score])
            per_set[name]["scores"][score] = result
            for metric in metric_keys.OOD_METRICS:
                metrics[metric_keys.ood(metric, name, score)] = result[metric]
    figures = []
    for score in cfg.scores:
        path = ctx.figure_path(f"hist_{score}")
        score_histograms(scores_in[score], {s: o[score] for s, o in scores_out.items()}, path,
                         label=SCORES[score].label, in_name=ctx.dataset, bins=cfg.hist_bins,
                         aurocs={s: per_set[s]["scores"][score]["auroc"] for s in scores_out})
        figures.append(path.name)
    details = {"convention": CONVENTION, "n_in": len(x_in), "sets": per_set, "notes": notes,
               "scores": {s: SCORES[s].label for s in cfg.scores},
               "in_distribution_score_mean": {s: float(scores_in[s].double().mean()) for s in cfg.scores},
               "synthetic_sets": {"uniform": "pixels iid U(-1, 1)", "constant": "all pixels 0 (JEM App. E.2)",
                                  "interp": f"{cfg.interp_lambda:g}*x_a + {1 - cfg.interp_lambda:g}*x_b, pairs a != b "
                                            f"of in-distribution test images"}}
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=figures, seed=ctx.seed, wall_time_s=time.perf_counter() - start)


def _fmt(value: float) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.3f}"


def _table_parts(record: dict) -> tuple[list[str], list[str], dict]:
    details = record.get("details", {})
    sets = list(details.get("sets", {}))
    scores = list(details.get("scores", {}))
    return sets, scores, details


def format_table(record: dict) -> str:
    m = record["metrics"]
    sets, scores, details = _table_parts(record)
    labels = details.get("scores", {})
    lines = [f"OOD detection, in-distribution {record['dataset']} (n = {details.get('n_in', '?')}), "
             f"model {record['model']['name']}: AUROC ↑"]
    key = metric_keys.ood
    lines.append(tabulate([[labels.get(s, s)] + [_fmt(m.get(key("auroc", d, s), math.nan)) for d in sets]
                           for s in scores], headers=["score"] + sets, tablefmt="github"))
    lines.append("\nAUPR-In ↑ / FPR@95%TPR ↓")
    lines.append(tabulate([[labels.get(s, s)] + [f"{_fmt(m.get(key('aupr', d, s), math.nan))} / "
                                                 f"{_fmt(m.get(key('fpr95', d, s), math.nan))}" for d in sets]
                           for s in scores], headers=["score"] + sets, tablefmt="github"))
    for note in details.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def headline(record: dict) -> dict[str, float]:
    """Mean AUROC over the evaluated OOD sets, per score."""
    m = record["metrics"]
    sets, scores, details = _table_parts(record)
    out = {}
    for s in scores:
        values = [m[k] for k in (metric_keys.ood("auroc", d, s) for d in sets) if not math.isnan(m.get(k, math.nan))]
        out[f"AUROC {details['scores'].get(s, s)} (mean) ↑"] = float(np.mean(values)) if values else math.nan
    return out
