"""Softmax baseline: the same network trained with cross-entropy only (no log p(x) term, no SGLD).

Objective (:func:`jembench.reference_models.objectives.cross_entropy`): L(θ) = −log p_θ(y|x) = −f_θ(x)[y] + LSE f_θ(x).

``paper`` preset: the SADA-JEM table's "Softmax" row (96.2 % on CIFAR-10) — WRN-28-10 with batch norm, SGD
lr .1, momentum .9, weight decay 5e-4, batch 128, 200 epochs, decay ×.2 at 60 / 120 / 180, augmentation,
no input noise.
``tiny`` preset: the JEM tiny network and budget on digits, so demo tables compare like with like.
"""

from __future__ import annotations

from . import jem, presets

NAME = "softmax"
DESCRIPTION = "Softmax classifier baseline: cross-entropy only"
STEP_VARIANTS = False
PRESETS = presets.names(STEP_VARIANTS)

PAPER = {"method": "softmax", "depth": 28, "width": 10, "norm": "batch", "dropout": 0.0, "optimizer": "sgd", "lr":
          0.1, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 200, "batch_size": 128, "warmup_iters": 0,
          "decay_epochs": [60, 120, 180], "decay_rate": 0.2, "augment": True, "flip": True, "input_noise": 0.0,
          "px_unaugmented": False, "px_batch_size": 0, "px_weight": 0.0, "sam_rho": 0.0, "sam_adaptive": False}

TINY = presets.derive(jem.TINY, method="softmax", px_weight=0.0)


def objective(step):
    """Cross-entropy alone (:func:`jembench.reference_models.objectives.cross_entropy`)."""
    from .objectives import cross_entropy

    return cross_entropy(step)
