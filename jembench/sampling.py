"""Stochastic Gradient Langevin Dynamics, the persistent replay buffer and its initial distributions.

SGLD as used by JEM (Grathwohl et al. 2020, Eq. 3 and Algorithm 1, line 6), with the relaxed step-size /
noise pair that the paper uses in practice (App. G.1):

    x_{t+1} = x_t + α · ∂LSE(f(x_t))/∂x_t + σ · ε,    ε ~ N(0, I)

i.e. a descent step on E(x) = -LSE(f(x)). The class-conditional chain for p(x|y) uses f(x)[y] in place of LSE.
JEM++ (Yang & Ji 2021) makes it "proximal": each step's gradient is clamped to [-ε, ε] and x is clamped to
[-1, 1]. Both are options of :class:`SGLDConfig` so every method shares one sampler.

The replay buffer (persistent contrastive divergence) keeps ``size`` chains; each draw restarts a share
``reinit_freq`` of them from an initial distribution ``p_0``: U(-1, 1) for JEM (:class:`UniformInit`) or the
per-class Gaussians of JEM++'s informative initialisation (:class:`ClassGaussianInit`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .sgld_config import SGLDConfig  # noqa: F401  (re-exported: the settings of every chain run)


def _log_density(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    logits = model(x)
    if y is None:
        return torch.logsumexp(logits, dim=1)  # log p(x) + log Z
    return logits.gather(1, y.view(-1, 1)).squeeze(1)  # log p(x, y) + log Z


def sgld(
    model: nn.Module,
    x0: torch.Tensor,
    config: SGLDConfig,
    y: torch.Tensor | None = None,
    differentiable: bool = False,
    stats: dict | None = None,
    rows: Rows | None = None,
) -> torch.Tensor:
    """Run ``config.n_steps`` SGLD steps from ``x0`` on log p(x) (or log p(x, y) when ``y`` is given).

    With ``differentiable=False`` (training, sampling) the result is detached and no graph is kept between
    steps. With ``differentiable=True`` every step stays on the autograd tape (``create_graph``), so a loss
    on the output back-propagates through the whole chain into ``x0`` — the refined classifier that JEM
    attacks white-box (§5.4, footnote 2). The model's train/eval mode is the caller's choice.
    If ``stats`` is a dict, ``stats["grad_norm"]`` receives the mean per-sample L2 norm of the last step's
    (unclamped) gradient as a device tensor (no host synchronisation).

    The input gradients are taken under ``torch.enable_grad()``, so a caller's ``no_grad`` block does not
    break the chain.

    ``rows`` (a :class:`Rows`): ``x0`` is the slice ``rows.part`` of a batch of ``rows.total`` chains, and each
    step's noise is what that batch would draw for these rows — the whole batch's noise is drawn and sliced, so
    the random stream advances as for the whole batch. Running the slices one after the other, each from the
    same generator state, gives every chain exactly the noise of the unsplit run (the memory micro-batch of
    :class:`jembench.refine.RefinedClassifier`).
    """
    if differentiable:
        return _sgld_differentiable(model, x0, config, y, stats, rows)
    return _sgld_detached(model, x0, config, y, stats, rows)


class Rows:
    """A slice ``part`` of a batch of ``total`` rows: noise is drawn for the whole batch, this slice is used."""

    def __init__(self, total: int, part: slice):
        self.total, self.part = int(total), part

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        """N(0, 1) noise of the whole batch (row-major, as :func:`_noise_buffer`), these rows of it."""
        full = torch.empty((self.total, *like.shape[1:]), dtype=like.dtype, device=like.device)
        return full.normal_()[self.part]


def _noise(x: torch.Tensor, rows: Rows | None, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """One step's N(0, 1) noise for chains ``x``: drawn into ``buffer`` (reused between steps), or, for a slice of
    a larger batch, that batch's noise for these rows."""
    if rows is not None:
        return rows.normal(x)
    return (buffer if buffer is not None else _noise_buffer(x)).normal_()


