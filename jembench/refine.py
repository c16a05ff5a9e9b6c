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

from . import devices
from .errors import JembenchError
from .sampling import Rows, SGLDConfig, sgld


class RefinedClassifier(nn.Module):
    """logits(x) = mean over ``n_draws`` refinements of f(SGLD_K(x)); differentiable end to end.

    ``n_draws`` only matters for stochastic refinement (a deterministic one is computed once). Draws are
    evaluated as one batch of ``n_draws · N`` images. The wrapped model keeps its own train/eval mode.

    ``micro_batch`` > 0 bounds the memory: the ``n_draws · N`` images go through the refinement ``micro_batch`` at
    a time, and a gradient is recomputed chunk by chunk in the backward pass (:class:`_ChunkedGradient`), so the
    peak is one chunk's activations — for an attack through K steps, one chunk's K-step double-backward graph —
    instead of the whole batch's. The result is the unchunked one: every chunk draws the whole batch's noise and
    keeps its rows (:class:`jembench.sampling.Rows`), so each image gets the noise it would get unchunked and the
    random stream ends where the unchunked run leaves it. Logits and input gradients then equal the unchunked
    ones up to float rounding: a network's kernels may sum in another order at another batch size (oneDNN's
    input gradients differ by ~1e-8 between batch sizes; tests/test_refine.py holds the results to rtol 1e-5).
    Needs batch norm in eval mode (batch statistics would depend on the chunk). Not part of any protocol: it
    changes where the memory goes, not what is computed.
    """

    def __init__(self, model: nn.Module, config: SGLDConfig, n_draws: int = 1, bpda: bool = False,
                 input_noise: float = 0.0, micro_batch: int = 0):
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
        if micro_batch < 0:
            raise JembenchError(f"micro_batch must be >= 0 (0 = no chunks), got {micro_batch}; fix --micro-batch")
        self.micro_batch = int(micro_batch)

    @property
    def stochastic(self) -> bool:
        return self.config.stochastic or self.input_noise > 0

    def refine(self, x: torch.Tensor, rows: Rows | None = None) -> torch.Tensor:
        """x (plus input noise) after K SGLD steps; on the autograd tape iff grad mode is on and ``x`` requires a
        gradient. The noise is added on the tape (its Jacobian is the identity, as in attack_model.py:172).
        ``rows``: ``x`` is that slice of a larger batch, and draws the batch's noise for its rows."""
        if self.input_noise > 0:
            x = x + self.input_noise * (rows.normal(x) if rows is not None else torch.randn_like(x))
        if self.config.n_steps == 0:
            return x
        track = torch.is_grad_enabled() and x.requires_grad
        if track and not self.bpda:
            return sgld(self.model, x, self.config, differentiable=True, rows=rows)
        with torch.enable_grad():  # SGLD needs input gradients even when the caller is under no_grad
            refined = sgld(self.model, x.detach(), self.config, differentiable=False, rows=rows)
        if track:  # BPDA: forward = refined input, backward = identity (straight-through)
            return x + (refined - x).detach()
        return refined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        draws = self.n_draws if self.stochastic else 1
        n = x.shape[0]
        batch = x.repeat(draws, *([1] * (x.dim() - 1))) if draws > 1 else x
        if 0 < self.micro_batch < len(batch):
            _check_chunkable(self.model)
            if torch.is_grad_enabled() and x.requires_grad:
                logits = _ChunkedGradient.apply(batch, self)
            else:
                logits = self.chunked_logits(batch)
        else:
            logits = self.model(self.refine(batch))
        return logits if draws == 1 else logits.view(draws, n, -1).mean(0)

    def chunks(self, total: int) -> list[Rows]:
        return [Rows(total, slice(i, min(total, i + self.micro_batch))) for i in range(0, total, self.micro_batch)]

    def chunked_logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The logits of ``batch`` (no gradient), ``micro_batch`` images at a time, each chunk replaying the random
        stream from where the batch started (see the class docstring)."""
        start = devices.stream_state(batch.device)
        out = []
        for rows in self.chunks(len(batch)):
            devices.set_stream_state(batch.device, start)
            with torch.no_grad():
                out.append(self.model(self.refine(batch[rows.part], rows)))
        return torch.cat(out)


class _ChunkedGradient(torch.autograd.Function):
    """The refined logits of a batch, chunk by chunk, with a gradient for the input batch only (what attacks
    take): the forward keeps no graph; the backward recomputes each chunk — the same noise, replayed from the
    stream state the forward started from — on the tape, back-propagates that chunk's share of the output
    gradient and frees the graph before the next chunk. The recomputation's network passes are not counted by
    :class:`ForwardCounter` (the work the protocol asked for is the forward's), and the random stream is left as
    the forward left it."""

    @staticmethod
    def forward(ctx, batch: torch.Tensor, classifier: RefinedClassifier) -> torch.Tensor:
        ctx.classifier = classifier
        ctx.start = devices.stream_state(batch.device)
        ctx.save_for_backward(batch)
        return classifier.chunked_logits(batch.detach())

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (batch,) = ctx.saved_tensors
        classifier: RefinedClassifier = ctx.classifier
        grad = torch.zeros_like(batch)
        global _recomputing
        with devices.fork_rng(batch.device):
            _recomputing += 1
            try:
                for rows in classifier.chunks(len(batch)):
                    devices.set_stream_state(batch.device, ctx.start)
                    with torch.enable_grad():
                        part = batch[rows.part].detach().requires_grad_(True)
                        logits = classifier.model(classifier.refine(part, rows))
                        (grad[rows.part],) = torch.autograd.grad(logits, part, grad_out[rows.part])
            finally:
                _recomputing -= 1
        return grad, None


_recomputing = 0  # > 0 while _ChunkedGradient recomputes chunks (ForwardCounter does not count those passes)


def _check_chunkable(model: nn.Module) -> None:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        raise JembenchError("micro_batch needs the model's batch norm in eval mode (in train mode each chunk would "
                            "be normalised with its own statistics); evaluate in eval mode or drop --micro-batch")


class ForwardCounter:
    """Counts images passed through ``model.forward`` (each SGLD step and each EOT draw counts one per image).

    Use as a context manager; ``count`` holds the total. Backward passes are not counted, nor the recomputed
    chunks of a micro-batched gradient (:class:`RefinedClassifier`).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.count = 0
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def _hook(self, module, inputs, output) -> None:
        if not _recomputing:
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
    """Run a block with torch's RNG (the CPU's and ``device``'s) seeded to ``seed``; restore both afterwards."""
    with devices.fork_rng(device):
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
