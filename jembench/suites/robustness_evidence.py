"""The per-input evidence of a robustness record: per attacked input, whether it is classified correctly at each
refinement depth K, whether it resisted each attack budget ε, its minimal adversarial ε, and the decision-based
attacks' distances — with the identity of the attacked inputs (:mod:`jembench.evidence`), so that two models
attacked on the same inputs are compared input by input (McNemar's exact test on the robust flags).

Built from the record's own per-input details (``clean``, ``pgd.<norm>.k<K>.min_eps`` and, for
``search = "grid"``, ``robust_at``: each ε's own flags) after the suite ran, and from the attacked images, drawn
again exactly as the suite drew them (``robustness.schedule.attacked_inputs``) to hash them. An input resisted ε
when it was correct and its minimal ε is above ε (``None`` = no adversarial found) — the same rule the suite's
``robust_acc`` metrics use, which ``jembench compare`` checks before testing.
"""

from __future__ import annotations

import numpy as np

from .. import metric_keys
from ..evidence import Evidence, StreamDigest, stream


def _distances(values: list) -> np.ndarray:
    return np.array([np.inf if v is None else float(v) for v in values], dtype=np.float64)


def robustness_evidence(record: dict, protocol, ctx) -> Evidence:
    """The evidence of a finished robustness ``record`` evaluated under ``protocol`` in ``ctx``."""
    from .robustness.schedule import attacked_inputs

    cfg = protocol.settings
    x, y = attacked_inputs(cfg, ctx)
    digest = StreamDigest()
    digest.update(x, y)
    evidence = Evidence()
    evidence.streams["attacked"] = stream(ctx.dataset, digest, selection=cfg.selection, input_seed=cfg.input_seed)
    details, metrics = record.get("details") or {}, record["metrics"]
    evidence.add("attacked/label", details.get("labels", y.tolist()), "int16")
    for kk, correct in (details.get("clean") or {}).items():
        evidence.add(metric_keys.clean_acc(int(kk[1:])), correct, "bool")
    for norm, per_k in (details.get("pgd") or {}).items():
        for kk, entry in per_k.items():
            k, dist = int(kk[1:]), _distances(entry.get("min_eps", []))
            evidence.add(f"min_eps/{norm}/{kk}", dist, "float64")
            robust_at = entry.get("robust_at")
            positive = [e for e in entry.get("eps", []) if e > 0]
            for eps in entry.get("eps", []):
                key = metric_keys.robust_acc(norm, k, eps)
                if key not in metrics:
                    continue
                if eps == 0:
                    flags = np.asarray(details["clean"][kk], dtype=bool)
                elif robust_at is not None:
                    flags = np.asarray(robust_at[positive.index(eps)], dtype=bool)
                elif entry.get("search") == "grid":
                    continue  # a grid record written before details kept robust_at: no per-input evidence
                else:
                    flags = dist > eps
                evidence.add(key, flags, "bool")
    for attack, field in (("boundary", "l2"), ("pointwise", "l0")):
        for kk, entry in (details.get(attack) or {}).items():
            if field in entry:
                evidence.add(f"{attack}/{field}/{kk}", _distances(entry[field]), "float64")
    return evidence
