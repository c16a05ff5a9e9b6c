"""The two objectives every reference method is built from.

* :func:`cross_entropy` — the discriminative term alone, −log p(y|x) (the softmax baselines).
* :func:`joint_likelihood` — JEM's factorisation log p(x, y) = log p(y|x) + log p(x) (Grathwohl et al. 2020,
  Eq. 7): the cross-entropy plus the contrastive estimate of −∂log p(x)/∂θ (Eq. 2),

      L = CE(f(x), y) + λ · [E(x) − E(x̂)],    E = −LSE f,   x̂ from SGLD (Algorithm 1, line 7),

  whose gradient matches the maximum-likelihood gradient of log p(x) in expectation. JEM, JEM++ and SADA-JEM
  all optimise this loss; they differ only in the sampler, its initial distribution, the optimiser (SAM) and
  which images feed the p(x) term — all of which the shared loop takes from the config. SADA-JEM's objective
  is the same loss evaluated twice per iteration (at θ and at θ + ε̂, :mod:`reference_models.sam`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jembench.energy import energy


@dataclass
class Step:
    """One iteration's inputs to an objective."""

    model: nn.Module
    x: torch.Tensor  # labelled (augmented) images for p(y|x)
    y: torch.Tensor
    x_px: torch.Tensor | None = None  # images for the p(x) term (x itself unless DA-free)
    x_samples: torch.Tensor | None = None  # SGLD samples x̂ (None when px_weight == 0)
    px_weight: float = 1.0


def cross_entropy(step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(f(x), y) = −log p(y|x) (the softmax baselines)."""
    logits = step.model(step.x)
    ce = F.cross_entropy(logits, step.y)
    acc = (logits.argmax(1) == step.y).float().mean()
    return ce, {"ce": ce.detach(), "acc": acc.detach()}


def joint_likelihood(step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(f(x), y) + λ · [mean E(x_px) − mean E(x̂)]  (JEM Eq. 2 + Eq. 7).

    Forward order: the SGLD samples first, then the p(x) images (DA-free only), the labelled batch last, as in
    the JEM++ / SADA-JEM code — with batch norm (momentum .9) the running statistics then mostly describe
    data, not samples. Without a separate p(x) batch the labelled logits serve both terms.
    """
    e_samples = energy(step.model(step.x_samples)).mean()
    separate_px = step.x_px is not None and step.x_px is not step.x
    logits_px = step.model(step.x_px) if separate_px else None  # DA-free: p(x) sees un-augmented data
    logits = step.model(step.x)
    if logits_px is None:
        logits_px = logits
    ce = F.cross_entropy(logits, step.y)
    e_data = energy(logits_px).mean()
    loss = ce + step.px_weight * (e_data - e_samples)
    acc = (logits.argmax(1) == step.y).float().mean()
    return loss, {"ce": ce.detach(), "acc": acc.detach(), "e_data": e_data.detach(),
                  "e_samples": e_samples.detach(), "e_gap": (e_samples - e_data).detach()}
