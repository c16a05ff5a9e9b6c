"""The robustness record from its units: metrics, details, the paper-style table and the headline numbers.

Metric keys (:mod:`jembench.metric_keys`): ``clean_acc/k<K>``, ``robust_acc/<norm>/k<K>/eps=<ε %g>`` (%),
``boundary/median_l2/k<K>``, ``pointwise/median_l0/k<K>`` (median over all inputs: 0 when misclassified clean,
``inf`` when more than half resisted). ``details`` holds per-input minimal ε / distances (``None`` = no
adversarial found; ``search = "grid"`` also each ε's own robust flags, ``robust_at``, from which its
``robust_acc`` comes; ``foolbox2`` also foolbox's own distance, MSE for L2, and the skipped inputs), per-input
"no starting point" flags, queries and budget stops of the decision-based attacks, the Wilson standard error
(z = 1, :func:`jembench.sampling_error.wilson_se`) of every accuracy (``sampling_error``, percentage points; for
people reading the record: ``check`` derives its errors from ``n`` itself), and forward-pass counts (images
through the network: every SGLD step, EOT draw, restart, search step and verification counts one per image).
Labels, ε text and which metrics get an error come from the metric table (:data:`jembench.metric_keys.SPECS`).

Torch-free (NumPy and tabulate): the table of a record is printed without loading torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from tabulate import tabulate

from ... import metric_keys
from ...metric_keys import NORM_LABELS
from ...sampling_error import wilson_se
from .protocol import RobustnessProtocol, Unit


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([math.inf if v is None else float(v) for v in values], dtype=np.float64)


def _median(values: list[float | None]) -> float:
    return float(np.median(_as_array(values))) if values else math.nan


def summarize(cfg: RobustnessProtocol, units: list[Unit], done: dict[str, dict], labels: list[int]
              ) -> tuple[dict[str, float], dict[str, Any]]:
    """Merge unit results (in global input order) into the record's metrics and details; ``labels`` are the
    attacked inputs' labels, in attack order."""
    by_attack: dict[tuple[int, str], list[dict]] = {}
    for unit in sorted(units, key=lambda u: (u.k, u.attack, u.block)):
        by_attack.setdefault((unit.k, unit.attack), []).append(done[unit.key])

    def joined(parts: list[dict], field: str) -> list:
        return [v for part in parts for v in part[field]]

    n = len(labels)
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {"n": n, "labels": list(labels), "units": len(units), "batch_size": cfg.batch_size,
                               "selection": cfg.selection, "clean": {}, "pgd": {}, "boundary": {},
                               "pointwise": {}, "forward_passes": {}, "sampling_error": {}}
    for k in cfg.refine.steps:
        first = by_attack[(k, cfg.attacks()[0])]
        correct = joined(first, "correct")
        metrics[metric_keys.clean_acc(k)] = 100.0 * float(np.mean(correct))
        details["clean"][f"k{k}"] = correct
        for attack in cfg.attacks():
            parts = by_attack[(k, attack)]
            forwards = sum(p["forward_passes"] for p in parts)
            details["forward_passes"][f"{attack.replace('-', '/')}/k{k}"] = forwards
            if attack.startswith("pgd-"):
                norm = attack[4:]
                min_eps = joined(parts, "min_eps")
                grid = list(cfg.pgd.eps_grid(norm))
                if "robust_at" in parts[0]:  # search = grid: each ε's own run (ε = 0: the clean accuracy)
                    positive = [e for e in grid if e > 0]
                    runs = {eps: [v for p in parts for v in p["robust_at"][i]] for i, eps in enumerate(positive)}
                    acc = [100.0 * float(np.mean(runs[e])) if e > 0 else 100.0 * float(np.mean(correct))
                           for e in grid]
                else:
                    dist = _as_array(min_eps)
                    acc = [100.0 * float(np.mean(dist > e)) for e in grid]
                for eps, value in zip(grid, acc):
                    metrics[metric_keys.robust_acc(norm, k, eps)] = value
                entry = {"eps": grid, "robust_acc": acc, "min_eps": min_eps, "search": cfg.pgd.search,
                         "attack_calls": sum(p["attack_calls"] for p in parts),
                         "forward_passes_per_input": forwards / max(1, len(min_eps))}
                for field in ("foolbox_distance", "skipped"):
                    if field in parts[0]:
                        entry[field] = joined(parts, field)
                if "robust_at" in parts[0]:  # per positive ε, per input: the per-input evidence of a grid run
                    entry["robust_at"] = [runs[e] for e in positive]
                details["pgd"].setdefault(norm, {})[f"k{k}"] = entry
            else:
                entry = {"n": n, "l2": joined(parts, "l2"), "no_start": sum(p["no_start"] for p in parts),
                         "no_start_inputs": joined(parts, "no_start_inputs"),
                         "unverified": sum(p["unverified"] for p in parts),
                         "queries": joined(parts, "queries"), "stopped": joined(parts, "stopped"),
                         "forward_passes_per_input": forwards / max(1, n)}
                entry["budget_stopped"] = sum(s is not None for s in entry["stopped"])
                if attack == "pointwise":
                    entry["l0"] = joined(parts, "l0")
                    metrics[metric_keys.pointwise_median_l0(k)] = _median(entry["l0"])
                else:
                    metrics[metric_keys.boundary_median_l2(k)] = _median(entry["l2"])
                details[attack][f"k{k}"] = entry
    details["sampling_error"] = {key: wilson_se(value, n) for key, value in metrics.items()
                                 if getattr(metric_keys.spec(key), "se", None) == "binomial"}
    return metrics, details


