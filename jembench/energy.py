"""The JEM identities, in one place (Grathwohl et al. 2020, Eq. 4-6).

A classifier with logits f(x) ∈ R^C defines an energy-based model of the joint density

    p(x, y) = exp(f(x)[y]) / Z,        E(x, y) = -f(x)[y]                      (Eq. 4)

and, marginalising y, of the inputs

    p(x) = Σ_y exp(f(x)[y]) / Z,        E(x) = -LSE_y(f(x)[y])                 (Eq. 5)

while p(y|x) = softmax(f(x))[y] is the usual classifier (Eq. 6); Z cancels there.
Every function takes logits (N, C) and works on any device; nothing else lives here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def energy(logits: torch.Tensor) -> torch.Tensor:
    """E(x) = -LSE(f(x)), shape (N,). Lower energy = more likely input."""
    return -torch.logsumexp(logits, dim=1)


def log_px_unnormalized(logits: torch.Tensor) -> torch.Tensor:
    """log p(x) + log Z = LSE(f(x)) = -E(x), shape (N,)."""
    return torch.logsumexp(logits, dim=1)


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -f(x)[y], shape (N,)."""
    return -logits.gather(1, y.long().view(-1, 1)).squeeze(1)


def p_y_given_x(logits: torch.Tensor) -> torch.Tensor:
    """p(y|x) = softmax(f(x)), shape (N, C)."""
    return F.softmax(logits, dim=1)


def log_p_y_given_x(logits: torch.Tensor) -> torch.Tensor:
    """log p(y|x) = f(x) - LSE(f(x)), shape (N, C)."""
    return F.log_softmax(logits, dim=1)
