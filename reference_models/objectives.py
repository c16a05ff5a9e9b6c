"""The two objectives every reference method is built from.

* :func:`cross_entropy` — the discriminative term alone, −log p(y|x) (the softmax baselines).
* :func:`joint_likelihood` — JEM's factorisation log p(x, y) = log p(y|x) + log p(x) (Grathwohl et al. 2020,
  Eq. 7): the cross-entropy plus the contrastive estimate of −∂log p(x)/∂θ (Eq. 2),

      L = CE(f(x), y) + λ · [E(x) − E(x̂)],    E = −LSE f,   x̂ from SGLD (Algorithm 1, line 7),

  whose gradient matches the maximum-likelihood gradient of log p(x) in expectation. JEM, JEM++ and SADA-JEM
  all optimise this loss; they differ in the sampler, its initial distribution, the optimiser (SAM), which images
  feed the p(x) term — all of which the shared loop takes from the config — and in the *order* of the forward
  passes, which each method's module fixes (:data:`JEM_ORDER`, :data:`PX_FIRST_ORDER`). With batch norm in train
  mode every forward updates the running statistics (momentum .9: the newest batch weighs .9), so the order decides
  what the evaluation-time statistics describe; without batch norm it changes nothing. SADA-JEM's objective is the
  same loss evaluated twice per iteration (at θ and at θ + ε̂, :mod:`jembench.reference_models.sam`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from jembench.energy import energy

#: JEM code (train_wrn_ebm.py:312-332): SGLD first (the network in eval mode), then f(x_p(x)), f(x̂), f(x_lab).
JEM_ORDER = ("sgld", "px", "samples", "labelled")
#: JEM++ (train_jempp.py:238-273) and SADA-JEM (train_sadajem.py:203-227): f(x_p(x)) first, then SGLD (train-mode
#: batch norm, updating its statistics), then f(x̂), then f(x_lab) — the last, labelled batch dominates the
#: running statistics.
PX_FIRST_ORDER = ("px", "sgld", "samples", "labelled")


@dataclass
class Step:
    """One iteration's inputs to an objective.

    ``draw_samples`` runs the SGLD chains (the loop's sampler: buffer draw, K steps, write-back) and is called at
    most once per iteration — :meth:`samples` memoises it, so SAM's second pass reuses the first pass's x̂."""

    model: nn.Module
    x: torch.Tensor  # labelled (augmented) images for p(y|x)
    y: torch.Tensor
    x_px: torch.Tensor | None = None  # images for the p(x) term (x itself unless a separate p(x) loader is used)
    draw_samples: Callable[[], torch.Tensor] | None = None  # None when px_weight == 0
    px_weight: float = 1.0
    fuse: bool = False  # one forward over the concatenated batches (only without batch norm: see joint_likelihood)
    _samples: torch.Tensor | None = field(default=None, repr=False)

    def samples(self) -> torch.Tensor:
        """x̂, drawn on the first call of this iteration and reused afterwards."""
        if self._samples is None:
            if self.draw_samples is None:
                raise RuntimeError("this method has no generative term (px_weight = 0): no SGLD samples")
            self._samples = self.draw_samples()
        return self._samples


def cross_entropy(step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(f(x), y) = −log p(y|x) (the softmax baselines)."""
    logits = step.model(step.x)
    ce = F.cross_entropy(logits, step.y)
    acc = (logits.argmax(1) == step.y).float().mean()
    return ce, {"ce": ce.detach(), "acc": acc.detach()}


def joint_likelihood(step: Step, order: tuple[str, ...] = JEM_ORDER) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L = CE(f(x), y) + λ · [mean E(x_px) − mean E(x̂)]  (JEM Eq. 2 + Eq. 7), forwards in ``order``.

    ``order`` lists ``"sgld"`` (draw x̂), ``"px"`` (forward of the p(x) images), ``"samples"`` (forward of x̂) and
    ``"labelled"`` (forward of the labelled batch). When the p(x) images are the labelled batch itself (no
    separate p(x) loader), the ``"px"`` forward is the labelled one and happens at its place in the order.

    ``step.fuse`` (set by the loop for networks without batch norm): consecutive forwards in the order run as one
    forward over the concatenated batches. Without batch norm every image's logits depend on that image alone, so
    the loss and its gradient are the same (to float rounding) — one large batch is simply faster on a CPU
    (benchmarks/README.md: 0.75× the time of three separate passes on a WRN-10-2).
    """
    separate_px = step.x_px is not None and step.x_px is not step.x
    x_px = step.x_px if separate_px else None
    inputs: dict[str, Callable[[], torch.Tensor] | None] = {
        "px": (lambda: x_px) if x_px is not None else None, "samples": step.samples, "labelled": lambda: step.x}
    logits: dict[str, torch.Tensor] = {}
    pending: list[str] = []  # forwards waiting to run together (fuse)

    def run(names: list[str]) -> None:
        batches = [source() for source in (inputs[n] for n in names) if source is not None]
        out = step.model(torch.cat(batches)) if len(batches) > 1 else step.model(batches[0])
        logits.update(zip(names, out.split([len(b) for b in batches])))

    for event in order:
        if event == "sgld":
            if pending:
                run(pending)
                pending = []
            step.samples()
        elif inputs.get(event) is not None:
            if step.fuse:
                pending.append(event)
            else:
                run([event])
    if pending:
        run(pending)
    e_samples = energy(logits["samples"]).mean()
    labelled = logits["labelled"]
    logits_px = logits.get("px", labelled)
    ce = F.cross_entropy(labelled, step.y)
    e_data = energy(logits_px).mean()
    loss = ce + step.px_weight * (e_data - e_samples)
    acc = (labelled.argmax(1) == step.y).float().mean()
    return loss, {"ce": ce.detach(), "acc": acc.detach(), "e_data": e_data.detach(),
                  "e_samples": e_samples.detach(), "e_gap": (e_samples - e_data).detach()}


def px_first_joint_likelihood(step: Step) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`joint_likelihood` in the JEM++ / SADA-JEM order (:data:`PX_FIRST_ORDER`)."""
    return joint_likelihood(step, PX_FIRST_ORDER)
