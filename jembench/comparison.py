"""Compare two evaluations metric by metric, with the right statistical test (``jembench compare A B``).

For every metric the two records share: A, B, the difference B − A with its 95 % confidence interval, a
two-sided p-value, and the name of the test that gave them (:mod:`jembench.stats`):

| metric                             | same inputs (paired)               | other inputs (unpaired)                    |
| ---------------------------------- | ---------------------------------- | ------------------------------------------ |
| accuracy, clean / robust accuracy  | McNemar exact + Newcombe paired CI | two-proportion score test                  |
| AUROC                              | DeLong (correlated AUROCs)         | DeLong variances, or Hanley–McNeil (sizes) |
| ECE, MCE, NLL, Brier, AUPR, FPR@95 | paired bootstrap over the inputs   | independent bootstrap                      |

"Same inputs" is read from the records' per-input evidence (:mod:`jembench.evidence`): the two streams behind a
metric have the same ``inputs_sha256`` (the same clean images and labels, in the same order). The input noise
may differ (another ``--seed`` under σ > 0): the images still pair up, and the row says so. Unpaired tests are
marked ``(unpaired)``; a metric with no test for its kind (IS/FID/KID, attack distances) shows the difference
only. Holm-adjusted p-values (over every tested metric of the comparison) guard against the many-metrics
false alarm. The per-input numbers are checked to reproduce each record's own metric before any test runs.

Records are matched by suite and dataset (files: the two given; folders: same suite, dataset and protocol hash,
else same suite and dataset with a note that the protocols differ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import evidence, metric_keys
from .errors import JembenchError
from .records import RecordRef, load_records
from .sampling_error import auroc_error, auroc_sizes, binomial_n
from .stats import CONFIDENCE, Difference, bootstrap, delong, proportions
from .stats.multiple import holm

_TOLERANCE = 1e-5  # per-input evidence must reproduce the record's metric to this (relative) precision


@dataclass
class Side:
    """One record and, loaded on first use, its per-input evidence."""

    ref: RecordRef
    _arrays: dict[str, np.ndarray] | None = None
    _loaded: bool = False

    @property
    def record(self) -> dict[str, Any]:
        return self.ref.record

    def arrays(self) -> dict[str, np.ndarray] | None:
        if not self._loaded:
            self._arrays, self._loaded = evidence.load(self.record, self.ref.path), True
        return self._arrays

    def array(self, name: str) -> np.ndarray:
        """One per-input array (the pairing checks found it present)."""
        arrays = self.arrays()
        if arrays is None or name not in arrays:
            raise JembenchError(f"{self.ref.path}: its per-input evidence has no {name!r}; regenerate it with "
                                f"`jembench eval`")
        return arrays[name]

    def stream(self, name: str) -> dict[str, Any] | None:
        streams = (self.record.get("evidence") or {}).get("streams") or {}
        found = streams.get(name)
        return found if isinstance(found, dict) else None


@dataclass
class Row:
    """One metric of one pair of records."""

    suite: str
    metric: str
    a: float
    b: float
    result: Difference | None
    pairing: str  # identical inputs | same images, other noise | other inputs | no per-input evidence | ...
    p_holm: float = math.nan
    record_a: str = ""
    record_b: str = ""

    @property
    def diff(self) -> float:
        return self.b - self.a


@dataclass
class CompareResult:
    """What :func:`compare` returns: one :class:`Row` per compared metric, notes on unmatched records, and the
    two sides' model names."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    names: tuple[str, str] = ("A", "B")


# ------------------------------------------------------------------------------------------------ pairing
def _pairing(a: Side, b: Side, streams: Sequence[str], arrays: Sequence[str]) -> tuple[str, bool] | None:
    """How the per-input arrays of two records relate for a metric resting on ``streams``: None when either
    record lacks them; else (description, paired)."""
    arrays_a, arrays_b = a.arrays(), b.arrays()
    if arrays_a is None or arrays_b is None or any(n not in arrays_a or n not in arrays_b for n in arrays):
        return None
    sa, sb = [a.stream(s) for s in streams], [b.stream(s) for s in streams]
    if not all(evidence.same_inputs(x, y) for x, y in zip(sa, sb)):
        return "other inputs", False
    if all(x is not None and y is not None and evidence.same_noise(x, y) for x, y in zip(sa, sb)):
        return "identical inputs", True
    return "same images, other noise", True


