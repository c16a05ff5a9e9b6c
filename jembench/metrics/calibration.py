"""Calibration of p(y|x): reliability bins, ECE, MCE, Brier score and NLL (JEM §5.2, Fig. 4, App. D).

A classifier is calibrated when its confidence c(x) = max_y p(y|x) equals its accuracy among inputs of that
confidence (Guo et al. 2017). We estimate the gap with B equal-width bins of confidence (JEM++ and jembench
default B = 20). Which edge a bin owns is a convention (``closed``):

  ``"left"``   (jembench default) bin b holds c ∈ [b/B, (b+1)/B); the last bin is closed, so c = 1.0 falls in it.
  ``"right"``  bin b holds c ∈ (b/B, (b+1)/B] — the official JEM++ / SADA-JEM code: ``ECELoss`` keeps
               ``conf > lo & conf <= hi`` over ``linspace(0, 1, B+1)`` and ``reliability_diagrams`` keeps
               ``x > lower and x <= upper`` (SADAJEM Task/calibration.py:190-202, :133-143; JEMPP
               Task/calibration.py:169-207, :131-141). c = 1.0 falls in the last bin either way; a confidence
               of exactly 0 (impossible for a softmax) would be in no official bin and is put in the first.
               (JEM's own code has no ECE; its paper cites Guo et al.)
Edges are the exact fractions b/B; the official code compares against float32 ``linspace`` values (``ECELoss``)
or float64 ``np.arange`` sums (``reliability_diagrams``), which disagree with each other for a confidence exactly
equal to float32(b/B) — a measure-zero event for softmax outputs.
For a bin with n_b predictions, acc_b is their accuracy and conf_b their mean confidence:

    ECE = Σ_b (n_b / N) · |acc_b − conf_b|          MCE = max_{b : n_b > 0} |acc_b − conf_b|

(Guo et al. 2017, Eq. 3 and 5). Proper scoring rules, for the same predictions:

    Brier = 1/N Σ_i Σ_c (p(c|x_i) − 1[y_i = c])²     (Brier 1950; multi-class sum form, range [0, 2])
    NLL   = 1/N Σ_i −log p(y_i|x_i)

All functions here return fractions; the calibration suite reports ECE / MCE in percent as the papers do.
:class:`CalibrationAccumulator` streams over batches with O(B) memory, so a test set never needs to be held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .names import BIN_CLOSED


def bin_indices(confidence: torch.Tensor, n_bins: int, closed: str = "left") -> torch.Tensor:
    """Equal-width bin of each confidence in [0, 1]: ``closed="left"`` ⌊c·B⌋ (c = 1.0 in bin B−1),
    ``closed="right"`` ⌈c·B⌉ − 1 (bins (lo, hi], c = 0 in bin 0). c·B is exact in float64 for a float32 c."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if closed not in BIN_CLOSED:
        raise ValueError(f"closed must be one of {BIN_CLOSED}, got {closed!r}")
    scaled = confidence.detach().double() * n_bins
    idx = scaled.floor() if closed == "left" else scaled.ceil() - 1
    return idx.long().clamp_(0, n_bins - 1)


@dataclass(frozen=True)
class ReliabilityBins:
    """The per-bin table a reliability diagram is drawn from (empty bins: accuracy / confidence are NaN)."""

    n_bins: int
    count: tuple[int, ...]
    accuracy: tuple[float, ...]
    confidence: tuple[float, ...]
    closed: str = "left"  # which edge each bin owns (see the module docstring)

    @property
    def n(self) -> int:
        return sum(self.count)

    def edges(self) -> list[float]:
        return [b / self.n_bins for b in range(self.n_bins + 1)]

    def ece(self) -> float:
        """Expected calibration error (fraction); NaN for an empty set."""
        if self.n == 0:
            return math.nan
        return sum(n / self.n * abs(a - c) for n, a, c in zip(self.count, self.accuracy, self.confidence) if n)

    def mce(self) -> float:
        """Maximum calibration error over non-empty bins (fraction); NaN for an empty set."""
        gaps = [abs(a - c) for n, a, c in zip(self.count, self.accuracy, self.confidence) if n]
        return max(gaps) if gaps else math.nan

    def table(self) -> list[dict[str, float]]:
        """One row per bin: lower / upper edge, count, accuracy, mean confidence (NaN when empty)."""
        edges = self.edges()
        return [{"lower": edges[b], "upper": edges[b + 1], "count": self.count[b], "accuracy": self.accuracy[b],
                 "confidence": self.confidence[b]} for b in range(self.n_bins)]


