"""The SGLD-refined classifier that JEM attacks: x → K SGLD steps started at x → logits.

JEM §5.4 classifies an input after "a few iterations of our model's sampling procedure seeded at a given
input", which moves a low-density (e.g. adversarial) input towards high density before classifying it; the
attacker gets the gradients *through* the sampling procedure (footnote 2). :class:`RefinedClassifier` is that
classifier as an ``nn.Module`` over images in [-1, 1]:

* the refinement is an :class:`jembench.sampling.SGLDConfig` (K = ``n_steps``; JEM §5.4 seeds the chain at the
  input); ``K = 0`` is the plain classifier; ``K > 0`` runs :func:`jembench.sampling.sgld` with
  ``differentiable=True`` whenever the input requires a gradient, so ``loss.backward()`` reaches the input
  through every step (double back-propagation);
* with SGLD noise > 0 the refinement is stochastic. It is attacked with EOT (Athalye et al. 2018,
  "Expectation over Transformation") by averaging the logits of ``n_draws`` independent refinements, and
  verified with many more draws — the SADA-JEM code uses 15 attack and 150 defense replicas;
* ``bpda=True`` replaces the refinement's Jacobian by the identity in the backward pass (BPDA, Athalye et al.
  2018): the forward value is the refined input, the gradient is that of f at the refined input. This is what
  JEM's own attack code computes (attack_model.py:188-196 updates the chain through ``x_k.data``, which autograd
  does not see) and the Hill et al. (2021) attack; exact gradients (``bpda=False``) are what JEM's §5.4 text
  describes (footnote 2);
* ``input_noise`` σ > 0 adds N(0, σ²) to every draw's copy of the input before the SGLD steps, as JEM's attacked
  model does (attack_model.py:168-177: each input repeated ``n_dup_chains`` times, ``+ randn·sigma``, refined,
  logits averaged); it makes the classifier stochastic even with K = 0.

Helpers: :class:`ForwardCounter` (how many images went through the network — the cost an attack paid) and
:class:`QuenchedNoise` (fixes the SGLD noise per call so decision-based attacks see a deterministic function).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .errors import JembenchError
from .sampling import SGLDConfig, sgld


class RefinedClassifier(nn.Module):
    """logits(x) = mean over ``n_draws`` refinements of f(SGLD_K(x)); differentiable end to end.

    ``n_draws`` only matters for stochastic refinement (a deterministic one is computed once). Draws are
    evaluated as one batch of ``n_draws · N`` images. The wrapped model keeps its own train/eval mode.
    """

    def __init__(self, model: nn.Module, config: SGLDConfig, n_draws: int = 1, bpda: bool = False,
                 input_noise: float = 0.0):
        super().__init__()
        if input_noise < 0:
            raise JembenchError(f"input noise sigma must be >= 0, got {input_noise}; fix refine.input_noise")
        if n_draws < 1:
            raise JembenchError(f"the number of EOT draws must be >= 1, got {n_draws}; fix refine.eot_attack / "
                                f"refine.eot_defense")
        self.model = model
        self.config = config
        self.n_draws = int(n_draws)
        self.bpda = bool(bpda)
        self.input_noise = float(input_noise)

    @property
    def stochastic(self) -> bool:
        return self.config.stochastic or self.input_noise > 0

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        """x (plus input noise) after K SGLD steps; on the autograd tape iff grad mode is on and ``x`` requires a
        gradient. The noise is added on the tape (its Jacobian is the identity, as in attack_model.py:172)."""
        if self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        if self.config.n_steps == 0:
            return x
        track = torch.is_grad_enabled() and x.requires_grad
        if track and not self.bpda:
            return sgld(self.model, x, self.config, differentiable=True)
        with torch.enable_grad():  # SGLD needs input gradients even when the caller is under no_grad
            refined = sgld(self.model, x.detach(), self.config, differentiable=False)
        if track:  # BPDA: forward = refined input, backward = identity (straight-through)
            return x + (refined - x).detach()
        return refined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        draws = self.n_draws if self.stochastic else 1
        if draws == 1:
            return self.model(self.refine(x))
        n = x.shape[0]
        logits = self.model(self.refine(x.repeat(draws, *([1] * (x.dim() - 1)))))
        return logits.view(draws, n, -1).mean(0)


class ForwardCounter:
    """Counts images passed through ``model.forward`` (each SGLD step and each EOT draw counts one per image).

    Use as a context manager; ``count`` holds the total. Backward passes are not counted.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.count = 0
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module, inputs, output) -> None:
        self.count += int(inputs[0].shape[0])

    def __enter__(self) -> ForwardCounter:
        self._handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None


@contextlib.contextmanager
def fixed_rng(seed: int, device: torch.device | str) -> Iterator[None]:
    """Run a block with torch's RNG (CPU, and ``device`` if CUDA) seeded to ``seed``; restore it afterwards."""
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class QuenchedNoise(nn.Module):
    """Re-seed the RNG before every forward call, so a stochastic module becomes a fixed function.

    Decision-based attacks (boundary, pointwise) assume a deterministic classifier; with "quenched" SGLD
    noise, batch position i always sees the same noise, so f_i(x) is deterministic for a fixed batch size.
    Their adversarials are then verified with fresh draws. (Hand-written: neither foolbox nor torchattacks
    offers this.)
    """

    def __init__(self, module: nn.Module, seed: int):
        super().__init__()
        self.module = module
        self.seed = int(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fixed_rng(self.seed, x.device):
            return self.module(x)
