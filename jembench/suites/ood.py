"""Out-of-distribution detection suite (JEM §5.3, Tables 2/3/7; SADA-JEM Table 3).

Each score s(x) (higher = more in-distribution; :mod:`jembench.metrics.ood_scores`) — ``log_px`` = LSE f(x),
``max_py`` = max_y p(y|x), ``grad_norm`` = −‖∂ log p(x)/∂x‖₂ — is computed on the in-distribution test split and
on every OOD set, all scores from one forward pass per batch; AUROC (the papers' number, with its Hanley–McNeil
standard error), AUPR-In and FPR@95%TPR (:mod:`jembench.metrics.detection`) treat in-distribution as positive —
the official ``OODAUC``: ``roc_auc_score`` on the concatenated scores with real = 1, fake = 0 (JEM
eval_wrn_ebm.py:314-321, JEM++ eval_jempp.py:442-449, SADA-JEM eval_sadajem.py:391-398). The table prints
scores × sets like JEM Table 3 / Table 7.

OOD sets (protocol ``sets``; names, display labels, folders and resizing: :mod:`jembench.suites.ood_sets`):
  ``svhn``, ``cifar100``, ``celeba`` (or any registered dataset), ``folder:PATH`` or a table
      ``{ folder = "PATH", label = "...", name = "..." }`` — the test split, streamed in batches. A different
      channel count (digits 1×8×8 vs SVHN 3×32×32) or a missing dataset skips the set with a visible note.
  ``uniform``   every pixel i.i.d. U(−1, 1) (JEM Table 7 "Uniform"; the JEM paper only — no official code has it).
  ``constant``  every pixel 0, i.e. mid-grey in [−1, 1] — JEM App. E.2 defines the Constant dataset as "all
      examples = 0" (the JEM paper only, no official code); with σ = 0 the set is a single point, so its AUROC
      is P(s(x_in) > s(0)).
  ``interp``    ``interp_pairs = "random"``: λ·x_a + (1 − λ)·x_b for seeded random pairs a ≠ b of the clean
      in-distribution test images; ``"consecutive-batches"``: the official construction, consecutive batches of
      the shuffled, σ-noised test loader, (x_i + x_{i−1})/2 + σ·ε (:func:`ood_sets._consecutive_interp`).
Synthetic sets have as many images as the in-distribution set unless ``n_out`` says otherwise.

Input noise σ (``input_noise``) is added to every input of every set after normalisation, as the official
transforms do (official JEM / JEM++ default .03, SADA-JEM 0). ``bn_mode = "train"`` runs the model in train mode
(JEM's eval_wrn_ebm.py never calls ``f.eval()``): each forward batch (``batch_size``; official: 100, the test
split in index order, OOD sets shuffled — ``shuffle_out``) is normalised with its own statistics.

Protocol (:class:`OODProtocol`; ``suites/ood.toml`` = the JEM paper's sets, ``suites/ood-<paper>-official.toml``
= each paper's official ``--eval OOD``, ``suites/ood-cifar10-offline.toml`` = the real sets reachable offline).
Figures: ``<record>_hist_<score>.png`` — per OOD set, histograms of the in-distribution (green) and OOD (red)
scores, like JEM Table 2, titled with the sets' display labels; drawn from the binned histograms the record keeps
(``details["histograms"][score]``), so ``jembench redraw`` can draw them again from the record.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

from .. import metric_keys
from ..defaults import DATA_ROOT_ENV, data_root
from ..figures import histogram_data, score_histograms
from ..errors import JembenchError
from ..evidence import Evidence, StreamDigest, stream
from ..metrics.detection import CONVENTION, detection_metrics
from ..metrics.ood_scores import SCORES, score_batches
from ..progress import track
from ..records import dataset_label, make_record, set_label
from ..sampling_error import standard_error
from . import EvalContext, add_noise, chunks, forward_mode, n_batches, noise_generator
from .ood_protocol import OODProtocol, OODSet
from .ood_sets import precheck, set_images, wanted

NAME = "ood"
OVERRIDES = {"bn_mode": "bn_mode"}


PROTOCOL = OODProtocol  # defined torch-free in :mod:`.ood_protocol`


def _scores(model, batches, cfg: OODProtocol, ctx: EvalContext, n: int, batch: int, desc: str
            ) -> dict[str, torch.Tensor]:
    """Every requested score of every image in ``batches`` (one forward pass per batch), with a progress bar."""
    return score_batches(model, track(batches, total=n_batches(n, batch), desc=desc, unit="batch"), cfg.scores,
                         ctx.device)


class Distinct:
    """Counts the distinct inputs of a stream of batches on their way through (BLAKE2b of each input's float32
    bytes, as the model sees it: after the input noise). Duplicates are one draw: the Constant set without noise
    is one image repeated, whose AUROC's error is not the Hanley–McNeil one of n independent images
    (:func:`jembench.sampling_error.auroc_error`)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def count(self, batches):
        for x in batches:
            rows = x.detach().to("cpu", torch.float32).reshape(len(x), -1).numpy()
            self._seen.update(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows)
            yield x


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean()) if len(t) else math.nan