def _check_reproduces(side: Side, metric: str, value: float, recomputed: float, scale: float) -> None:
    if math.isfinite(value) and abs(recomputed * scale - value) > _TOLERANCE * max(1.0, abs(value)):
        raise JembenchError(f"{side.ref.path}: its per-input evidence gives {metric} = {recomputed * scale:.6g}, "
                            f"but the record says {value:.6g}; the evidence file belongs to another evaluation — "
                            f"regenerate the record with `jembench eval`")


def _correct_name(metric: str) -> tuple[str, str] | None:
    """(evidence array, stream) of the per-input correctness behind an accuracy-like metric."""
    key = metric_keys.parse(metric)
    if metric == "accuracy":
        return "test/correct", "test"
    if key is not None and key.family in ("clean_acc", "robust_acc"):
        return metric, "attacked"
    return None


# ------------------------------------------------------------------------------------------------ tests
def difference(a: Side, b: Side, metric: str, *, resamples: int = bootstrap.RESAMPLES, seed: int = 0,
               confidence: float = CONFIDENCE) -> tuple[Difference | None, str]:
    """The test of ``metric`` between two records (B − A, in the records' units) and how their inputs pair up;
    (None, why) when no test applies to this metric or the records lack what it needs."""
    va, vb = float(a.record["metrics"][metric]), float(b.record["metrics"][metric])
    key, spec = metric_keys.parse(metric), metric_keys.spec(metric)
    scale = 100.0 if spec is not None and spec.percent else 1.0  # the record's unit: % or a fraction
    boot: dict[str, Any] = {"n_resamples": resamples, "seed": seed, "confidence": confidence}
    correct = _correct_name(metric)
    if correct is not None:
        name, stream_name = correct
        pairing = _pairing(a, b, [stream_name], [name])
        if pairing is not None:
            ca, cb = a.array(name), b.array(name)
            if pairing[1]:
                result = proportions.mcnemar(ca, cb, confidence)
            else:
                result = proportions.two_proportions(int(ca.sum()), len(ca), int(cb.sum()), len(cb), confidence)
            _check_reproduces(a, metric, va, result.a, scale)
            _check_reproduces(b, metric, vb, result.b, scale)
            return result.scaled(scale), pairing[0]
        na, nb = binomial_n(a.record, metric), binomial_n(b.record, metric)
        if na is None or nb is None:
            return None, "no per-input evidence, no n"
        result = proportions.two_proportions(round(va / scale * na), na, round(vb / scale * nb), nb, confidence)
        return result.scaled(scale), "no per-input evidence"
    if metric in ("nll", "brier", "ece", "mce"):
        names = [f"test/{metric}"] if metric in ("nll", "brier") else ["test/confidence", "test/correct",
                                                                        "test/ece_bin"]
        pairing = _pairing(a, b, ["test"], names)
        if pairing is None:
            return None, "no per-input evidence"
        fa, fb = _scalar_metric(a, metric), _scalar_metric(b, metric)
        sizes_a, sizes_b = [len(a.array(names[0]))], [len(b.array(names[0]))]
        result = (bootstrap.paired(fa, fb, sizes_a, **boot) if pairing[1]
                  else bootstrap.unpaired(fa, sizes_a, fb, sizes_b, **boot))
        _check_reproduces(a, metric, va, result.a, scale)
        _check_reproduces(b, metric, vb, result.b, scale)
        return result.scaled(scale), pairing[0]
    if key is not None and key.family == "ood":
        return _ood(a, b, key, va, vb, boot)
    if key is not None and key.family == "fidelity":
        return None, "statistic of two sample sets: no per-input test (the record keeps is_std / kid_std)"
    return None, "no per-input test for this metric"