def _noise_buffer(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of ``x``'s shape in the standard (row-major) layout, whatever ``x``'s memory format.

    Why: the noise ε must not depend on how the chains are laid out in memory. Drawn into a row-major tensor,
    ``normal_`` gives the values ``torch.randn(x.shape)`` gives (and ``randn_like`` of an NCHW chain, as the
    official code draws it) on every layout, and on a CPU it takes torch's vectorised sampler; a channels-last
    buffer would take the element-by-element one, which draws other values and cost 7.5 ms of a 130 ms SGLD step
    of a WRN-10-2 on 64 chains (torch.profiler). Adding it to a channels-last chain reads it by index."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _sgld_detached(model: nn.Module, x0: torch.Tensor, config: SGLDConfig, y: torch.Tensor | None,
                   stats: dict | None, rows: Rows | None = None) -> torch.Tensor:
    """The fast path: one forward and one input-gradient backward per step and nothing else on the tape.

    Per step the only new tensors are the ones autograd itself allocates (activations, the input gradient):
    the chain state ``x`` is one buffer updated in place, the update (clamp, ×α, +σε) is written into one
    scratch buffer, the noise is drawn into a preallocated buffer (``normal_`` consumes the generator exactly
    as ``randn_like`` does; see :func:`_noise_buffer` for its layout), no update op is recorded by autograd, and
    there is no host synchronisation.
    The arithmetic is the textbook loop's, op for op — x ← x + (α·clamp(g) + σ·ε), then clamp x — so the
    result is bit-identical to it (``tests/test_fast_paths.py``); ×α is skipped when α = 1 (exact in IEEE).
    """
    n_steps = config.n_steps
    if n_steps == 0:
        return x0.detach()
    x = x0.detach().clone()  # the chain state, updated in place; x0 is left alone
    scratch = torch.empty_like(x)
    buffer = _noise_buffer(x) if config.noise > 0 and rows is None else None
    clamp, alpha, sigma = config.grad_clamp or None, config.step_size, config.noise
    with torch.enable_grad():
        for t in range(n_steps):
            x.requires_grad_(True)
            grad = torch.autograd.grad(_log_density(model, x, y).sum(), x)[0]
            x.requires_grad_(False)
            with torch.no_grad():
                if stats is not None and t == n_steps - 1:
                    stats["grad_norm"] = grad.flatten(1).norm(dim=1).mean()
                step = grad
                if clamp is not None:
                    step = torch.clamp(step, -clamp, clamp, out=scratch)
                if alpha != 1.0:
                    step = torch.mul(step, alpha, out=scratch)
                if sigma > 0:
                    eps = _noise(x, rows, buffer)
                    eps.mul_(sigma)
                    step = torch.add(step, eps, out=scratch)
                x.add_(step)
                if config.x_clamp:
                    x.clamp_(-1.0, 1.0)
    return x


def _sgld_differentiable(model: nn.Module, x0: torch.Tensor, config: SGLDConfig, y: torch.Tensor | None,
                         stats: dict | None, rows: Rows | None = None) -> torch.Tensor:
    """Every step on the tape (``create_graph``): gradients of the output reach ``x0`` through the chain."""
    x = x0
    with torch.enable_grad():
        for t in range(config.n_steps):
            if not x.requires_grad:
                x = x.requires_grad_(True)
            grad = torch.autograd.grad(_log_density(model, x, y).sum(), x, create_graph=True)[0]
            if stats is not None and t == config.n_steps - 1:
                stats["grad_norm"] = grad.detach().flatten(1).norm(dim=1).mean()
            if config.grad_clamp:
                grad = grad.clamp(-config.grad_clamp, config.grad_clamp)
            step = config.step_size * grad
            if config.noise > 0:
                step = step + config.noise * _noise(x, rows)
            x = x + step
            if config.x_clamp:
                x = x.clamp(-1.0, 1.0)
    return x


class InitialDistribution(Protocol):
    """p_0: draws ``len(y)`` images (on ``device``) for the given class labels (ignored when unconditional)."""

    name: str

    def sample(self, y: torch.Tensor, device: torch.device | str) -> torch.Tensor: ...

    def state_dict(self) -> dict: ...

    def checkpoint_state(self) -> dict: ...


