"""White-box PGD (Madry et al. 2018) at a fixed ε through torchattacks: L∞ (``PGD``), L2 (``PGDL2``) and the
EOT variant (``EOTPGD``, gradients averaged over ``eot_iter`` calls of a stochastic model; L∞ only).

JEM App. F runs PGD with 20 random restarts × 100 iterations; SADA-JEM's refinement attack uses 50 steps of
2/255 at ε = 8/255 with a random start. torchattacks returns the *last* iterate of one run and has no restarts,
so :func:`pgd` adds them (hand-written, a loop): an input leaves the batch as soon as a restart's adversarial is
verified, and for the inputs never broken the restart with the highest verified loss is kept. Verification uses
a separate classifier (for a stochastic refinement: the logits averaged over many fresh draws), so a lucky
draw during the attack does not count as a success.

Everything here is in [0, 1] pixel space (see :mod:`jembench.attacks`): ``model01`` is a
:class:`~jembench.attacks.PixelSpace` wrapper, ε and the step size are in [0, 1] units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from . import distances


@dataclass(frozen=True)
class PGDConfig:
    """One PGD attack at a fixed ε: ``step_size`` is relative (α = step_size · ε, as 2/255 is 1/4 of 8/255)."""

    norm: str = "linf"
    steps: int = 100
    step_size: float = 0.025  # α/ε; 2.5/steps is Madry et al.'s rule
    restarts: int = 20
    random_start: bool = True
    eot_iter: int = 1  # > 1: torchattacks.EOTPGD (gradient-averaged EOT; L∞ only)


@dataclass
class AttackOutcome:
    """Per input: whether a verified adversarial was found, the kept adversarial ([0, 1] pixels) and its
    distance to the input in the attack's norm ([0, 1] units, capped at ε; ``inf`` when none was found)."""

    success: torch.Tensor
    adv: torch.Tensor
    distance: torch.Tensor


def make_attack(model01: nn.Module, eps: float, cfg: PGDConfig) -> torchattacks.attack.Attack:
    """The torchattacks object for one run (torchattacks puts ``model01`` into eval mode)."""
    alpha = cfg.step_size * eps
    if cfg.norm == "linf":
        if cfg.eot_iter > 1:
            return torchattacks.EOTPGD(model01, eps=eps, alpha=alpha, steps=cfg.steps, eot_iter=cfg.eot_iter,
                                       random_start=cfg.random_start)
        return torchattacks.PGD(model01, eps=eps, alpha=alpha, steps=cfg.steps, random_start=cfg.random_start)
    if cfg.norm == "l2":
        if cfg.eot_iter > 1:
            raise ValueError("torchattacks has no L2 EOT PGD; average logits over draws (eot_mode = 'logits')")
        return torchattacks.PGDL2(model01, eps=eps, alpha=alpha, steps=cfg.steps, random_start=cfg.random_start)
    raise ValueError(f"unknown norm {cfg.norm!r}; use linf or l2")


def pgd(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: float, cfg: PGDConfig,
        verify: Callable[[torch.Tensor], torch.Tensor]) -> AttackOutcome:
    """PGD at ε with ``cfg.restarts`` restarts on [0, 1] images ``x01`` with labels ``y``.

    ``verify(adv01) -> logits`` decides success (prediction ≠ y for a perturbed input). ε = 0 runs no attack
    and finds nothing.
    """
    n = len(x01)
    best = x01.clone()
    with torch.no_grad():
        best_loss = F.cross_entropy(verify(x01), y, reduction="none")
    # success needs a real perturbation: a clean input misclassified by one stochastic draw is not an attack
    # success (inputs misclassified when clean are the caller's business, at distance 0)
    success = torch.zeros(n, dtype=torch.bool, device=x01.device)
    if eps > 0:
        for _ in range(max(1, cfg.restarts)):
            todo = (~success).nonzero().flatten()
            if len(todo) == 0:
                break
            adv = make_attack(model01, eps, cfg)(x01[todo], y[todo]).detach()
            with torch.no_grad():
                logits = verify(adv)
            fooled = (logits.argmax(1) != y[todo]) & (distances(x01[todo], adv, cfg.norm) > 0)
            loss = F.cross_entropy(logits, y[todo], reduction="none")
            better = fooled | (loss > best_loss[todo])
            keep = todo[better]
            best[keep] = adv[better]
            best_loss[keep] = loss[better]
            success[todo[fooled]] = True
    dist = torch.full((n,), float("inf"), device=x01.device)
    # a perturbation clipped to the ε-ball can measure ε + 1e-8 in float32: cap it, it is within budget
    dist[success] = distances(x01[success], best[success], cfg.norm).clamp(max=eps)
    return AttackOutcome(success=success, adv=best, distance=dist)
