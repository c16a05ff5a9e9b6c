"""The per-input evidence of the suites that classify the test split (accuracy, calibration): per input, the
predicted class, correctness, confidence, NLL and Brier score (multi-class sum form), computed from its logits as
the calibration metrics compute them (float64), under ``test/`` in the record's sidecar (:mod:`jembench.evidence`)."""

from __future__ import annotations

import torch

from ..evidence import Evidence


def per_input_predictions(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per input of a batch, from its logits: predicted class, correctness, confidence max_y p(y|x) and NLL
    −log p(y|x), in float64 as the calibration metrics compute them (the per-input evidence of the accuracy and
    calibration suites, :mod:`jembench.evidence`)."""
    log_p = torch.log_softmax(logits.detach().double().cpu(), dim=1)
    labels = labels.detach().long().cpu().reshape(-1)
    p = log_p.exp()
    confidence, pred = p.max(dim=1)
    p_true = p.gather(1, labels.view(-1, 1)).squeeze(1)
    return {"pred": pred, "correct": pred == labels, "confidence": confidence, "label": labels,
            "nll": -log_p.gather(1, labels.view(-1, 1)).squeeze(1), "brier": (p * p).sum(1) - 2 * p_true + 1}


def split_evidence(parts: list[dict[str, torch.Tensor]], identity: dict) -> Evidence:
    """The accuracy / calibration evidence: per-input arrays under ``test/`` and the test split's identity."""
    evidence = Evidence()
    dtypes = {"pred": "int16", "correct": "bool", "confidence": "float64", "nll": "float64", "brier": "float64",
              "label": "int16", "ece_bin": "int16"}
    for name, dtype in dtypes.items():
        if parts and name in parts[0]:
            evidence.add(f"test/{name}", torch.cat([p[name] for p in parts]), dtype)
    evidence.streams["test"] = identity
    return evidence