class CalibrationAccumulator:
    """Streaming sums for the reliability bins, Brier score, NLL and accuracy of p(y|x).

    Feed batches with :meth:`add_logits` (logits f(x) and labels) or, for a precomputed confidence, with
    :meth:`add` (confidence and correctness only: Brier / NLL are then not updated).
    """

    def __init__(self, n_bins: int = 20, closed: str = "left"):
        bin_indices(torch.zeros(0), n_bins, closed)  # validates both
        self.n_bins, self.closed = n_bins, closed
        self._count = torch.zeros(n_bins, dtype=torch.float64)
        self._correct = torch.zeros(n_bins, dtype=torch.float64)
        self._confidence = torch.zeros(n_bins, dtype=torch.float64)
        self._brier = 0.0
        self._nll = 0.0
        self._n_scored = 0  # predictions that also updated Brier / NLL

    def add(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Add predictions with confidence max_y p(y|x) ∈ [0, 1] and correctness (bool or 0/1)."""
        confidence = confidence.detach().double().cpu().reshape(-1)
        correct = correct.detach().double().cpu().reshape(-1)
        if confidence.shape != correct.shape:
            raise ValueError(f"confidence {tuple(confidence.shape)} and correct {tuple(correct.shape)} differ")
        idx = bin_indices(confidence, self.n_bins, self.closed)
        self._count += torch.bincount(idx, minlength=self.n_bins).double()
        self._correct += torch.bincount(idx, weights=correct, minlength=self.n_bins)
        self._confidence += torch.bincount(idx, weights=confidence, minlength=self.n_bins)

    def add_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch of logits (N, C) with integer labels (N,): bins, Brier and NLL."""
        log_p = F.log_softmax(logits.detach().double().cpu(), dim=1)
        labels = labels.detach().long().cpu().reshape(-1)
        p = log_p.exp()
        confidence, pred = p.max(dim=1)
        self.add(confidence, pred == labels)
        p_true = p.gather(1, labels.view(-1, 1)).squeeze(1)
        self._brier += ((p * p).sum(1) - 2 * p_true + 1).sum().item()  # Σ_c (p_c − 1[y=c])²
        self._nll += -log_p.gather(1, labels.view(-1, 1)).sum().item()
        self._n_scored += len(labels)

    def bins(self) -> ReliabilityBins:
        count = self._count
        safe = count.clamp(min=1)
        acc = torch.where(count > 0, self._correct / safe, torch.full_like(count, math.nan))
        conf = torch.where(count > 0, self._confidence / safe, torch.full_like(count, math.nan))
        return ReliabilityBins(self.n_bins, tuple(int(c) for c in count.tolist()), tuple(acc.tolist()),
                               tuple(conf.tolist()), self.closed)

    def summary(self) -> dict[str, float]:
        """ECE, MCE, accuracy (fractions), Brier, NLL and n."""
        bins = self.bins()
        n = bins.n
        return {"ece": bins.ece(), "mce": bins.mce(),
                "accuracy": self._correct.sum().item() / n if n else math.nan,
                "brier": self._brier / self._n_scored if self._n_scored else math.nan,
                "nll": self._nll / self._n_scored if self._n_scored else math.nan,
                "n": float(n)}


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 20, closed: str = "left"
                     ) -> ReliabilityBins:
    """The reliability table of a set of predictions (see :class:`ReliabilityBins`)."""
    acc = CalibrationAccumulator(n_bins, closed)
    acc.add(confidence, correct)
    return acc.bins()


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 20,
                               closed: str = "left") -> float:
    """ECE as a fraction (Guo et al. 2017, Eq. 5) with ``n_bins`` equal-width bins."""
    return reliability_bins(confidence, correct, n_bins, closed).ece()


def brier_score(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """Multi-class Brier score: mean over inputs of Σ_c (p_c − 1[y = c])²."""
    onehot = F.one_hot(labels.long(), probs.shape[1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(1).mean().item()
