"""Regression checks for CI: our records against published numbers or a baseline folder of records.

Which way a metric is better and which sampling-error rule applies to it are facts of the metric table
(:data:`jembench.metric_keys.SPECS`); a tolerance file says only how much slack each metric gets, per pattern, and
which metrics to leave out (``direction = "ignore"``). The rule, named per row in the output:

* ``fixed`` — the allowed shortfall is ``max(abs, rel * |reference|)`` in the metric's own unit (ECE, NLL,
  AUPR, FPR95, IS, FID, ...: metrics without a derived sampling error, or any metric whose entry says
  ``rule = "fixed"``);
* ``paired`` — with ``--baseline``, when the baseline is one record and both records carry per-input evidence of
  the same inputs (:mod:`jembench.evidence`): a regression is a drop that is both significant — the one-sided
  p-value of McNemar's exact test (accuracies), DeLong's test (AUROCs) or a paired bootstrap (ECE, MCE, NLL,
  Brier, AUPR, FPR95), Holm-adjusted over every metric decided this way, at most ``--alpha`` — and larger than
  the metric's practical ``margin`` (tolerance file). Paired tests see the drop of a model on the very inputs it was
  checked on, far below the unpaired rules' resolution (:mod:`jembench.comparison`); the other rules below
  decide whenever this one cannot (other inputs, no evidence, a metric without a paired test, several baseline
  records);
* ``binomial`` (accuracies, robust accuracies) and ``hanley-mcneil`` (AUROC) — the allowed shortfall is
  ``max(floor, z * sqrt(se_ours² + se_ref²))``, the two numbers' sampling errors under their protocol
  (:mod:`jembench.sampling_error`: Wilson for proportions, Hanley–McNeil for AUROC). Both errors are derived at the
  sizes of the record being checked — the reference (a published number, or the baseline measured under the same
  protocol hash) was measured on the same n — and never read from a standard error a record stores, so a baseline
  cannot widen the tolerance by claiming a large error or a small n. A record that does not carry its n falls
  back to the fixed rule (printed as ``fixed (no n)``). An AUROC whose one side is a single point (the Constant
  set: one image repeated; a side whose scores all tie) is a proportion of the other side: ``binomial (OOD side
  tied)`` (:func:`jembench.sampling_error.auroc_error`);
* ``seeds`` — with ``--baseline``, when the baseline holds k ≥ 2 records of one model, suite and protocol (k
  retrainings with different seeds, the baseline of a CI job that retrains): the reference is their mean, and the
  allowed shortfall is the one-sided prediction bound of one new run, ``t_{k−1} · s · √(1 + 1/k)`` from their
  standard deviation s (:mod:`jembench.seed_spread`), or the rule above if that is larger (the same inputs; in
  quadrature with it when the record was evaluated on other inputs). The row names both and which one set the
  tolerance (``seeds k=10 t=4.3 > binomial z=3``).

A number worse than its reference by more than that is a regression (exit 1); better or within tolerance
passes (exit 0). Input that cannot be compared — a malformed record (a value outside its metric's valid range
included: :func:`jembench.records.validate_record`) or tolerance file, no reference for any metric — is an error
(exit 2), because a check that silently compares nothing would pass forever. A baseline that cannot judge the
records is exit 4 (:class:`jembench.errors.BaselineUnusable`): measured under another protocol, without a record
for one of theirs, without the per-input evidence a paired check (``--paired``) needs, or stale — trained by the
same deterministic recipe as the record into other weights (:mod:`jembench.recipe`; a regression found anyway is
still exit 1).

Defaults live in ``suites/check-tolerances.toml`` (shipped with the package, :mod:`jembench.resources`);
``--tolerances FILE`` (a path, or a shipped file's name such as ``check-tolerances-tiny``) overrides them per metric
pattern. A pattern must start with a metric of
:mod:`jembench.metric_keys`, so a misspelt one is an error rather than a rule that never matches; a direction or
rule that contradicts the metric table is an error too.
"""

from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tabulate import tabulate

from . import metric_keys
from .errors import BaselineUnusable, JembenchError
from .protocols import read_toml
from .published import cite, is_reference, measured_under, needs_label
from .records import Record, RecordRef
from .resources import tolerance_files, tolerances_file
from .sampling_error import RULES, error_rule, sizes, standard_error
from .seed_spread import SeedSpread, prediction_bound