def _interp_text(cfg: OODProtocol) -> str:
    lam = f"{cfg.interp_lambda:g}*x_a + {1 - cfg.interp_lambda:g}*x_b"
    if cfg.interp_pairs == "consecutive-batches":
        return (f"{lam} with a = image j of batch i, b = image j of batch i-1 of the shuffled in-distribution test "
                f"images in batches of {cfg.interp_batch}, both noised, then noised again (official OODAUC)")
    return f"{lam}, seeded random pairs a != b of clean in-distribution test images"


# ------------------------------------------------------------------------------------------------- suite
def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: OODProtocol = protocol.settings
    sets, sigma = cfg.entries(), cfg.input_noise
    notes: list[str] = []
    missing: list[str] = []  # real sets of the protocol that are not on disk
    checks = {s.name: precheck(s, tuple(ckpt.image_shape), ctx) for s in sets if not s.synthetic}
    usable = [s for s in sets if not s.synthetic and (checks[s.name] or ("",))[0] != "excluded"]
    _require_some_real_set(protocol, usable, [wanted(s) for s in usable if checks[s.name]], ctx)
    x_in, y_in = ctx.test_set(cfg.n_in or None)
    evidence, digest_in = Evidence(), StreamDigest()
    digest_in.update(x_in, y_in)
    evidence.streams["in"] = ctx.split_stream(digest_in, cfg.n_in or None, sigma)
    batch = cfg.batch_size or ctx.batch_size
    model = ckpt.model
    metrics: dict[str, float] = {}
    per_set: dict[str, dict] = {}
    scores_out: dict[str, dict[str, torch.Tensor]] = {}
    with forward_mode(model, cfg.bn_mode) as mode:
        in_noise = noise_generator(ctx.seed, 0)
        distinct_in = Distinct()
        scores_in = _scores(model, distinct_in.count(add_noise(x, sigma, in_noise) for x in chunks(x_in, batch)),
                            cfg, ctx, len(x_in), batch, f"ood: {ctx.label}")
        for i, s in enumerate(sets):
            n_notes = len(notes)
            images = set_images(s, i, x_in, cfg, ctx, notes, missing)
            if images is not None:
                noise, digest, distinct = noise_generator(ctx.seed, 2 * i + 2), StreamDigest(), Distinct()
                try:
                    out = _scores(model, distinct.count(add_noise(x, sigma, noise) for x in digest.images(
                        images.batches)), cfg, ctx, images.n, batch, f"ood: {s.label}")
                except (OSError, RuntimeError, JembenchError) as exc:  # e.g. an unreadable file deep in a folder
                    notes.append(f"skipped {s.label}: reading or scoring it failed ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})")
                    out = None
                if out is not None and len(next(iter(out.values()))) == 0:
                    notes.append(f"skipped {s.label}: no images")
                    out = None
                if out is not None:
                    scores_out[s.name] = out
                    per_set[s.name] = _set_record(s, images.info, scores_in, out, cfg, metrics,
                                                  (len(distinct_in), len(distinct)))
                    evidence.streams[f"out/{s.name}"] = stream(s.source, digest, sigma=sigma, seed=ctx.seed,
                                                               noise_stream=2 * i + 2)
                    for score in cfg.scores:
                        evidence.add(f"out/{s.name}/{score}", out[score], "float32")
            for note in notes[n_notes:]:
                print(f"jembench: ood: {note}", file=sys.stderr, flush=True)  # visible while running, bars or not
    _require_some_real_set(protocol, usable, missing, ctx)  # e.g. a download that failed for every real set
    figures, histograms = [], {}
    labels = {name: per_set[name]["label"] for name in scores_out}
    for score in cfg.scores:
        path = ctx.figure_path(f"hist_{score}")
        histograms[score] = histogram_data(scores_in[score], {n: o[score] for n, o in scores_out.items()},
                                           cfg.hist_bins)
        score_histograms(histograms[score], path, label=SCORES[score].label, in_name=ctx.label, set_labels=labels,
                         aurocs={n: per_set[n]["scores"][score]["auroc"] for n in scores_out})
        figures.append(path.name)
    details = {"convention": CONVENTION, "n_in": len(x_in), "n_in_distinct": len(distinct_in), "sets": per_set,
               "histograms": histograms,
               "notes": notes,
               "scores": {s: SCORES[s].label for s in cfg.scores},
               "in_distribution_score_mean": {s: _mean(scores_in[s]) for s in cfg.scores},
               **mode, "batch_size": batch, "input_noise": sigma,
               "synthetic_sets": {"uniform": "pixels iid U(-1, 1)", "constant": "all pixels 0 (JEM App. E.2)",
                                  "interp": _interp_text(cfg)}}
    for score in cfg.scores:
        evidence.add(f"in/{score}", scores_in[score], "float32")
    record = make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol,
                         metrics=metrics, details=details, figures=figures, seed=ctx.seed,
                         wall_time_s=time.perf_counter() - start)
    ctx.evidence = evidence
    return record


