"""Threshold-free OOD detection metrics of a score, through scikit-learn (JEM §5.3; Hendrycks & Gimpel 2017).

Convention (as in the JEM paper and its official evaluation): a score is higher for inputs the model believes
are in-distribution, and the in-distribution set is the *positive* class.

  ``auroc``  area under the ROC curve = P(s(x_in) > s(x_out)) + ½ P(tie)  (``roc_auc_score``); the number
             the papers print (JEM Tables 2/3/7, SADA-JEM Table 3); 0.5 = chance, 1.0 = perfect.
  ``aupr``   area under the precision-recall curve with in-distribution positive ("AUPR-In"), estimated by
             average precision (``average_precision_score``).
  ``fpr95``  the share of OOD inputs accepted at the threshold that accepts 95% of in-distribution inputs:
             the smallest false-positive rate on the ROC curve with TPR ≥ 0.95 (``roc_curve``).
  ``auroc_se``  the AUROC's standard error by Hanley & McNeil (1982, Radiology 143:29, Table 1 / Eq. 2), from
             the AUROC and the two sides' numbers of independent inputs — or, when one side is a single point
             (identical inputs, or every score of that side tied: ``in_tied`` / ``out_tied``), the binomial error
             of a proportion of the other side (:func:`jembench.sampling_error.auroc_rule`): what a number's ±
             means (hand-written: scikit-learn has no AUROC variance; the formula is three lines).
Non-finite scores: ±inf keep their order (mapped to ±float max); a NaN anywhere makes all metrics NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ..sampling_error import auroc_rule, rule_error
from ..sampling_error import auroc_standard_error  # noqa: F401  (re-exported: the OOD suite's AUROC s.e.)

TPR_LEVEL = 0.95
#: relative spread below which one side's scores count as tied (float32 has 24 bits: ~6e-8 per operation)
TIE_TOLERANCE = 1e-5
CONVENTION = ("scores: higher = more in-distribution; in-distribution is the positive class for AUROC and AUPR "
              "(AUPR-In, average precision); fpr95 = share of OOD inputs scoring at or above the threshold that "
              "keeps 95% of in-distribution inputs")


def _as_numpy(scores) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().double().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr_level: float = TPR_LEVEL) -> float:
    """Smallest false-positive rate among ROC operating points whose true-positive rate is ≥ ``tpr_level``."""
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def tied(scores: np.ndarray) -> bool:
    """Whether every score of one side is the same number, up to float32 rounding (identical inputs scored in
    batches of different sizes may differ in the last bits)."""
    if len(scores) < 2:
        return True
    spread = float(np.max(scores) - np.min(scores))
    return spread <= TIE_TOLERANCE * max(1.0, float(np.max(np.abs(scores))))


def detection_metrics(score_in, score_out, draws: tuple[int, int] | None = None) -> dict[str, float | bool]:
    """AUROC, AUPR-In, FPR@95%TPR, whether each side's scores are all tied (``in_tied``, ``out_tied``) and the
    AUROC's standard error (``auroc_se``) of scores for in-distribution (positive) vs OOD (negative) inputs.
    ``draws``: the two sides' numbers of independent (distinct) inputs, default the numbers of scores."""
    s_in, s_out = _as_numpy(score_in), _as_numpy(score_out)
    if len(s_in) == 0 or len(s_out) == 0:
        raise ValueError(f"need scores for both sets, got {len(s_in)} in-distribution and {len(s_out)} OOD")
    scores = np.concatenate([s_in, s_out])
    if np.isnan(scores).any():
        return {"auroc": math.nan, "aupr": math.nan, "fpr95": math.nan, "auroc_se": math.nan}
    big = np.finfo(np.float64).max
    scores = np.clip(scores, -big, big)  # ±inf keep their rank; scikit-learn rejects infinities
    labels = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    auroc = float(roc_auc_score(labels, scores))
    in_tied, out_tied = tied(scores[:len(s_in)]), tied(scores[len(s_in):])
    n_in, n_out = draws if draws is not None else (len(s_in), len(s_out))
    rule = auroc_rule(n_in, n_out, in_tied=in_tied, out_tied=out_tied)
    return {"auroc": auroc, "aupr": float(average_precision_score(labels, scores)),
            "fpr95": fpr_at_tpr(labels, scores), "in_tied": in_tied, "out_tied": out_tied,
            "auroc_se": rule_error(rule, auroc, percent=False)}
