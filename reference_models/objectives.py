"""The two objectives every reference method is built from.

* :func:`cross_entropy` — the discriminative term alone, −log p(y|x) (the softmax baselines).
* :func:`joint_likelihood` — JEM's factorisation log p(x, y) = log p(y|x) + log p(x) (Grathwohl et al. 2020,
  Eq. 7): the cross-entropy plus the contrastive estimate of −∂log p(x)/∂θ (Eq. 2),

      L = CE(f(x), y) + λ · [E(x) − E(x̂)],    E = −LSE f,   x̂ from SGLD (Algorithm 1, line 7),

  whose gradient matches the maximum-likelihood gradient of log p(x) in expectation. JEM, JEM++ and SADA-JEM
  all optimise this loss; they differ only in the sampler, its initial distribution, the optimiser (SAM) and
  which images feed the p(x) term — all of which the shared loop takes from the config.
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
    logits = step.model(step.x)
    ce = F.cross_entropy(logits, step.y)
    acc = (logits.argmax(1) == step.y).float().mean()
    return ce, {"ce": ce.detach(), "acc": acc.detach()}


def joint_likelihood(step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if step.x_px is None or step.x_px is step.x:
        logits = step.model(step.x)
        logits_px = logits
    else:  # DA-free: p(x) sees un-augmented data, p(y|x) the augmented batch
        both = step.model(torch.cat([step.x, step.x_px]))
        logits, logits_px = both[: len(step.x)], both[len(step.x):]
    ce = F.cross_entropy(logits, step.y)
    e_data = energy(logits_px).mean()
    e_samples = energy(step.model(step.x_samples)).mean()
    loss = ce + step.px_weight * (e_data - e_samples)
    acc = (logits.argmax(1) == step.y).float().mean()
    return loss, {"ce": ce.detach(), "acc": acc.detach(), "e_data": e_data.detach(),
                  "e_samples": e_samples.detach(), "e_gap": (e_samples - e_data).detach()}