if TYPE_CHECKING:
    from .comparison import Side
    from .stats import Difference

DIRECTIONS = ("higher", "lower", "ignore")
_EPS = 1e-9  # float noise: 95.5 - 94.5 must not exceed a tolerance of 1.0


@dataclass(frozen=True)
class Rule:
    """How much slack one metric (pattern) gets: its tolerance rule and parameters. ``ignore``: never checked.
    The direction is the metric's own (:attr:`jembench.metric_keys.MetricSpec.direction`)."""

    pattern: str
    ignore: bool = False
    abs: float = 0.0
    rel: float = 0.0
    rule: str = "fixed"
    z: float = 3.0
    floor: float = 0.0
    margin: float = 0.0  # paired rule: the smallest drop that counts as a regression (metric's unit)

    def fixed(self, reference: float) -> float:
        return max(self.abs, self.rel * abs(reference))

    def allowed(self, reference: float, errors: list[float | None] | None = None, label: str | None = None
                ) -> tuple[float, str]:
        """The allowed shortfall and the name of the rule that gave it. ``errors``: the sampling errors of the
        compared numbers (None where a record carries no n); ``label``: how the error rule that applied is named
        (:attr:`jembench.sampling_error.ErrorRule.label`, e.g. an AUROC's ``binomial (OOD side tied)``)."""
        if self.rule == "fixed":
            return self.fixed(reference), "fixed"
        known = [e for e in errors or [] if e is not None and math.isfinite(e)]
        if not errors or len(known) < len(errors):
            return self.fixed(reference), "fixed (no n)"
        return (max(self.floor, self.z * math.sqrt(sum(e * e for e in known))),
                f"{label or self.rule} z={self.z:g}")

    def label(self, record: Record, metric: str) -> str | None:
        """The name of the error rule that applies to ``metric`` of ``record`` (None under the fixed rule)."""
        found = error_rule(record, metric) if self.rule != "fixed" else None
        return None if found is None else found.label

    def errors(self, record: Record, metric: str, values: list[float]) -> list[float | None]:
        """The sampling errors of ``values`` (the record's number, then the reference's) at ``record``'s sizes;
        ``[]`` under the fixed rule."""
        if self.rule == "fixed":
            return []
        return [standard_error(record, metric, v, self.z) for v in values]


def direction(metric: str) -> str:
    """Which way ``metric`` is better (``higher`` / ``lower``; ``none`` for counts and published statements)."""
    spec = metric_keys.spec(metric)
    return spec.direction if spec is not None else "none"


@dataclass
class Comparison:
    """One metric of one record against its reference."""

    record: str
    model: str
    dataset: str
    metric: str
    direction: str
    value: float
    reference: float
    allowed: float
    source: str
    rule: str = "fixed"
    status: str = ""
    paired: Difference | None = None  # the paired test that decides (None: the unpaired rule decides)
    alpha: float = 0.05
    p_holm: float = math.nan  # Holm-adjusted one-sided p of "worse than the baseline" (paired rows)
    decided_by: str = ""  # a baseline of several runs: "seeds" / "sampling" set the tolerance, or "both" added

    @property
    def p_worse(self) -> float:
        """One-sided p-value of H1 "the record is worse than its baseline" (paired rows)."""
        d = self.paired
        return math.nan if d is None else (d.p_less if self.direction == "higher" else d.p_greater)

    def judge(self) -> Comparison:
        if not math.isfinite(self.value):
            self.status = "REGRESSION (not a number)"
            return self
        if self.paired is not None:
            return self._judge_paired()
        shortfall = self.reference - self.value if self.direction == "higher" else self.value - self.reference
        if shortfall > self.allowed + _EPS:
            self.status = "REGRESSION"
        elif -shortfall > self.allowed + _EPS:
            self.status = "better"
        else:
            self.status = "ok"
        return self

    def _judge_paired(self) -> Comparison:
        """A regression is a drop that is both significant (Holm-adjusted one-sided p ≤ α) and larger than the
        practical margin (``allowed``); better: a gain beyond the margin, significant one-sided."""
        d = self.paired
        assert d is not None
        shortfall = self.reference - self.value if self.direction == "higher" else self.value - self.reference
        p_better = d.p_greater if self.direction == "higher" else d.p_less
        if shortfall > self.allowed + _EPS and self.p_holm <= self.alpha:
            self.status = "REGRESSION"
        elif -shortfall > self.allowed + _EPS and p_better <= self.alpha:
            self.status = "better"
        else:
            self.status = "ok"
        return self

    @property
    def regression(self) -> bool:
        return self.status.startswith("REGRESSION")