def _scalar_metric(side: Side, metric: str) -> bootstrap.Metric:
    if metric in ("nll", "brier"):
        return bootstrap.mean(side.array(f"test/{metric}"))
    n_bins = int((side.record.get("details") or {}).get("n_bins", 0))
    if n_bins < 1:
        raise JembenchError(f"{side.ref.path}: its details have no n_bins; regenerate it with `jembench eval`")
    return bootstrap.ece(side.array("test/confidence"), side.array("test/correct"), side.array("test/ece_bin"),
                         n_bins, maximum=metric == "mce")


def _ood(a: Side, b: Side, key: metric_keys.Key, va: float, vb: float, boot: dict[str, Any]
         ) -> tuple[Difference | None, str]:
    names = [f"in/{key.score}", f"out/{key.ood_set}/{key.score}"]
    pairing = _pairing(a, b, ["in", f"out/{key.ood_set}"], names)
    metric = f"{key.metric}/{key.ood_set}/{key.score}"  # the parsed key, as written
    if pairing is None:
        if key.metric != "auroc":
            return None, "no per-input evidence"
        rule_a, rule_b = auroc_error(a.record, metric), auroc_error(b.record, metric)
        if rule_a is None or rule_b is None:
            return None, "no per-input evidence, no set sizes"
        if rule_a.name == rule_b.name == "binomial":  # one side a single point: a proportion of the other side
            (na,), (nb,) = rule_a.sizes, rule_b.sizes
            return (proportions.two_proportions(round(va * na), na, round(vb * nb), nb, boot["confidence"]),
                    "no per-input evidence")
        sizes_a, sizes_b = auroc_sizes(a.record, metric), auroc_sizes(b.record, metric)
        if sizes_a is None or sizes_b is None:  # one record's side is a point, the other's is not
            return None, "no per-input evidence, one AUROC a proportion, the other of two samples"
        return delong.hanley_mcneil(va, sizes_a, vb, sizes_b, boot["confidence"]), "no per-input evidence"
    (in_a, out_a), (in_b, out_b) = ([side.array(n).astype(np.float64) for n in names] for side in (a, b))
    if key.metric == "auroc":
        test = delong.paired if pairing[1] else delong.unpaired
        result = test(in_a, out_a, in_b, out_b, boot["confidence"])
    else:
        build = bootstrap.average_precision if key.metric == "aupr" else bootstrap.fpr_at_tpr
        fa, fb = build(in_a, out_a), build(in_b, out_b)
        if pairing[1]:
            result = bootstrap.paired(fa, fb, [len(in_a), len(out_a)], **boot)
        else:
            result = bootstrap.unpaired(fa, [len(in_a), len(out_a)], fb, [len(in_b), len(out_b)], **boot)
    _check_reproduces(a, metric, va, result.a, 1.0)
    _check_reproduces(b, metric, vb, result.b, 1.0)
    return result, pairing[0]


# ------------------------------------------------------------------------------------------------ records
def compare_pair(a: RecordRef, b: RecordRef, *, resamples: int = bootstrap.RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE, metrics: Sequence[str] | None = None) -> list[Row]:
    """Every metric (or those in ``metrics``) the two records share, B − A."""
    if a.record["suite"] != b.record["suite"]:
        raise JembenchError(f"{a.path} is a {a.record['suite']} record and {b.path} a {b.record['suite']} record; "
                            f"compare records of the same suite")
    sa, sb = Side(a), Side(b)
    rows = []
    shared = [m for m in a.record["metrics"] if m in b.record["metrics"] and m != "n"]
    for metric in shared if metrics is None else [m for m in shared if m in metrics]:
        result, pairing = difference(sa, sb, metric, resamples=resamples, seed=seed, confidence=confidence)
        rows.append(Row(a.record["suite"], metric, float(a.record["metrics"][metric]),
                        float(b.record["metrics"][metric]), result, pairing, record_a=str(a.path),
                        record_b=str(b.path)))
    return rows


