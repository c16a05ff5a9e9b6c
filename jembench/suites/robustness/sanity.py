"""Attack sanity checks: whether a robustness record's numbers look like the attack worked (torch-free, pure).

A robust accuracy is only an upper bound: it says how many inputs *this* attack failed to break. Carlini et al.
(2019), "On Evaluating Adversarial Robustness" (arXiv:1902.06705), list in their evaluation checklist the signs
that an attack failed rather than the model resisted — most often because the gradients it follows are masked
(Athalye et al. 2018: stochastic or iterative defences such as the SGLD refinement here) or because it ran too
few steps. AutoAttack (Croce & Hein 2020, ``autoattack/checks.py``) warns on some of the same signs. Four of them
can be read off a record's numbers, and :func:`caveats` does so:

``exceeds_clean``           robust accuracy at some ε > 0 above the clean accuracy: the attacked classifier
                            answers differently on unperturbed inputs (a stochastic defence with too few EOT
                            draws) or the attack returned worse points than its start;
``not_monotone``            robust accuracy rising with ε (checklist: "increasing the distortion bound should
                            increase the attack's success"): every perturbation allowed at the smaller ε is
                            allowed at the larger one, so the attack failed at the larger ε;
``not_near_zero``           robust accuracy still above :data:`NEAR_ZERO` % at the grid's largest ε when that ε
                            is large (at least :data:`LARGE_EPS`, twice the usual CIFAR-10 budgets of RobustBench,
                            8/255 L∞ and 0.5 L2; checklist: "unbounded attacks should reach 100 % success"): an
                            attack with a large budget should break almost every input of a model that was not
                            adversarially trained;
``gradient_free_stronger``  the gradient-free attacks (boundary, pointwise: their L2 distances) leave more than
                            :data:`GAP` points fewer inputs robust at an L2 ε of the grid than white-box PGD does
                            (checklist: "gradient-free / black-box attacks should not beat white-box ones";
                            AutoAttack's ``check_square_sr``, Square against APGD) — the signature of masked
                            gradients.

Each check takes the record's own numbers only (``metrics`` and the per-input distances in ``details``), so
every reader — ``eval``'s table, the leaderboard, the report, the demo — recomputes it instead of trusting a
stored verdict; the suite also stores the verdict in ``details["sanity"]`` (:func:`summary`) for people reading
the JSON. A caveat is a warning, not a correction: the numbers stay as measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import metric_keys
from ...metric_keys import NORM_LABELS

#: robust accuracy (%) at or below which a large-ε attack counts as having broken (almost) every input: one
#: input in 20 — the demo's n — may resist
NEAR_ZERO = 5.0
#: the smallest "large" ε per norm ([0, 1] pixel units): twice RobustBench's CIFAR-10 budgets (8/255, 0.5)
LARGE_EPS = {"linf": 16 / 255, "l2": 1.0}
#: how much lower (percentage points) the gradient-free attacks' robust accuracy must be to flag PGD
GAP = NEAR_ZERO
#: the checks, in the order they are run and reported
CHECKS = ("exceeds_clean", "not_monotone", "not_near_zero", "gradient_free_stronger")
MARK = "⚠"
REFERENCE = "Carlini et al. 2019, On Evaluating Adversarial Robustness"
_SLACK = 1e-9  # float noise in a mean of 0/1 flags


@dataclass(frozen=True)
class Caveat:
    """One failed check at one refinement depth ``k`` and norm: ``text`` says what was seen and what it suggests."""

    check: str
    norm: str
    k: int
    eps: float | None
    text: str

    @property
    def where(self) -> str:
        """``K=1, L∞`` — the table row and section it concerns."""
        return f"K={self.k}, {NORM_LABELS.get(self.norm, self.norm)}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "norm": self.norm, "k": self.k, "eps": self.eps, "text": self.text}


def _eps(norm: str, eps: float) -> str:
    return f"{NORM_LABELS.get(norm, norm)} ε = {metric_keys.eps_label(eps, norm)}"


def _curves(metrics: dict[str, Any]) -> tuple[dict[int, float], dict[tuple[str, int], list[tuple[float, float]]]]:
    """Clean accuracy per K, and per (norm, K) the robust accuracies sorted by ε, from the metric keys."""
    clean: dict[int, float] = {}
    curves: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for name, value in metrics.items():
        key = metric_keys.parse(name)
        if key is None or key.k is None or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        if key.family == "clean_acc":
            clean[key.k] = float(value)
        elif key.family == "robust_acc" and key.norm is not None and key.eps_value is not None:
            curves.setdefault((key.norm, key.k), []).append((key.eps_value, float(value)))
    return clean, {where: sorted(points) for where, points in curves.items()}


def _gradient_free_robust(details: Any, k: int, eps: float) -> float | None:
    """Robust accuracy (%) at L2 ``eps`` under the gradient-free attacks together: an input counts as broken when
    the boundary or the pointwise attack found an adversarial within ``eps`` (misclassified inputs are at 0; an
    input either attack could not start from counts as robust — the conservative side). None when the record holds
    no usable per-input distances."""
    if not isinstance(details, dict):
        return None
    lists = []
    for attack in ("boundary", "pointwise"):
        entry = details.get(attack, {}).get(f"k{k}") if isinstance(details.get(attack), dict) else None
        values = entry.get("l2") if isinstance(entry, dict) else None
        if isinstance(values, list) and values and all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
            lists.append(values)
    if not lists or len({len(v) for v in lists}) != 1:
        return None
    broken = [any(v[i] is not None and v[i] <= eps for v in lists) for i in range(len(lists[0]))]
    return 100.0 * (1.0 - sum(broken) / len(broken))


def caveats(record: dict[str, Any]) -> list[Caveat]:
    """Every failed sanity check of a robustness record (empty when all pass or the record is of another suite)."""
    if record.get("suite") != "robustness" or not isinstance(record.get("metrics"), dict):
        return []
    clean, curves = _curves(record["metrics"])
    found: list[Caveat] = []
    order = {norm: i for i, norm in enumerate(metric_keys.NORMS)}  # per K: L∞, then L2
    for (norm, k), points in sorted(curves.items(), key=lambda item: (item[0][1], order.get(item[0][0], 9))):
        positive = [(e, v) for e, v in points if e > 0]
        if k in clean:
            above = [(e, v) for e, v in positive if v > clean[k] + _SLACK]
            if above:
                e, v = above[0]
                found.append(Caveat("exceeds_clean", norm, k, e, (
                    f"robust accuracy {v:.1f} % at {_eps(norm, e)} exceeds the clean accuracy {clean[k]:.1f} %: the "
                    f"attacked classifier answers differently on unperturbed inputs (a stochastic defence: more EOT "
                    f"draws) or the attack returned worse points than its start")))
        rises = [(a, b) for a, b in zip(points, points[1:]) if b[1] > a[1] + _SLACK]
        if rises:
            (e1, v1), (e2, v2) = rises[0]
            found.append(Caveat("not_monotone", norm, k, e2, (
                f"robust accuracy rises from {v1:.1f} % at {_eps(norm, e1)} to {v2:.1f} % at "
                f"{metric_keys.eps_label(e2, norm)}: a perturbation allowed at the smaller ε is allowed at the "
                f"larger one, so the attack failed there — too few steps or restarts, or masked gradients")))
        masking = "masked gradients" + (" (through the SGLD refinement?)" if k > 0 else "")
        if positive and positive[-1][0] >= LARGE_EPS.get(norm, math.inf) - _SLACK and positive[-1][1] > NEAR_ZERO:
            e, v = positive[-1]
            found.append(Caveat("not_near_zero", norm, k, e, (
                f"robust accuracy {v:.1f} % at {_eps(norm, e)}, the grid's largest: an attack this large should "
                f"leave at most {NEAR_ZERO:g} % — suspect {masking} or too few attack steps / restarts, and read "
                f"the curve as an upper bound")))
        if norm == "l2":
            gaps = [(v - free, e, v, free) for e, v in positive
                    if (free := _gradient_free_robust(record.get("details"), k, e)) is not None]
            if gaps and max(gaps)[0] > GAP:
                _, e, v, free = max(gaps)
                found.append(Caveat("gradient_free_stronger", norm, k, e, (
                    f"at {_eps(norm, e)} the gradient-free attacks leave {free:.1f} % robust but PGD {v:.1f} %: a "
                    f"black-box attack beating the white-box one signals {masking}")))
    return found


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the suite stores in ``details["sanity"]``: the checks run, their thresholds and each failure."""
    failed = caveats(record)
    return {"checks": list(CHECKS), "passed": not failed, "failed": [c.as_dict() for c in failed],
            "near_zero": NEAR_ZERO, "large_eps": dict(LARGE_EPS), "gap": GAP, "reference": REFERENCE}


def listing(found: list[Caveat]) -> str:
    """The failed checks in one line, for a note: ``K=1, L∞: not_near_zero; K=1, L2: gradient_free_stronger``."""
    return "; ".join(dict.fromkeys(f"{c.where}: {c.check}" for c in found))


def by_row(record: dict[str, Any]) -> dict[tuple[str, int], list[Caveat]]:
    """The caveats of a record grouped by (norm, K): what one leaderboard row of a robustness section carries."""
    out: dict[tuple[str, int], list[Caveat]] = {}
    for c in caveats(record):
        out.setdefault((c.norm, c.k), []).append(c)
    return out
