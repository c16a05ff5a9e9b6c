"""The robustness record from its units: metrics, details, the paper-style table and the headline numbers.

Metric keys (:mod:`jembench.metric_keys`): ``clean_acc/k<K>``, ``robust_acc/<norm>/k<K>/eps=<ε %g>`` (%),
``boundary/attacked_median_l2/k<K>``, ``pointwise/attacked_median_l0/k<K>``: the median distance over the
*attacked* inputs only — correctly classified and with a starting point (:func:`attacked_median`); an attacked
input whose adversarial never verified counts as ``inf`` (it resisted), an input that was never attacked does not
count at all; NaN ("n/a") when fewer than :data:`MIN_ATTACKED` inputs were attacked. Each entry of
``details["boundary"|"pointwise"]`` says how many were (``attacked``) and gives the median's distribution-free
95 % interval (``median_ci95``). ``details`` holds per-input minimal ε / distances (``None`` = no adversarial
found; ``search = "grid"`` also each ε's own robust flags, ``robust_at``, from which its ``robust_acc`` comes;
``foolbox2`` also foolbox's own distance, MSE for L2, and the skipped inputs), per-input "no starting point"
flags, queries and budget stops of the decision-based attacks, the Wilson standard error (z = 1,
:func:`jembench.sampling_error.wilson_se`) of every accuracy (``sampling_error``, percentage points; for people
reading the record: ``check`` derives its errors from ``n`` itself), the attack sanity checks
(``sanity``, :mod:`.sanity`) and forward-pass counts (images through the network: every SGLD step, EOT draw,
restart, search step and verification counts one per image). Labels, ε text and which metrics get an error come
from the metric table (:data:`jembench.metric_keys.SPECS`).

Records written before the medians counted attacked inputs only are brought up to date from their own details by
:func:`resummarize` (``jembench resummarize``; nothing is re-run).

Torch-free (NumPy, SciPy and tabulate): the table of a record is printed without loading torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from tabulate import tabulate

from ... import metric_keys
from ...errors import JembenchError
from ...metric_keys import NORM_LABELS
from ...sampling_error import standard_error, wilson_se
from . import sanity
from .protocol import RobustnessProtocol, Unit

#: the fewest attacked inputs a median distance is reported over: with k <= 5 values no pair of order statistics
#: is a distribution-free 95 % confidence interval of a median (2 · 0.5^k > 0.05; ``scipy.stats.quantile_test``
#: gives none), so a median of so few is shown as "n/a (k attacked)"
MIN_ATTACKED = 6
#: the decision-based attacks and the per-input distance each one's median is taken over
MEDIANS = {"boundary": ("l2", metric_keys.boundary_median_l2), "pointwise": ("l0", metric_keys.pointwise_median_l0)}


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([math.inf if v is None else float(v) for v in values], dtype=np.float64)


def attacked_median(distances: list[float | None], correct: list[bool], no_start: list[bool]
                    ) -> tuple[float, int, list[float | None] | None]:
    """(median, number attacked, 95 % interval) of ``distances`` over the attacked inputs: those classified
    correctly (``correct``) that had a starting point (not ``no_start``). A distance of None there means the attack
    found no verified adversarial (the input resisted: +inf); inputs that were not attacked take no part (their
    None says nothing about the model). Fewer than :data:`MIN_ATTACKED` attacked: (NaN, k, None). The interval is
    the distribution-free one of ``scipy.stats.quantile_test`` (order statistics; None for an infinite end)."""
    attacked = [d for d, c, s in zip(distances, correct, no_start) if c and not s]
    if len(attacked) < MIN_ATTACKED:
        return math.nan, len(attacked), None
    from scipy.stats import quantile_test

    values = _as_array(attacked)
    ci = quantile_test(values, q=0.0, p=0.5).confidence_interval(0.95)
    bounds = [None if not math.isfinite(b) else float(b) for b in (ci.low, ci.high)]
    return float(np.median(values)), len(attacked), bounds


def _attacked_entry(entry: dict[str, Any], attack: str, correct: list[bool]) -> float:
    """Add ``attacked`` and ``median_ci95`` to a decision-based attack's details entry; return its median."""
    field = MEDIANS[attack][0]
    no_start = entry.get("no_start_inputs") or [False] * len(correct)
    median, entry["attacked"], entry["median_ci95"] = attacked_median(entry[field], correct, no_start)
    return median


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
                metrics[MEDIANS[attack][1](k)] = _attacked_entry(entry, attack, correct)
                details[attack][f"k{k}"] = entry
    details["sampling_error"] = _sampling_errors(metrics, n)
    details["sanity"] = sanity.summary({"suite": "robustness", "metrics": metrics, "details": details})
    return metrics, details


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one (details are read from files: shapes are not promised)."""
    return value if isinstance(value, dict) else {}


def _per_input(correct: Any, distances: Any, no_start: Any) -> bool:
    """Whether a details entry's per-input lists line up: flags, distances (None or a number), flags."""
    lists = (correct, distances, no_start)
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) != 1:
        return False
    return all(isinstance(c, bool) and isinstance(s, bool) and (d is None or (isinstance(d, (int, float))
               and not isinstance(d, bool))) for c, d, s in zip(*lists))


def _sampling_errors(metrics: dict[str, float], n: int) -> dict[str, float]:
    return {key: wilson_se(value, n) for key, value in metrics.items()
            if getattr(metric_keys.spec(key), "se", None) == "binomial"}


#: the median keys records held before :func:`resummarize` (over every input: 0 when misclassified, inf when
#: never attacked) — dropped, never compared with the attacked-input medians
_OLD_MEDIANS = ("boundary/median_l2/", "pointwise/median_l0/")


