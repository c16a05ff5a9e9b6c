"""JEM++ (Yang & Ji 2021): JEM with an informative initialisation, proximal SGLD and SGD with warm-up.

Objective: the same joint likelihood as JEM (:func:`reference_models.objectives.joint_likelihood`),

    L(θ) = −log p_θ(y|x) + [E_θ(x) − E_θ(x̂)].

What changes is the sampler, all of it shared-loop configuration:

* informative initialisation — the PCD buffer is filled from, and reinitialised chains are drawn from,
  p_0(x) = Σ_c π_c N(μ_c, Σ_c + 10⁻⁴ I), per-class Gaussians with full covariance fitted once to the
  un-augmented training images and cached in the run (:mod:`reference_models.informative_init`);
* proximal SGLD — x_{t+1} = clip_[−1,1](x_t + α · clip_[−ε,ε](∂LSE f(x_t)/∂x_t) + σ ξ), ε = 1, α = 1, σ = 0,
  M = 10 steps (5 / 10 / 20 in the paper's tables); like the official code, chains see the network in train
  mode (batch norm on the chains' statistics; here the running statistics are left alone);
* SGD (lr .1, momentum .9, weight decay 4e-4) with 1,000 warm-up iterations and ×.2 decay at epochs
  50 / 100 / 125 of 150, batch norm, batch 64, input noise σ = .03, flip + crop augmentation.

Presets: ``paper`` (M = 10, the official script's defaults otherwise), ``paper-k5`` / ``paper-k10`` /
``paper-k20`` (M = 5 / 10 / 20), ``tiny`` (WRN-10-1 with batch norm on 8×8 digits, M = 5, CPU minutes).
Not reproduced: the official code's 5,000-image validation hold-out (we train on the whole training split)
and its YOPO-style inner steps (``--in_steps``; the DESIGN's clamped SGLD is used instead).
"""

from __future__ import annotations

from . import jem, presets
from .objectives import joint_likelihood as objective  # noqa: F401

NAME = "jempp"
DESCRIPTION = "JEM++: informative init (class Gaussians) + proximal SGLD + SGD with warm-up (Yang & Ji 2021)"
PRESETS = presets.names(with_step_variants=True)

PAPER = dict(jem.PAPER, method="jempp", norm="batch", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=4e-4,
             epochs=150, batch_size=64, warmup_iters=1000, decay_epochs=[50, 100, 125], decay_rate=0.2,
             input_noise=0.03, sgld_steps=10, sgld_step_size=1.0, sgld_noise=0.0, sgld_grad_clamp=1.0,
             sgld_x_clamp=True, sgld_train_mode=True, init="class_gaussian")

TINY = dict(PAPER, depth=10, width=1, lr=0.05, epochs=6, warmup_iters=20, decay_epochs=[4], augment=False,
            flip=False, buffer_size=1000, sgld_steps=5, log_every=5)


def preset(name: str, dataset: str) -> dict:
    if name == "tiny":
        return presets.tiny(TINY, dataset)
    return presets.paper(PAPER, name, dataset, with_step_variants=True)
