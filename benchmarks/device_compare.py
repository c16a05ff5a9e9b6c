"""How far a suite's record on a GPU may be from the same run's record on the CPU (``make gpu-smoke``, and the
tests parametrized over devices).

Same checkpoint, same protocol, same seed: the arithmetic differs only in rounding (different kernels, reduction
orders, cuDNN's algorithm choice; TF32 is off by default, :mod:`jembench.precision`). What that can move, and by
how much, per metric family (``n`` = the record's number of test images):

* accuracy, ECE, MCE (percent): an image whose top two logits are within rounding of each other can flip —
  allowed: 2 images, ``200 / n`` points;
* NLL, Brier: continuous in the logits — relative 1e-3;
* OOD AUROC / AUPR: a flipped pair of near-tied scores moves them by ~1/(n_in·n_out) each — absolute 0.005;
  FPR at 95 % TPR moves by a whole image at the threshold — absolute 0.01;
* generation on the replay buffer (the checkpoint's own images): features of the same images — relative 1e-3;
  on fresh / conditional samples the SGLD chains themselves are recomputed and drift apart in rounding over
  their steps — relative 10 % (a loose sanity bound, not an accuracy claim);
* robustness: the clean accuracy of the unrefined classifier (``clean_acc/k0``) as accuracy; attack outcomes
  are discrete searches over float-noisy losses and are reported, not compared.

A metric not covered is reported, not compared. Both NaN (or both the same infinity) counts as equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable

Rule = Callable[[float, float, float], bool]  # (cpu value, device value, n) -> within tolerance


def _abs(tol: float) -> Rule:
    return lambda a, b, n: abs(a - b) <= tol


def _rel(tol: float) -> Rule:
    return lambda a, b, n: abs(a - b) <= tol * max(abs(a), abs(b), 1e-12)


def _images(count: int) -> Rule:
    return lambda a, b, n: abs(a - b) <= 100.0 * count / max(n, 1) + 1e-9


RULES: list[tuple[str, str, Rule]] = [  # (metric key prefix, description, rule): the first matching prefix wins
    ("accuracy", "2 images", _images(2)),
    ("ece", "2 images", _images(2)),
    ("mce", "2 images", _images(2)),
    ("nll", "relative 1e-3", _rel(1e-3)),
    ("brier", "relative 1e-3", _rel(1e-3)),
    ("n", "exact", _abs(0.0)),
    ("auroc/", "absolute 0.005", _abs(0.005)),
    ("aupr/", "absolute 0.005", _abs(0.005)),
    ("fpr95/", "absolute 0.01", _abs(0.01)),
    ("is/buffer", "relative 1e-3", _rel(1e-3)),
    ("fid/buffer", "relative 1e-3", _rel(1e-3)),
    ("kid/buffer", "relative 1e-3", _rel(1e-3)),
    ("is/", "relative 10 %", _rel(0.1)),
    ("fid/", "relative 10 %", _rel(0.1)),
    ("kid/", "relative 10 %", _rel(0.1)),
    ("clean_acc/k0", "2 images", _images(2)),
]


def rule_for(key: str) -> tuple[str, Rule] | None:
    for prefix, text, rule in RULES:
        if key == prefix or (prefix.endswith("/") and key.startswith(prefix)) or key.startswith(prefix + "/"):
            return text, rule
    return None


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def compare(cpu: dict, device: dict) -> tuple[list[str], list[str]]:
    """(failures, reported-only keys) of a device record against the CPU record of the same run. ``n`` is the
    record's ``metrics["n"]``, else ``details["n"]``."""
    a, b = cpu["metrics"], device["metrics"]
    n = float(a.get("n", cpu.get("details", {}).get("n", 0)) or 0)
    failures, reported = [], []
    if set(a) != set(b):
        failures.append(f"metric keys differ: only on the CPU {sorted(set(a) - set(b))}, only on the device "
                        f"{sorted(set(b) - set(a))}")
    for key in sorted(set(a) & set(b)):
        x, y = float(a[key]), float(b[key])
        found = rule_for(key)
        if found is None:
            reported.append(key)
            continue
        text, rule = found
        if not (_same(x, y) or (math.isfinite(x) and math.isfinite(y) and rule(x, y, n))):
            failures.append(f"{key}: CPU {x:.6g}, device {y:.6g} (tolerance {text})")
    return failures, reported