def _pairs(a: list[RecordRef], b: list[RecordRef], notes: list[str]) -> list[tuple[RecordRef, RecordRef]]:
    if len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    pairs = []
    for ra in a:
        key = (ra.record["suite"], ra.record["dataset"])
        same = [rb for rb in b if (rb.record["suite"], rb.record["dataset"]) == key]
        exact = [rb for rb in same if rb.record["protocol"]["hash"] == ra.record["protocol"]["hash"]]
        chosen = exact or same
        if len(chosen) != 1:
            what = "no" if not chosen else f"{len(chosen)}"
            notes.append(f"{ra.path}: {what} {key[0]} record(s) on {key[1]} on the other side; pass the two files "
                         f"to compare them")
            continue
        if not exact:
            notes.append(f"{ra.path} and {chosen[0].path} were measured under different protocols "
                         f"({_proto(ra)} vs {_proto(chosen[0])})")
        pairs.append((ra, chosen[0]))
    return pairs


def _proto(ref: RecordRef) -> str:
    p = ref.record["protocol"]
    return f"{p.get('name', ref.record['suite'])}@{str(p['hash'])[:8]}"


def compare(a: str | Path | Sequence[str | Path], b: str | Path | Sequence[str | Path], *,
            resamples: int = bootstrap.RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> CompareResult:
    """Compare the records ``a`` with the records ``b`` (files or folders; folders are matched by suite and
    dataset) metric by metric; the p-values of every tested metric are Holm-adjusted together.

    >>> result = jembench.compare("runs/old/eval/ood.json", "runs/new/eval/ood.json")
    >>> for row in result.rows: print(row.metric, row.diff, row.result.ci if row.result else None)
    """
    if not 0 < confidence < 1:
        raise JembenchError(f"confidence {confidence} must be between 0 and 1 (e.g. 0.95)")
    if resamples < 100:
        raise JembenchError(f"resamples {resamples} is too few for a bootstrap interval; use at least 100")
    refs_a, refs_b = (load_records([p] if isinstance(p, (str, Path)) else list(p)) for p in (a, b))
    for refs, what in ((refs_a, a), (refs_b, b)):
        if not refs:
            raise JembenchError(f"no records found in {what}; pass record files or folders written by `jembench eval`")
    out = CompareResult(names=(_name(refs_a), _name(refs_b)))
    for ra, rb in _pairs(refs_a, refs_b, out.notes):
        out.rows += compare_pair(ra, rb, resamples=resamples, seed=seed, confidence=confidence)
    if not out.rows:
        raise JembenchError(f"the records of {a} and {b} share no metric to compare "
                            f"({'; '.join(out.notes) or 'nothing matched'})")
    tested = [(r, r.result.p) for r in out.rows if r.result is not None and math.isfinite(r.result.p)]
    for (row, _), p in zip(tested, holm([p for _, p in tested])):
        row.p_holm = p
    return out


def _name(refs: list[RecordRef]) -> str:
    names = sorted({str(r.record["model"]["name"]) for r in refs})
    return names[0] if len(names) == 1 else ", ".join(names[:3]) + ("…" if len(names) > 3 else "")


def as_dicts(result: CompareResult) -> list[dict[str, Any]]:
    """The rows as plain dictionaries (the JSON / CSV output)."""
    out = []
    for r in result.rows:
        d = r.result
        out.append({"suite": r.suite, "metric": r.metric, "a": r.a, "b": r.b, "diff": r.diff,
                    "ci_low": d.ci[0] if d else None, "ci_high": d.ci[1] if d else None,
                    "p": d.p if d else None, "p_holm": None if math.isnan(r.p_holm) else r.p_holm,
                    "test": d.test if d else None, "paired": d.paired if d else None, "pairing": r.pairing,
                    "n": d.n if d else None, "record_a": r.record_a, "record_b": r.record_b})
    return out
