"""Adversarial attacks for the robustness suite, one module per family.

``pgd``            white-box PGD (L∞, L2, EOT) through torchattacks, restarts, best adversarial kept;
``search``         per-input minimal ε: an ε grid, then binary search inside each input's bracket (JEM App. F);
``gradient_free``  decision-based BoundaryAttack and PointwiseAttack through foolbox 3, started from a correctly
                   classified input of the top-2 class (JEM App. F).

The one unit boundary (DESIGN conventions): jembench images live in [-1, 1]; attacks work in [0, 1] pixel
space, where torchattacks and foolbox expect them and where ε is quoted (8/255 L∞, 0.5 L2). Images cross once,
with :func:`to_pixels`, and the model is wrapped once, with :class:`PixelSpace` (x ↦ 2x − 1 inside).
ε and every distance stay in [0, 1] units; nothing else converts (an ε of e in [0, 1] units is 2e in [-1, 1]
units, for L∞ and L2 alike).
"""

from __future__ import annotations

import torch
from torch import nn

from ..metric_keys import NORMS  # noqa: F401  (re-exported: the threat models, with their labels there)


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images → [0, 1] pixel space (the attack side of the boundary)."""
    return (x + 1) / 2


class PixelSpace(nn.Module):
    """A [-1, 1] model seen from [0, 1] pixel space: forward(x01) = model(2·x01 − 1).

    torchattacks and foolbox both get this wrapper (foolbox with ``bounds=(0, 1)``); ε in [0, 1] units then
    needs no conversion. Note that torchattacks calls ``.eval()`` on it (and so on the wrapped model).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.model(x01 * 2 - 1)


def distances(x01: torch.Tensor, adv01: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-input ‖adv − x‖ in [0, 1] pixel units: ``linf``, ``l2`` or ``l0`` (number of changed entries)."""
    diff = (adv01 - x01).flatten(1)
    if norm == "linf":
        return diff.abs().amax(1)
    if norm == "l2":
        return diff.norm(dim=1)
    if norm == "l0":
        return (diff.abs() > 1e-8).sum(1).to(diff.dtype)
    raise ValueError(f"unknown norm {norm!r}")


@torch.no_grad()
def predict(model01: nn.Module, x01: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted labels of [0, 1] images (in batches, on the images' device)."""
    if len(x01) == 0:
        return torch.empty(0, dtype=torch.long, device=x01.device)
    return torch.cat([model01(x01[i:i + batch_size]).argmax(1) for i in range(0, len(x01), batch_size)])


@torch.no_grad()
def logits_of(model01: nn.Module, x01: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    if len(x01) == 0:
        return torch.empty(0, device=x01.device)
    return torch.cat([model01(x01[i:i + batch_size]) for i in range(0, len(x01), batch_size)])