def _require_some_real_set(protocol, usable: list[OODSet], missing: list[str], ctx: EvalContext) -> None:
    """A protocol that names real OOD sets (folders, registered datasets) of which none is on disk measures
    nothing it promises: a one-line error naming the data root and the fix, not a record of synthetic sets
    only. ``usable``: the real sets not excluded for another reason (the in-distribution set itself, another
    channel count). Some sets missing is a note per set (the record lists them)."""
    if not usable or len(missing) < len(usable):
        return
    root = Path(ctx.data_root or data_root()).expanduser().resolve()
    raise JembenchError(f"ood: none of the real OOD sets of protocol {protocol.name} is on disk "
                        f"({', '.join(missing)}); the data root is {root}: pass --data-root DIR or set "
                        f"{DATA_ROOT_ENV}=DIR to the folder that holds them")


def _set_record(s: OODSet, info: dict, scores_in: dict[str, torch.Tensor], out: dict[str, torch.Tensor],
                cfg: OODProtocol, metrics: dict[str, float], draws: tuple[int, int]) -> dict:
    """``details.sets[name]`` of one evaluated set; its metrics go into ``metrics``. ``draws``: the numbers of
    distinct in-distribution and OOD inputs (``distinct``), which the AUROC's error counts."""
    record = {"label": s.label, "source": s.source, "n": len(next(iter(out.values()))), "distinct": draws[1],
              **info, "score_mean": {score: _mean(out[score]) for score in cfg.scores}, "scores": {}}
    for score in cfg.scores:
        result = detection_metrics(scores_in[score], out[score], draws)
        record["scores"][score] = result
        for metric in metric_keys.heads("ood"):
            metrics[metric_keys.ood(metric, s.name, score)] = result[metric]
    return record


def _table_parts(record: dict) -> tuple[list[str], list[str], dict]:
    details = record.get("details", {})
    sets = list(details.get("sets", {}))
    scores = list(details.get("scores", {}))
    return sets, scores, details


def format_table(record: dict) -> str:
    m = record["metrics"]
    sets, scores, details = _table_parts(record)
    labels = details.get("scores", {})
    columns = [set_label(record, d) for d in sets]
    key = metric_keys.ood
    auroc = metric_keys.SPECS["auroc"]
    others = [metric_keys.SPECS[h] for h in metric_keys.heads("ood") if h != "auroc"]  # AUPR-In, FPR@95%TPR
    dataset = dataset_label(record)
    mode = details.get("bn_mode", "eval")
    lines = [f"OOD detection, in-distribution {dataset} (n = {details.get('n_in', '?')}), model "
             f"{record['model']['name']}, σ = {details.get('input_noise', 0):g}, {mode} mode: {auroc.label} ± s.e. "
             f"{auroc.arrow}"]

    def with_se(d: str, s: str) -> str:
        value = m.get(key("auroc", d, s), math.nan)
        se = standard_error(record, key("auroc", d, s), value)  # from the set sizes, never a stored error
        text = auroc.format(value)
        return text if se is None or math.isnan(se) else f"{text} ± {auroc.format(se)}"

    rows = [[labels.get(s, s)] + [with_se(d, s) for d in sets] for s in scores]
    rows.append(["n"] + [details["sets"][d].get("n", "?") for d in sets])
    lines.append(tabulate(rows, headers=["score"] + columns, tablefmt="github"))
    lines.append("\n" + " / ".join(spec.column for spec in others))
    lines.append(tabulate([[labels.get(s, s)] + [" / ".join(spec.format(m.get(key(spec.head, d, s), math.nan))
                                                            for spec in others) for d in sets]
                           for s in scores], headers=["score"] + columns, tablefmt="github"))
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
        out[f"{metric_keys.SPECS['auroc'].label} {details['scores'].get(s, s)} (mean) "
            f"{metric_keys.SPECS['auroc'].arrow}"] = float(np.mean(values)) if values else math.nan
    return out
