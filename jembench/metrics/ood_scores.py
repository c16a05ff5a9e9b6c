"""The OOD scores of JEM §5.3, one tiny object each (OpenOOD style); higher = more in-distribution.

  ``log_px``     log p(x) + log Z = LSE_y f(x)[y]                       (JEM §5.3.1, Eq. 6; Z is constant in x)
  ``max_py``     max_y p(y|x) = max softmax(f(x))                        (§5.3.2; Hendrycks & Gimpel 2017)
  ``grad_norm``  −‖∂ log p(x)/∂x‖₂ = −‖∂ LSE_y f(x)[y] / ∂x‖₂              (§5.3.3, Eq. 9, "approximate mass")

A score is ``score(logits, x) -> (N,)`` where ``logits = model(x)``; :func:`score_batches` runs one forward
pass per batch and hands the same logits to every requested score; without a gradient score that pass runs
under ``torch.inference_mode``. The gradient score needs input gradients:
when it is requested the forward runs under ``torch.enable_grad()`` with ``x.requires_grad_()`` — never under
``no_grad``, even if the caller is — and one backward of Σ_i LSE(f(x_i)) gives every per-example gradient in
the batch at once. That is exact when the model is in eval mode (batch norm uses running statistics), so
example i's output does not depend on example j. In train mode (the OOD protocol's ``bn_mode = "train"``) it is
∂/∂x_i of the batch sum through the batch statistics — exactly what the official code computes
(``t.autograd.grad(f(x_k).sum(), [x_k])``, JEM eval_wrn_ebm.py:250-254, JEM++ eval_jempp.py:380-384).
Gradients are taken w.r.t. x only; parameter ``.grad`` is never touched.

The registry (:data:`SCORES`: names, labels) is importable without torch — the leaderboard reads the labels from
here and must start fast — so torch is imported where a score is computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


class OODScore:
    """An OOD score: called with a batch's logits and inputs, it returns one number per input, higher for inputs
    that look in-distribution (the OOD suite's AUROC takes the in-distribution set as positive). ``name`` is its
    part of the metric keys (``auroc/<set>/<name>``), ``label`` its table / figure text, ``latex`` its LaTeX;
    ``needs_input_grad`` makes the suite pass inputs that require gradients (for scores of ∂/∂x). Register a
    subclass instance with :func:`register_score` to use it by name in an OOD protocol's ``scores``."""

    name: str = ""
    label: str = ""
    latex: str = ""
    needs_input_grad: bool = False

    def __call__(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LogPx(OODScore):
    name, label, latex = "log_px", "log p(x)", r"$\log p(\mathbf{x})$"

    def __call__(self, logits, x):
        from ..energy import log_px_unnormalized

        return log_px_unnormalized(logits.detach())


class MaxPy(OODScore):
    name, label, latex = "max_py", "max_y p(y|x)", r"$\max_y p(y|\mathbf{x})$"

    def __call__(self, logits, x):
        from ..energy import p_y_given_x

        return p_y_given_x(logits.detach()).max(dim=1).values


class GradNorm(OODScore):
    name, label, needs_input_grad = "grad_norm", "−‖∂log p(x)/∂x‖", True
    latex = r"$-\left\|\frac{\partial \log p(\mathbf{x})}{\partial \mathbf{x}}\right\|$"

    def __call__(self, logits, x):
        import torch

        from ..energy import log_px_unnormalized

        grad = torch.autograd.grad(log_px_unnormalized(logits).sum(), x, retain_graph=True)[0]
        return -grad.flatten(1).norm(p=2, dim=1)


SCORES: dict[str, OODScore] = {}


def register_score(score: OODScore) -> OODScore:
    """Add a score to the registry the OOD suite looks names up in."""
    SCORES[score.name] = score
    return score


for _score in (LogPx(), MaxPy(), GradNorm()):
    register_score(_score)


def score_batches(model: nn.Module, batches: Iterable[torch.Tensor], names: Sequence[str],
                  device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Scores ``names`` of every image in ``batches`` (an iterable of (B, C, H, W) tensors), on the CPU.

    Only the per-image scores are kept, so an OOD test set can stream through a DataLoader.
    """
    import torch

    scores = [SCORES[n] for n in names]
    need_grad = any(s.needs_input_grad for s in scores)
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for batch in batches:
        x = batch.to(device)
        with torch.enable_grad() if need_grad else torch.inference_mode():
            if need_grad:
                x = x.detach().requires_grad_(True)
            logits = model(x)
            for score in scores:
                out[score.name].append(score(logits, x).detach().float().cpu())
        del logits, x  # a retained graph (gradient score) must not live on into the next batch's forward
    return {n: torch.cat(v) if v else torch.empty(0) for n, v in out.items()}


def score_tensor(model: nn.Module, images: torch.Tensor, names: Sequence[str], device: str | torch.device = "cpu",
                 batch_size: int = 256) -> dict[str, torch.Tensor]:
    """:func:`score_batches` over an in-memory tensor, ``batch_size`` images at a time."""
    return score_batches(model, (images[i:i + batch_size] for i in range(0, len(images), batch_size)), names,
                         device)