def _eps_label(norm: str, eps: float) -> str:
    return f"{NORM_LABELS.get(norm, norm)} {metric_keys.eps_label(eps, norm)}"


def _robust_key(norm: str, eps: float, k: int) -> str:
    return metric_keys.robust_acc(norm, k, eps)


def _parsed(metrics: dict) -> list[metric_keys.Key]:
    return [k for k in map(metric_keys.parse, metrics) if k is not None]


def format_table(record: dict[str, Any]) -> str:
    m = record["metrics"]
    keys = _parsed(m)
    ks = sorted({k.k for k in keys if k.family == "clean_acc" and k.k is not None})
    specs = metric_keys.SPECS
    columns: list[tuple[str, Callable[[int], str]]] = [(specs["clean_acc"].label, metric_keys.clean_acc)]
    for key in keys:
        if key.family == "robust_acc" and key.k == ks[0] and key.norm and key.eps_value is not None:
            columns.append((f"{_eps_label(key.norm, key.eps_value)} %",
                            functools.partial(_robust_key, key.norm, key.eps_value)))
    for build, label in ((metric_keys.boundary_median_l2, specs["boundary"].label),
                         (metric_keys.pointwise_median_l0, specs["pointwise"].label)):
        if build(ks[0]) in m:
            columns.append((label, build))
    rows = [[record["model"]["name"], k] + [f"{m[build(k)]:.4g}" for _, build in columns] for k in ks]
    return tabulate(rows, headers=["Model", "K"] + [c for c, _ in columns], tablefmt="github")


def headline(record: dict[str, Any]) -> dict[str, float]:
    """Clean and robust accuracy at the ε closest to 8/255 (L∞) and 0.5 (L2), for the largest K."""
    m = record["metrics"]
    keys = _parsed(m)
    k = max(key.k for key in keys if key.family == "clean_acc" and key.k is not None)
    out = {f"{metric_keys.SPECS['clean_acc'].label} K={k}": m[metric_keys.clean_acc(k)]}
    for norm, ref in (("linf", 8 / 255), ("l2", 0.5)):
        grid = [key.eps_value for key in keys
                if key.family == "robust_acc" and key.norm == norm and key.k == k and key.eps_value is not None]
        if grid:
            best = min(grid, key=lambda eps: abs(eps - ref))
            out[f"{_eps_label(norm, best)} % K={k}"] = m[metric_keys.robust_acc(norm, k, best)]
    return out
