"""Softmax + SAM baseline: cross-entropy trained with sharpness-aware minimisation (Foret et al. 2021).

Objective: min_θ max_{‖ε‖₂ ≤ ρ} −log p_{θ+ε}(y|x) (+ weight decay), two passes per iteration
(:mod:`jembench.reference_models.sam`); the reference row "Softmax + SAM" of the SADA-JEM tables (97.2 % on CIFAR-10,
83.4 % on CIFAR-100).

``paper`` preset: the softmax row's recipe (WRN-28-10 with batch norm, SGD lr .1, momentum .9, weight decay
5e-4, batch 128, 200 epochs, ×.2 at 60 / 120 / 180) with plain SAM, ρ = .05 — Foret et al.'s CIFAR setting;
the SADA-JEM paper does not state the ρ of its softmax + SAM row.
``tiny`` preset: the softmax tiny preset with ρ = .05.
"""

from __future__ import annotations

from . import presets, softmax

NAME = "softmax_sam"
DESCRIPTION = "Softmax classifier trained with SAM (Foret et al. 2021): the SADA-JEM tables' reference row"
STEP_VARIANTS = False
PRESETS = presets.names(STEP_VARIANTS)

PAPER = presets.derive(softmax.PAPER, method="softmax_sam", sam_rho=0.05, sam_adaptive=False)

TINY = presets.derive(softmax.TINY, method="softmax_sam", sam_rho=0.05, sam_adaptive=False)


def objective(step):
    """Cross-entropy alone; :mod:`jembench.reference_models.sam` evaluates it at θ and θ + ε̂."""
    from .objectives import cross_entropy

    return cross_entropy(step)
