"""SADA-JEM (Yang, Su & Ji, CVPR 2023): JEM++'s sampler + sharpness-aware minimisation + DA-free p(x).

Objective: SAM (:mod:`jembench.reference_models.sam`) on the joint likelihood,

    max_θ min_{‖ε‖₂ ≤ ρ}  log p_{θ+ε}(x, y) − λ‖θ‖²,    log p(x, y) = log p(y|T(x)) + log p(x),

i.e. the JEM loss L(θ) = −log p_θ(y|T(x)) + [E_θ(x) − E_θ(x̂)] evaluated at θ (first pass, batch-norm
statistics updated) and at θ + ε̂ (second pass, statistics frozen), the update using the second gradient.
"DA-free MLE": the p(x) term sees un-augmented images x from a second loader, the p(y|x) term the augmented
T(x) — data augmentation stays out of the generative term. The SGLD samples x̂ are drawn once per iteration
and reused by both SAM passes. Sampler: JEM++'s informative initialisation and clamped SGLD with K steps.

Forward order, as train_sadajem.py:203-262 (:data:`~jembench.reference_models.objectives.PX_FIRST_ORDER`): pass 1 —
f(x_p(x)), the K SGLD forwards (train mode, batch-norm statistics updated: ``f.eval()`` is commented out in its
``sample_q``), f(x̂), f(x_lab), every one updating the running statistics with momentum .9; pass 2 at θ + ε̂ —
the same batches and the same x̂ with the statistics frozen (the official code sets the momentum to 0).

``paper`` preset = the official script (scripts/sadajem_cifar10.sh) with the script's defaults: WRN-28-10 with
batch norm, SGD lr .1, momentum .9, weight decay 5e-4, 1,000 warm-up iterations, ×.2 decay at epochs
60 / 120 / 180 of 200, input noise σ = 0, labelled batch 128 (hard-coded there) and p(x) batch 64 (= 64 chains),
K = 5 steps, α = 1, σ_SGLD = 0, gradient clamp 1, x ∈ [−1, 1], adaptive SAM with ρ = 2 (the code turns ASAM on
for ρ ≥ .5), no hold-out, ``best.pt`` chosen on *test* accuracy without input noise (as the official code
does — it has no validation split, utils.py:134-137 with ``--n_valid`` 0, and picks ``best_valid_ckpt.pt`` on
``dload_test``, train_sadajem.py:271-282; so its ``best.pt`` is chosen on the split it is then evaluated on, and
its test accuracy is optimistically biased — ``last.pt`` is the unbiased choice; the checkpoint and its records
say which split chose it), stop rule |p(x) term| = |E(x) − E(x̂)| > 1e5 (checked before the CE term is added;
``paper`` rolls back and retries there, ``paper-official`` stops).
``paper-k5`` / ``paper-k10`` / ``paper-k20``: K = 5 / 10 / 20 (Tables 1–3). ``cpu``: 32×32 CPU budget.
``tiny``: WRN-10-1 with batch norm on 8×8 digits, K = 5, CPU minutes.
"""

from __future__ import annotations

from . import jempp, presets

NAME = "sada_jem"
DESCRIPTION = "SADA-JEM: JEM++ sampler + SAM on the joint objective + DA-free p(x) (Yang, Su & Ji 2023)"
STEP_VARIANTS = True
PRESETS = presets.names(STEP_VARIANTS)

PAPER = presets.derive(jempp.PAPER, method="sada_jem", weight_decay=5e-4, epochs=200, batch_size=128,
                       decay_epochs=[60, 120, 180], decay_rate=0.2, input_noise=0.0, px_unaugmented=True,
                       px_batch_size=64, sgld={"n_steps": 5}, sam_rho=2.0, sam_adaptive=True, px_separate=False,
                       holdout=0, select_best="test", select_noise=0.0, loss_bound=0.0, gap_bound=1e5)

#: ``tiny``: 12 epochs (measured on digits, README "demo": 6 epochs left it under-confident, accuracy 96.1 %,
#: ECE 14.9 %; 12 epochs with the decay at 8: 96.9 %, ECE 8.1 %).
TINY = presets.derive(PAPER, depth=10, width=1, lr=0.05, epochs=12, batch_size=64, px_batch_size=64,
                      warmup_iters=20, decay_epochs=[8], augment=True, flip=False, buffer_size=1000,
                      sgld={"n_steps": 5}, log_every=5, select_best="none")


def objective(step):
    """JEM's loss in the JEM++ forward order; :mod:`jembench.reference_models.sam` evaluates it at θ and θ + ε̂."""
    from .objectives import px_first_joint_likelihood

    return px_first_joint_likelihood(step)
