"""JEM (Grathwohl et al. 2020): a WRN classifier trained as an energy-based model of p(x, y).

Objective: :func:`reference_models.objectives.joint_likelihood` with PCD-SGLD from U(−1, 1).
``paper`` preset = App. A / Table 4: WRN-28-10 without batch norm, Adam lr 1e-4, 150 epochs, decay ×.3 at
epochs 50 and 100 (the paper's Table 4), batch 64, buffer 10,000, reinit 5 %, 20 SGLD steps, α = 1, σ = .01,
input noise σ = .03, flip + crop augmentation.
``tiny`` preset: WRN-10-1 on 8×8 digits in about a minute on 2 CPU cores (short chains, larger lr).
"""

from __future__ import annotations

from .objectives import joint_likelihood as objective  # noqa: F401

NAME = "jem"
DESCRIPTION = "JEM: CE + [E(x) - E(x_hat)] with PCD-SGLD from uniform noise (Grathwohl et al. 2020)"

PAPER = dict(method="jem", depth=28, width=10, norm="none", dropout=0.0, optimizer="adam", lr=1e-4,
             weight_decay=0.0, epochs=150, batch_size=64, warmup_iters=0, decay_epochs=[50, 100], decay_rate=0.3,
             augment=True, flip=True, input_noise=0.03, px_weight=1.0, sgld_steps=20, sgld_step_size=1.0,
             sgld_noise=0.01, sgld_grad_clamp=0.0, sgld_x_clamp=False, buffer_size=10000, reinit_freq=0.05,
             init="uniform", sam_rho=0.0)

TINY = dict(PAPER, depth=10, width=1, lr=1e-3, epochs=6, decay_epochs=[4], decay_rate=0.3, augment=False,
            flip=False, buffer_size=1000, sgld_steps=10, log_every=5)


def preset(name: str, dataset: str) -> dict:
    if name == "paper":
        return dict(PAPER, flip=dataset != "svhn")  # no horizontal flips on digits (SVHN)
    if name == "tiny":
        if dataset == "digits":
            return dict(TINY)
        return dict(TINY, augment=True, flip=True, epochs=1, max_iters=100)
    raise KeyError(name)
