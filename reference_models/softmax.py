"""Softmax baseline: the same network trained with cross-entropy only (no log p(x) term, no SGLD).

``paper`` preset: the SADA-JEM table's "Softmax" row — WRN-28-10 with batch norm, SGD lr .1, momentum .9,
weight decay 5e-4, 200 epochs, decay ×.2 at 60/120/180, augmentation, no input noise.
``tiny`` preset: the JEM tiny network on digits, so demo tables compare like with like.
"""

from __future__ import annotations

from . import jem
from .objectives import cross_entropy as objective  # noqa: F401

NAME = "softmax"
DESCRIPTION = "Softmax classifier baseline: cross-entropy only"

PAPER = dict(method="softmax", depth=28, width=10, norm="batch", dropout=0.0, optimizer="sgd", lr=0.1,
             momentum=0.9, weight_decay=5e-4, epochs=200, batch_size=128, warmup_iters=0,
             decay_epochs=[60, 120, 180], decay_rate=0.2, augment=True, flip=True, input_noise=0.0, px_weight=0.0,
             sam_rho=0.0)


def preset(name: str, dataset: str) -> dict:
    if name == "paper":
        return dict(PAPER, flip=dataset != "svhn")
    if name == "tiny":
        return dict(jem.preset("tiny", dataset), method="softmax", px_weight=0.0)
    raise KeyError(name)