# ----------------------------------------------------------------------------------------------- tolerances
def _parse_rules(path: Path, base: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    table = read_toml(path, "tolerance file", kind="tolerances")
    unknown = set(table) - {"metrics"}
    if unknown:
        raise JembenchError(f"tolerance file {path}: unknown top-level key(s) {sorted(unknown)}; put entries under "
                            f'[metrics."PATTERN"]')
    rules = {k: dict(v) for k, v in (base or {}).items()}
    metrics = table.get("metrics", {})
    if not isinstance(metrics, dict):
        raise JembenchError(f'tolerance file {path}: "metrics" must be a table of [metrics."PATTERN"] entries')
    for pattern, entry in metrics.items():
        where = f'tolerance file {path}, [metrics."{pattern}"]'
        if not isinstance(entry, dict):
            raise JembenchError(f"{where} must be a table with abs / rel (or rule, z, floor, direction)")
        specs = [metric_keys.SPECS[h] for h in metric_keys.pattern_heads(pattern)]
        if not specs:
            raise JembenchError(f"{where}: {pattern!r} matches no metric key; start it with one of "
                                f"{', '.join(metric_keys.heads())} (e.g. \"auroc/*\")")
        bad = set(entry) - {"direction", "abs", "rel", "rule", "z", "floor", "margin"}
        if bad:
            raise JembenchError(f"{where}: unknown key(s) {sorted(bad)}; allowed: direction, rule, abs, rel, z, "
                                f"floor, margin")
        merged = dict(rules.get(pattern, {}), **entry)
        given = merged.get("direction")
        if given is not None and given not in DIRECTIONS:
            raise JembenchError(f"{where}: direction {given!r} must be one of {', '.join(DIRECTIONS)}")
        wrong = [s for s in specs if given not in (None, "ignore", s.direction)]
        if wrong:
            raise JembenchError(f"{where}: direction {given!r} contradicts the metric table ({wrong[0].head} is "
                                f"{wrong[0].direction}-is-better, jembench/metric_keys.py); drop the direction or "
                                f'use direction = "ignore" to leave the metric unchecked')
        rule = merged.get("rule", "fixed")
        if rule not in RULES:
            raise JembenchError(f"{where}: rule {rule!r} must be one of {', '.join(RULES)}")
        wrong = [s for s in specs if rule not in ("fixed", s.se)]
        if wrong:
            raise JembenchError(f"{where}: rule {rule!r} does not apply to {wrong[0].head} (its sampling error is "
                                f"{wrong[0].se!r}, jembench/metric_keys.py); use rule = \"{wrong[0].se}\" or "
                                f"\"fixed\", or a narrower pattern")
        for key in ("abs", "rel", "z", "floor", "margin"):
            value = merged.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise JembenchError(f"{where}: {key} = {value!r} must be a non-negative number")
        rules[pattern] = merged
    return rules


def resolve_tolerances(name_or_path: str | Path) -> Path:
    """A tolerance file given as a path — used as it is whenever something exists there — or as the name of a
    shipped one (``check-tolerances-tiny`` → ``suites/check-tolerances-tiny.toml``, found through
    :mod:`jembench.resources` as ``--protocol`` names are, so from a wheel and from any folder). Anything else is
    one error line listing the shipped names."""
    if os.path.lexists(name_or_path):  # a FIFO, folder, ... too: the reader's gate names what is wrong with it
        return Path(name_or_path)
    shipped = tolerance_files()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    stem = Path(name_or_path).stem
    hint = f" (the shipped {stem!r} is named without folder or .toml)" if stem in shipped else ""
    raise JembenchError(f"tolerance file {str(name_or_path)!r} not found{hint}; pass a TOML file or the name of a "
                        f"shipped one: {', '.join(shipped) or 'none'}")


def load_rules(override: str | Path | None = None, defaults: str | Path | None = None) -> list[Rule]:
    """The default rules (``defaults``, else the shipped tolerance file), with the entries of ``override`` (same
    format) merged over them per pattern. Each is a path or a shipped file's name (:func:`resolve_tolerances`)."""
    rules = _parse_rules(resolve_tolerances(defaults) if defaults is not None else tolerances_file())
    if override is not None:
        rules = _parse_rules(resolve_tolerances(override), base=rules)
    return [Rule(p, r.get("direction") == "ignore", float(r.get("abs", 0.0)), float(r.get("rel", 0.0)),
                 r.get("rule", "fixed"), float(r.get("z", 3.0)), float(r.get("floor", 0.0)),
                 float(r.get("margin", 0.0)))
            for p, r in rules.items()]


def rule_for(metric: str, rules: list[Rule]) -> Rule | None:
    """The most specific rule for ``metric``: an exact key, else the longest matching glob pattern; None when no
    entry matches, the entry says ``ignore``, or the metric has no direction (counts, published statements)."""
    rule = _most_specific(metric, rules)
    return None if rule is None or rule.ignore or direction(metric) == "none" else rule


def _most_specific(metric: str, rules: list[Rule]) -> Rule | None:
    for rule in rules:
        if rule.pattern == metric:
            return rule
    matching = [r for r in rules if fnmatch.fnmatchcase(metric, r.pattern)]
    return max(matching, key=lambda r: len(r.pattern)) if matching else None


# ----------------------------------------------------------------------------------------------- comparisons
def compare_published(refs: list[RecordRef], published: pd.DataFrame, rules: list[Rule],
                      published_model: str | None = None) -> tuple[list[Comparison], list[str]]:
    """Compare every metric of ``refs`` that has a published counterpart; returns comparisons and skip notes.

    The counterpart of a metric is the published number with the same dataset and metric key, and either the
    same method (``model.method``; and ``model.sgld_steps`` when the record has it) or, with
    ``published_model``, the row whose model label (or printed row) is that name. Rows whose setting differs
    (4,000 labels, inferred setting, ...) and rows no protocol reproduces (provenance ``quoted`` or
    ``unreleased``) are never picked automatically; naming one with ``published_model`` is an error saying so.
    Two different published numbers for one metric is an error asking for ``--published-model``.

    A published number is a valid reference only for a record measured under the protocol it needs (its
    ``protocol`` column: same name, and the record's hash equal to the packaged protocol file's —
    :func:`jembench.published.measured_under`). With ``published_model`` a counterpart under another protocol is
    an error naming both protocols; otherwise such metrics are skipped with a note saying which protocol
    they need.
    """
    comparisons: list[Comparison] = []
    skipped: list[str] = []
    mismatched: dict[tuple[str, str], list[str]] = {}  # (measured under, needed) -> metrics
    if published_model is not None:
        label = published_model.casefold()
        chosen = published[(published["model"].str.casefold() == label) | (published["row"].str.casefold() == label)]
        if chosen.empty:
            choices = ", ".join(sorted(set(published["model"])))
            raise JembenchError(f"--published-model {published_model!r} matches no published row; use one of: "
                                f"{choices}")
    for ref in refs:
        r = ref.record
        method = r["model"].get("method", "")
        steps = r["model"].get("sgld_steps")
        for metric, value in r["metrics"].items():
            rule = rule_for(metric, rules)
            if rule is None:
                continue
            cand = published[(published["dataset"] == r["dataset"]) & (published["metric"] == metric)]
            if published_model is not None:
                cand = cand[cand.index.isin(chosen.index)]
            else:
                plain = pd.Series([is_reference(p, f) for p, f in zip(cand["provenance"], cand["flags"])],
                                  index=cand.index, dtype=bool)
                cand = cand[(cand["method"] == method).astype(bool) & plain]
                if steps is not None:
                    cand = cand[cand["sgld_steps"].isna() | (cand["sgld_steps"] == int(steps))]
            cand = cand[cand["value"].notna()]
            if cand.empty:
                skipped.append(metric)
                continue
            under = cand[[measured_under(r["protocol"], p) for p in cand["protocol"]]]
            if under.empty:
                needed = ", ".join(sorted({needs_label(*x) for x in zip(cand["protocol"], cand["note"],
                                                                         cand["provenance"], cand["produced_by"])}))
                if published_model is not None:
                    names = sorted({p for p in cand["protocol"] if p})
                    fix = (f"re-run `jembench eval --protocol {names[0]}`" if names else
                           "no jembench protocol reproduces it")
                    raise JembenchError(f"{ref.path}: {metric} was measured under protocol {_proto(r)}, but the "
                                        f"published number of {published_model!r} needs protocol {needed}; {fix} "
                                        f"(numbers from different protocols are not comparable)")
                mismatched.setdefault((_proto(r), needed), []).append(metric)
                continue
            cand = under
            if cand["value"].nunique() > 1:
                options = "; ".join(f"{row.model} = {row.value:g} ({cite(row.paper, row.table)})"
                                    for row in cand.itertuples())
                models = sorted(set(cand["model"]))
                raise JembenchError(f"{ref.path}: {metric} of method {method!r} on {r['dataset']} has several "
                                    f"published numbers ({options}); pick one with --published-model "
                                    f"{models[0]!r} (one of: {', '.join(repr(m) for m in models)})")
            first = cand.iloc[0]
            sources = ", ".join(dict.fromkeys(cite(p, t) for p, t in zip(cand["paper"], cand["table"])))
            reference = float(first["value"])
            allowed, used = rule.allowed(reference, rule.errors(r, metric, [float(value), reference]),
                                         rule.label(r, metric))
            comparisons.append(Comparison(str(ref.path), r["model"]["name"], r["dataset"], metric, direction(metric),
                                          float(value), reference, allowed,
                                          f"{first['model']} · {sources} · {first['protocol']}", used).judge())
    notes = sorted(set(skipped))
    for (measured, needed), metrics in mismatched.items():
        notes.append(f"{', '.join(sorted(set(metrics)))} (measured under {measured}; the published numbers need "
                     f"protocol {needed})")
    return comparisons, notes


def compare_baseline(refs: list[RecordRef], baseline: list[RecordRef], rules: list[Rule],
                     allow_missing: bool = False, alpha: float = 0.05, paired: bool = True,
                     require_paired: bool = False) -> tuple[list[Comparison], list[str]]:
    """Compare each record with the baseline records of the same model name, suite, dataset and protocol hash.

    **Paired rule** (``paired``, when the baseline is one record and both carry per-input evidence of the same
    inputs, :mod:`jembench.comparison`): a metric regresses when its drop is significant — the one-sided p of
    McNemar's exact test (accuracies), DeLong's test (AUROCs) or the paired bootstrap (ECE, MCE, NLL, Brier, AUPR,
    FPR@95), Holm-adjusted over every metric decided this way, at most ``alpha`` — *and* larger than the rule's
    ``margin``. **Unpaired rule** otherwise (other inputs, no evidence, metrics without a paired test, a baseline
    of several records): the derived or fixed tolerance as before; every row names the rule that decided it.
    ``require_paired`` (``--paired``): a one-record baseline that cannot pair a metric with a paired test is
    unusable (exit 4) instead of falling back.

    **Seeds**: baseline records of one key and hash are k runs of a retrained model (seeds); the reference is
    their mean and the tolerance takes the prediction bound of one new run from their spread
    (:mod:`jembench.seed_spread`) with the sampling rule's tolerance (:func:`_with_spread`); each row says which
    of the two set it. A baseline with no record for a model / suite / dataset, or measured under another
    protocol, cannot judge the records: :class:`~jembench.errors.BaselineUnusable` (exit 4).
    """
    from .comparison import Side  # scipy / statsmodels: only for baseline checks
    from .stats.multiple import holm

    by_key: dict[tuple[str, str, str], list[RecordRef]] = {}
    for b in baseline:
        by_key.setdefault(_key(b.record), []).append(b)
    comparisons: list[Comparison] = []
    notes: list[str] = []
    for ref in refs:
        r = ref.record
        key = _key(r)
        group = by_key.get(key)
        if not group:
            msg = (f"{ref.path}: no baseline record for model {key[0]!r}, suite {key[1]!r}, dataset {key[2]!r}")
            if allow_missing:
                notes.append(msg)
                continue
            raise BaselineUnusable(msg + "; add one to the baseline folder (regenerate it) or pass --allow-missing")
        same = [b for b in group if b.record["protocol"]["hash"] == r["protocol"]["hash"]]
        if not same:
            theirs = ", ".join(sorted({_proto(b.record) for b in group}))
            raise BaselineUnusable(f"{ref.path} was measured under protocol {_proto(r)} but the baseline "
                                   f"({group[0].path}) under {theirs}; numbers from different protocols are not "
                                   f"comparable: regenerate the baseline with the same protocol")
        if len(same) > 1 and len({b.record["model"].get("sha256") for b in same}) < len(same):
            notes.append(f"{ref.path}: the baseline's {len(same)} records of {key[1]} share checkpoints: their spread "
                         f"is that of re-evaluations, not of retrainings")
        sides = (Side(same[0]), Side(ref)) if len(same) == 1 else None
        if require_paired and sides is None:
            raise BaselineUnusable(f"{ref.path}: --paired needs one baseline record per model and suite, but the "
                                   f"baseline holds {len(same)} of {key[1]} (a baseline of seeds, for a retrained "
                                   f"model: drop --paired)")
        if sides is not None and require_paired:
            _require_evidence(sides[0])
        for metric, value in r["metrics"].items():
            rule = rule_for(metric, rules)
            if rule is None:
                continue
            having = [b for b in same if metric in b.record["metrics"]]
            values = [b.record["metrics"][metric] for b in having]
            if not values:
                notes.append(f"{ref.path}: baseline has no {metric}")
                continue
            reference = float(sum(values) / len(values))
            if not math.isfinite(reference):
                notes.append(f"{ref.path}: baseline {metric} is not a number; skipped")
                continue
            source = Path(same[0].path).name + (f" (mean of {len(same)})" if len(same) > 1 else "")
            own = sizes(r, metric)
            other = sorted({s for b in having if (s := sizes(b.record, metric)) is not None and s != own})
            if rule.rule != "fixed" and other and own is not None:
                notes.append(f"{ref.path}: baseline {metric} was measured on n = "
                             f"{', '.join(_sizes_text(t) for t in other)}, this record on n = "
                             f"{_sizes_text(own)}; both errors are taken at this record's n")
            test = _paired_test(sides, metric) if paired and len(having) == 1 else None
            if test is None and require_paired and len(having) == 1 and _has_paired_test(metric):
                raise BaselineUnusable(f"{ref.path}: --paired, but {metric} cannot be paired with the baseline "
                                       f"{having[0].path} (other inputs, or a record without per-input evidence); "
                                       f"regenerate the baseline with `jembench eval` on the same inputs")
            if test is not None:
                comparisons.append(Comparison(str(ref.path), r["model"]["name"], r["dataset"], metric,
                                              direction(metric), float(value), reference, rule.margin, source,
                                              f"{_paired_name(test.test)} α={alpha:g} Holm", paired=test,
                                              alpha=alpha))
                continue
            same_inputs = all(b.record.get("seed") == r.get("seed") for b in having)
            allowed, used = rule.allowed(reference, _baseline_errors(rule, r, metric, float(value), values,
                                                                     same_inputs), rule.label(r, metric))
            spread = prediction_bound(values, rule.z) if len(values) > 1 else None
            decided_by = ""
            if spread is not None:
                allowed, used, decided_by = _with_spread(spread, allowed, used, same_inputs)
            comparisons.append(Comparison(str(ref.path), r["model"]["name"], r["dataset"], metric, direction(metric),
                                          float(value), reference, allowed, source, used, decided_by=decided_by))
    decided = [c for c in comparisons if c.paired is not None]
    for c, p in zip(decided, holm([c.p_worse for c in decided])):
        c.p_holm = p
    return [c.judge() for c in comparisons], notes


def _paired_name(test: str) -> str:
    return test if test.startswith("paired") else f"paired {test}"


def _paired_test(sides: tuple[Side, Side] | None, metric: str) -> Difference | None:
    """The paired test of ``metric`` between (baseline, record), or None when the paired rule cannot decide."""
    from .comparison import difference

    if sides is None or "evidence" not in sides[0].record or "evidence" not in sides[1].record:
        return None
    try:
        sides[0].arrays()  # the baseline's evidence: missing or altered makes the baseline unusable (exit 4)
    except JembenchError as exc:
        raise BaselineUnusable(f"baseline {exc}") from None
    result, _ = difference(*sides, metric)
    return result if result is not None and result.paired and math.isfinite(result.p) else None


def _baseline_errors(rule: Rule, record: Record, metric: str, value: float, baseline: list[float],
                     same_inputs: bool = False) -> list[float | None]:
    """[se of the record's value, se of the mean of the baseline values], every one at the record's sizes: the
    baseline was measured under the same protocol hash, hence on the same n, and a baseline's own sizes or stored
    errors are never what widens the tolerance. k runs evaluated on other inputs each are k independent errors
    (sqrt(sum se²)/k); k runs evaluated on the same inputs (``same_inputs``: the same evaluation seed) share their
    inputs' sampling error, which averaging does not shrink: the error of their mean is that of one evaluation."""
    if rule.rule == "fixed":
        return []
    if same_inputs:
        return rule.errors(record, metric, [value, sum(baseline) / len(baseline)])
    ours, *theirs = rule.errors(record, metric, [value, *baseline])
    if ours is None or any(e is None for e in theirs):
        return [ours, None]
    return [ours, math.sqrt(sum(e * e for e in theirs if e is not None)) / len(theirs)]


def _with_spread(spread: SeedSpread, allowed: float, used: str, same_inputs: bool) -> tuple[float, str, str]:
    """The tolerance of a record against k baseline runs (:mod:`jembench.seed_spread`): the prediction bound of
    one new run from the between-seed spread, with the sampling rule's tolerance ``allowed``. The same inputs:
    the larger of the two (the seeds' spread already holds the evaluation's noise on those inputs; the sampling
    rule is a floor where k values estimate the spread as too small, e.g. 0 when every seed scored the same).
    Other inputs: the two variances add (quadrature). Returns (allowed, rule text, which set it)."""
    if not same_inputs:
        return (math.hypot(spread.half_width, allowed), f"{spread.label()} ⊕ {used} (other inputs)", "both")
    if spread.half_width > allowed:
        return spread.half_width, f"{spread.label()} > {used}", "seeds"
    return allowed, f"{used} ≥ {spread.label()}", "sampling"


def _has_paired_test(metric: str) -> bool:
    """Whether a paired test exists for ``metric`` (:func:`jembench.comparison.difference`)."""
    spec, key = metric_keys.spec(metric), metric_keys.parse(metric)
    return (spec is not None and (spec.se == "binomial" or metric in ("nll", "brier", "ece", "mce")
                                  or (key is not None and key.family == "ood")))


def _require_evidence(side: Side) -> None:
    """``--paired``: the baseline record must carry readable per-input evidence (exit 4 otherwise)."""
    if "evidence" not in side.record:
        raise BaselineUnusable(f"{side.ref.path} has no per-input evidence, which --paired needs; regenerate the "
                               f"baseline with this jembench's `jembench eval` (it writes .evidence.npz beside each "
                               f"record)")
    try:
        side.arrays()
    except JembenchError as exc:
        raise BaselineUnusable(f"baseline {exc}") from None


def _sizes_text(found: tuple[int, ...] | None) -> str:
    return " + ".join(map(str, found or ()))


def _key(record: Record) -> tuple[str, str, str]:
    return (record["model"]["name"], record["suite"], record["dataset"])


def _proto(record: Record) -> str:
    p = record["protocol"]
    return f"{p.get('name', record['suite'])}@{str(p['hash'])[:8]}"


# ----------------------------------------------------------------------------------------------- output
def format_table(comparisons: list[Comparison], show_all: bool = False) -> str:
    """The readable diff: one line per regression (``show_all``: per compared metric), with the rule that set
    its tolerance; narrow columns (the arrow after the metric says which way is better; a baseline source is the
    file name, the folder is in the summary line). Empty when nothing is to be shown."""
    rows = []
    shown = [c for c in comparisons if show_all or c.regression]
    with_p = any(c.paired is not None for c in shown)  # the paired rule's p column, only when it decided a row
    for c in shown:
        delta = c.value - c.reference
        allowed = f"margin {c.allowed:.3g}" if c.paired is not None else f"±{c.allowed:.3g}"
        p = ["–" if c.paired is None else f"{c.p_holm:.2g}"] if with_p else []
        rows.append([Path(c.record).name, f"{c.metric} {'↑' if c.direction == 'higher' else '↓'}",
                     f"{c.value:.4g}", f"{c.reference:.4g}", f"{delta:+.4g}", allowed, c.rule, c.status, *p,
                     c.source])
    if not rows:
        return ""
    headers = ["Record", "Metric", "Ours", "Ref", "Δ", "Allowed", "Rule", "Status", *(["p worse"] * with_p),
               "Reference"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def exit_code(comparisons: list[Comparison]) -> int:
    """1 if any comparison is a regression, else 0."""
    return 1 if any(c.regression for c in comparisons) else 0