def resummarize(record: dict[str, Any]) -> bool:
    """Bring a robustness record's derived numbers up to date from its own per-input details, in place: the
    attacked-input medians (replacing the old all-input ones), the sampling errors and the sanity checks. Nothing
    is re-run and no measured number changes. Returns whether anything changed."""
    if record.get("suite") != "robustness":
        return False
    before = repr((record.get("metrics"), record.get("details")))
    details = _mapping(record.get("details"))
    medians: dict[str, tuple[str, float]] = {}  # old key -> (new key, value)
    for attack, (field, build) in MEDIANS.items():
        for name, entry in _mapping(details.get(attack)).items():
            correct = _mapping(details.get("clean")).get(name)
            if not (isinstance(entry, dict) and field in entry and name[:1] == "k" and name[1:].isdigit()):
                continue
            no_start = entry.get("no_start_inputs", [False] * len(correct) if isinstance(correct, list) else None)
            if not isinstance(correct, list) or not _per_input(correct, entry[field], no_start):
                raise JembenchError(f"details.{attack}.{name[:20]} of this record does not hold one {field} "
                                    f"distance, clean flag and start flag per input; regenerate it with "
                                    f"`jembench eval`")
            k = int(name[1:])
            medians[f"{attack}/median_{field}/k{k}"] = (build(k), _attacked_entry(entry, attack, correct))
    renamed = {new: value for new, value in medians.values()}
    metrics: dict[str, float] = {}
    for key, value in record["metrics"].items():  # each median where its old key stood
        if key in medians:
            metrics[medians[key][0]] = medians[key][1]
        elif not key.startswith(_OLD_MEDIANS):
            metrics[key] = renamed.get(key, value)
    metrics.update(renamed)
    record["metrics"] = metrics
    n = details.get("n")
    if isinstance(n, int) and n > 0:
        details["sampling_error"] = _sampling_errors(metrics, n)
    details["sanity"] = sanity.summary(record)
    return repr((record.get("metrics"), record.get("details"))) != before


def _eps_label(norm: str, eps: float) -> str:
    return f"{NORM_LABELS.get(norm, norm)} {metric_keys.eps_label(eps, norm)}"


def _robust_key(norm: str, eps: float, k: int) -> str:
    return metric_keys.robust_acc(norm, k, eps)


def _parsed(metrics: dict) -> list[metric_keys.Key]:
    return [k for k in map(metric_keys.parse, metrics) if k is not None]


def _accuracy_cell(record: dict[str, Any], key: str) -> str:
    """``95.0 ± 4.9``: an accuracy with its Wilson standard error at the record's n (derived, never read)."""
    value = record["metrics"][key]
    se = standard_error(record, key, value)
    text = metric_keys.SPECS["clean_acc"].format(value)
    return text if se is None or math.isnan(se) else f"{text} ± {metric_keys.SPECS['clean_acc'].format(se)}"


def _median_cell(record: dict[str, Any], attack: str, k: int) -> str:
    """``1.264 (19 attacked)``, ``inf (19 attacked)`` (most resisted) or ``n/a (3 attacked)`` (too few)."""
    value = record["metrics"][MEDIANS[attack][1](k)]
    entry = _mapping(_mapping(record.get("details")).get(attack)).get(f"k{k}")
    attacked = entry.get("attacked") if isinstance(entry, dict) else None
    text = "n/a" if math.isnan(value) else f"{value:.4g}"
    return text if not isinstance(attacked, int) else f"{text} ({attacked} attacked)"


def format_table(record: dict[str, Any]) -> str:
    """The paper-style table of one record: per K, the clean and robust accuracies ± their standard errors over
    the n attacked inputs, the decision-based attacks' medians over the inputs they attacked, and a mark (⚠) on
    every row whose numbers fail an attack sanity check, each failure spelled out under the table."""
    m = record["metrics"]
    keys = _parsed(m)
    ks = sorted({k.k for k in keys if k.family == "clean_acc" and k.k is not None})
    specs = metric_keys.SPECS
    columns: list[tuple[str, Callable[[int], str]]] = [(specs["clean_acc"].label, metric_keys.clean_acc)]
    for key in keys:
        if key.family == "robust_acc" and key.k == ks[0] and key.norm and key.eps_value is not None:
            columns.append((f"{_eps_label(key.norm, key.eps_value)} %",
                            functools.partial(_robust_key, key.norm, key.eps_value)))
    medians = [(specs[attack].label, attack) for attack, (_, build) in MEDIANS.items() if build(ks[0]) in m]
    found = sanity.by_row(record)
    flagged = {k for _, k in found}
    n = (record.get("details") or {}).get("n", "-")
    rows = [[record["model"]["name"] + (f" {sanity.MARK}" if k in flagged else ""), k, n]
            + [_accuracy_cell(record, build(k)) for _, build in columns]
            + [_median_cell(record, attack, k) for _, attack in medians] for k in ks]
    table = tabulate(rows, headers=["Model", "K", "n"] + [c for c, _ in columns] + [c for c, _ in medians],
                     tablefmt="github")
    notes = [f"accuracies: % ± standard error (Wilson, z = 1) over the n inputs; medians: over the inputs each "
             f"attack could attack (correctly classified, with a starting point), n/a below {MIN_ATTACKED}"]
    notes += [f"{sanity.MARK} {c.where}: {c.text}" for cs in found.values() for c in cs]
    if found:
        notes.insert(1, f"{sanity.MARK} attack sanity checks failed ({sanity.REFERENCE}): these robust accuracies "
                        f"are upper bounds the attack may not have reached")
    return "\n".join([table, *notes])


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
