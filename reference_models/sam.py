"""Sharpness-Aware Minimization (Foret et al. 2021) as a wrapper around any torch optimizer.

SAM minimises the worst loss in an L2 ball of radius ρ around the weights,

    min_θ  max_{‖ε‖₂ ≤ ρ}  L(θ + ε),

with the first-order solution of the inner problem (Foret et al., Eq. 2 with p = 2)

    ε̂(θ) = ρ · g / ‖g‖₂,        g = ∇_θ L(θ),

and the update θ ← BaseOptimizer(θ, ∇_θ L(θ)|_{θ + ε̂}). One SAM iteration is therefore two passes:

    1. forward/backward at θ          → g;  :meth:`SAM.first_step` moves θ to θ + ε̂ (and remembers θ);
    2. forward/backward at θ + ε̂      → g'; :meth:`SAM.second_step` puts θ back and lets the base
                                              optimizer step with g' (momentum, weight decay, lr schedule
                                              all stay the base optimizer's).

Adaptive SAM (ASAM, Kwon et al. 2021) measures the ball in the weight-scaled metric T_θ = |θ|:
ε̂ = ρ · T_θ² g / ‖T_θ g‖₂ (as the SADA-JEM code does, with ASAM's η = 0). SADA-JEM (Yang et al. 2023)
applies SAM to the joint objective −log p_θ(x, y) and uses ASAM with ρ = 2 (plain SAM for ρ < .5).

torch ships no SAM, so it is written here by hand (≈ davda54/sam, the implementation the SADA-JEM code
vendors). Differences: the base optimizer is passed in built (its state_dict is the only optimizer state,
so checkpoints and exact resume need nothing SAM-specific), θ is restored from a copy (bit-exact, not
θ + ε − ε), and ‖g‖ has no additive 1e-12 (only a floor), so the first step is exactly ρ · g/‖g‖.

Batch-norm running statistics must be updated by the first pass only (the second pass sees perturbed
weights); :func:`frozen_bn_stats` is the context manager for the second pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class SAM:
    """Two-step SAM around ``optimizer``: ``first_step()`` after the first backward, ``second_step()`` after the
    second. Both steps read ``p.grad``; callers zero gradients between the passes."""

    def __init__(self, optimizer: torch.optim.Optimizer, rho: float, adaptive: bool = False):
        if rho <= 0:
            raise ValueError(f"SAM rho must be > 0, got {rho}")
        self.optimizer = optimizer
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        self._theta: dict[torch.Tensor, torch.Tensor] = {}

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def _params_with_grad(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, its gradient) for every parameter that has one."""
        return [(p, p.grad) for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """‖g‖₂ (plain) or ‖|θ| ⊙ g‖₂ (adaptive) over all parameters, as a device tensor (no host sync)."""
        params = self._params_with_grad()
        if not params:
            raise RuntimeError("SAM.first_step needs gradients: call loss.backward() first")
        device = params[0][0].device
        norms = [((p.abs() * g) if self.adaptive else g).norm(2).to(device) for p, g in params]
        return torch.stack(norms).norm(2)

    @torch.no_grad()
    def first_step(self) -> torch.Tensor:
        """θ ← θ + ε̂ with ε̂ = ρ g/‖g‖ (adaptive: ρ θ² g/‖|θ| g‖); returns the (scaled) gradient norm."""
        norm = self.grad_norm()
        scale = self.rho / norm.clamp_min(1e-12)
        self._theta = {}
        for p, g in self._params_with_grad():
            self._theta[p] = p.detach().clone()
            e = g * scale.to(p)
            if self.adaptive:
                e = e * p * p
            p.add_(e)
        return norm

    @torch.no_grad()
    def second_step(self) -> None:
        """θ + ε̂ → θ (exact copy), then the base optimizer's step with the gradient taken at θ + ε̂."""
        if not self._theta:
            raise RuntimeError("SAM.second_step called without a first_step")
        for p, theta in self._theta.items():
            p.copy_(theta)
        self._theta = {}
        self.optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch norm keeps normalising with the batch's statistics (train mode) but does not update its running
    mean / variance / counter inside the block (``track_running_stats`` off): SAM's second pass, SGLD chains."""
    norms = [m for m in _batch_norms(model) if m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