class UniformInit:
    """U(-1, 1) over the image domain (JEM Algorithm 1, line 4)."""

    name = "uniform"

    def __init__(self, image_shape: tuple[int, ...]):
        self.image_shape = tuple(int(s) for s in image_shape)

    def sample(self, y: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        return torch.rand((len(y), *self.image_shape), device=device) * 2 - 1

    def state_dict(self) -> dict:
        return {"name": self.name, "image_shape": list(self.image_shape)}

    def checkpoint_state(self) -> dict:
        return self.state_dict()


class ClassGaussianInit:
    """JEM++'s informative initialisation: x ~ N(μ_y, Σ_y + δI) per class, clamped to [-1, 1].

    μ_c and the full covariance Σ_c are fitted to the (un-augmented) training images of class c
    (Yang & Ji 2021, §3.2; δ = 1e-4 keeps Σ_c positive definite). Sampling uses the Cholesky factor L_c:
    x = μ_c + L_c z, z ~ N(0, I).
    """

    name = "class_gaussian"

    def __init__(self, means: torch.Tensor, scale_trils: torch.Tensor, image_shape: tuple[int, ...]):
        self.means = means  # (C, D)
        self.scale_trils = scale_trils  # (C, D, D)
        self.image_shape = tuple(int(s) for s in image_shape)

    @classmethod
    def fit(cls, images: torch.Tensor, labels: torch.Tensor, n_classes: int, jitter: float = 1e-4) -> ClassGaussianInit:
        """Fit one Gaussian per class to ``images`` (N, *shape) in [-1, 1] with integer ``labels`` (N,).

        The covariance is the biased (1/N) estimate the official code uses — ``sub.t() @ sub / len(imc)`` in
        JEMPP train_jempp.py:150-154 and SADAJEM multi_center.py:31-37 — plus ``jitter``·I as their sampler adds
        (``MultivariateNormal(mean, cov + 1e-4 I)``)."""
        flat = images.reshape(len(images), -1).double()
        dim = flat.shape[1]
        means, trils = [], []
        for c in range(n_classes):
            xc = flat[labels == c]
            if len(xc) < 2:
                raise ValueError(f"class {c} has {len(xc)} training images; the informative init needs >= 2 per class")
            mu = xc.mean(0)
            centred = xc - mu
            cov = centred.T @ centred / len(xc) + jitter * torch.eye(dim, dtype=torch.float64)
            means.append(mu)
            trils.append(torch.linalg.cholesky(cov))
        return cls(torch.stack(means).float(), torch.stack(trils).float(), tuple(images.shape[1:]))

    @classmethod
    def from_state_dict(cls, state: dict) -> ClassGaussianInit:
        return cls(state["means"], state["scale_trils"], tuple(state["image_shape"]))

    def state_dict(self) -> dict:
        return {"name": self.name, "means": self.means, "scale_trils": self.scale_trils,
                "image_shape": list(self.image_shape)}

    def checkpoint_state(self) -> dict:
        """What a training checkpoint records about this p_0: its kind, not its tensors — the Cholesky factors
        are C·D² floats (377 MB for CIFAR-10), so they live in the run's cache file
        (:mod:`jembench.reference_models.informative_init`) and the generation suite refits them when needed."""
        return {"name": self.name, "image_shape": list(self.image_shape), "n_classes": int(len(self.means)),
                "stored": False}

    def to(self, device: torch.device | str) -> ClassGaussianInit:
        self.means = self.means.to(device)
        self.scale_trils = self.scale_trils.to(device)
        return self

    def sample(self, y: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """x = μ_y + L_y z per image, computed class by class: one (n_c × D)·(D × D) product per class instead
        of gathering a D × D factor per image (38 MB each on CIFAR, D = 3072). One host sync per call: the class
        counts, which size the products."""
        device = torch.device(device)
        if self.means.device != device:
            self.to(device)
        y = y.to(device).long()
        z = torch.randn(len(y), self.means.shape[1], device=device)
        x = self.means[y].clone()
        order = torch.argsort(y, stable=True)
        start = 0
        counts = torch.zeros(len(self.means), dtype=torch.long, device=device).index_add_(0, y, torch.ones_like(y))
        for c, n in enumerate(counts.tolist()):  # (bincount would add a sync on CUDA: it reads y.max() first)
            if n:
                idx = order[start:start + n]
                x[idx] += z[idx] @ self.scale_trils[c].T
                start += n
        return x.clamp(-1, 1).view(len(y), *self.image_shape)


class ReplayBuffer:
    """A fixed-size persistent buffer of SGLD chains (JEM Algorithm 1, lines 4 and 8).

    Chain i carries the label ``i % n_classes``, so class-conditional draws pick chains of the requested
    class (the buffer size is rounded down to a multiple of ``n_classes``). Every tensor lives on the
    model's device; sampling and reinitialisation are done without host synchronisation.
    """

    def __init__(self, size: int, n_classes: int, init: InitialDistribution, device: torch.device | str = "cpu",
                 reinit_freq: float = 0.05):
        if size < n_classes:
            raise ValueError(f"buffer size {size} is smaller than the number of classes {n_classes}")
        if not 0.0 <= reinit_freq <= 1.0:
            raise ValueError(f"reinit_freq must be in [0, 1], got {reinit_freq}")
        from . import memory

        shape = getattr(init, "image_shape", None)
        if shape is None:  # a custom p_0: one draw tells its shape, on a forked RNG (the run's stream is untouched)
            with torch.random.fork_rng(devices=[]):
                shape = init.sample(torch.zeros(1, dtype=torch.long), "cpu").shape[1:]
        memory.require_buffer(size - size % n_classes, tuple(shape), device)
        self.n_classes = n_classes
        self.size = size - size % n_classes
        self.init = init
        self.reinit_freq = reinit_freq
        self.device = torch.device(device)
        self.labels = torch.arange(self.size, device=self.device) % n_classes
        self.images = init.sample(self.labels, self.device)

    def sample(self, n: int, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` chain starts; returns (x0, idx). A share ``reinit_freq`` restarts from p_0."""
        per_class = self.size // self.n_classes
        if y is None:
            idx = torch.randint(0, self.size, (n,), device=self.device)
        else:
            idx = y.to(self.device).long() + self.n_classes * torch.randint(0, per_class, (n,), device=self.device)
        x_buffer = self.images[idx]
        fresh = self.init.sample(self.labels[idx], self.device)
        reinit = (torch.rand(n, device=self.device) < self.reinit_freq).view(n, *([1] * (x_buffer.dim() - 1)))
        return torch.where(reinit, fresh, x_buffer), idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Write the chains' new states back (Algorithm 1, line 8).

        Draws are with replacement, so a chain can appear twice in a batch; the last occurrence wins,
        deterministically (a plain ``images[idx] = x`` leaves the winner to the thread schedule). Every
        duplicate slot is written with the value of its chain's last occurrence, so the write order does not
        matter — and nothing has a data-dependent size, so there is no host synchronisation on a GPU
        (``torch.unique`` would need one).
        """
        idx = idx.to(self.device)
        positions = torch.arange(len(idx), device=self.device)
        last = torch.full((self.size,), -1, dtype=torch.long, device=self.device)
        last.scatter_reduce_(0, idx, positions, reduce="amax", include_self=True)
        self.images[idx] = x.detach()[last[idx]].to(self.images.dtype)

    def state_dict(self) -> dict:
        return {"images": self.images.detach().cpu(), "labels": self.labels.cpu(), "reinit_freq": self.reinit_freq,
                "init": self.init.checkpoint_state()}

    def load_state_dict(self, state: dict) -> None:
        images = state["images"]
        if images.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"buffer images have shape {tuple(images.shape[1:])}, "
                             f"expected {tuple(self.images.shape[1:])}")
        self.images = images.to(self.device).clone()
        self.labels = state["labels"].to(self.device).clone()
        self.size = len(self.images)
        self.reinit_freq = float(state.get("reinit_freq", self.reinit_freq))
