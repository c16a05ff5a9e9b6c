"""foolbox 2's projected-gradient attacks with their binary search over ε, batched over inputs — the attack
JEM's own code runs (wgrathwohl/JEM attack_model.py:223-262).

Hand-written: foolbox 3 (installed) dropped the single-input attacks and their ε search, and torchattacks has no
ε search; neither stops a run at its first adversarial iterate. The arithmetic below follows foolbox 2.x
``foolbox/attacks/iterative_projected_gradient.py`` (bethgelab/foolbox@17bac882; foolbox 1.x is the same
arithmetic under older names) and ``foolbox/attacks/base.py`` / ``foolbox/adversarial.py``:

* **one attack call** (``attack(image, label, unpack=False, random_start=True, iterations=40)``,
  attack_model.py:256) first classifies the clean input once (``Adversarial.__init__``); if that prediction is
  wrong the call returns the clean input at distance 0 without attacking (``call_decorator``). Otherwise:
* **exponential search**: up to ``search_steps`` (k = 20) tries at ε = ε₀ (0.3), 1.5 ε₀, 1.5² ε₀, …, stopping
  at the first successful one (``_run_binary_search``); if none succeeds the call finds nothing;
* **bisection**: k tries at ε = (good + bad) / 2 between bad = 0 and good = the successful ε, moving good down
  on success and bad up on failure;
* every try keeps step / ε fixed (``factor = stepsize / epsilon``: 0.01 / 0.3 = 1/30 for L∞,
  0.05 / 0.3 = 1/6 for L2) and is one PGD run (``_run_one``): a random start x₀ + U(−ε, ε) per entry (clipped
  to the ε-ball but *not* to [0, 1]), then ``iterations`` times: the gradient of the cross-entropy at x, a step
  along sign(∇) (L∞) or ∇ / RMS(∇) (L2), projection back into the ε-ball around x₀ (L∞: per entry; L2: the
  RMS of the perturbation capped at ε), clipping to [0, 1], and a classification of the new point — the run
  stops at the first adversarial one (``return_early``); the random start itself is never classified;
* the call's result is the **smallest-distance adversarial** of all its tries (``Adversarial.__new_adversarial``);
  its distance is foolbox's: L∞ = max |δ| (``distances.Linfinity``) or the **mean squared** perturbation
  (``distances.MeanSquaredDistance``, the L2 variant, attack_model.py:229-231) — not an L2 norm;
* **restarts**: JEM calls the attack 20 times per image and keeps the **last** call's result
  (``adversarial``, attack_model.py:254-262; the best one, ``best_adv``, is computed and never used). A call
  that finds nothing leaves ``.image = None``: with ``keep = "last"`` the input then counts as not broken even
  if an earlier call broke it. ``keep = "best"`` keeps the smallest distance over the calls instead.

All inputs run their own search in lockstep: every round is one batched PGD run at each active input's own ε,
and an input leaves a run at its first adversarial iterate. Randomness comes from torch's RNG (foolbox drew the
start from NumPy's), so individual runs differ from the official ones while following the same distribution.

``model01`` is the attacked model (its gradient is used) and ``verify01`` the one whose predictions decide
"adversarial"; for JEM's protocol both are the same stochastic 5-chain classifier, drawn afresh at every call
(foolbox calls one model for both). Everything is in [0, 1] pixel space (``bounds = (0, 1)``, so foolbox's
scale s = max − min = 1 drops out).
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from . import predict

KEEP = ("last", "best")


@dataclass(frozen=True)
class Foolbox2Config:
    """One foolbox-2 attack as JEM calls it. Defaults: ``RandomStartProjectedGradientDescentAttack.__call__``
    (ε₀ 0.3, stepsize 0.01, binary_search = True → k = 20) with JEM's 40 iterations and 20 restarts."""

    norm: str = "linf"  # linf: RandomStartProjectedGradientDescentAttack; l2: L2BasicIterativeAttack
    iterations: int = 40
    eps_start: float = 0.3
    step_ratio: float = 1 / 30  # stepsize / epsilon, fixed during the search
    growth: float = 1.5
    search_steps: int = 20  # k: exponential tries, then bisection steps
    random_start: bool = True
    restarts: int = 20
    keep: str = "last"

    def __post_init__(self) -> None:
        if self.norm not in ("linf", "l2"):
            raise ValueError(f"unknown norm {self.norm!r}; use linf or l2")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {KEEP}, got {self.keep!r}")


@dataclass
class Foolbox2Outcome:
    """Per input: ``distance`` — foolbox's distance of the kept adversarial (L∞, or MSE for L2; ``inf`` = none
    found, 0 = the clean check of the kept call misclassified), ``norm_distance`` — the same perturbation's
    L∞ or L2 norm in [0, 1] units, ``adv`` — the kept adversarial (the input itself where none), and the work
    done: ``tries`` (batched PGD runs) and ``iterations`` (PGD steps summed over inputs)."""

    distance: torch.Tensor
    norm_distance: torch.Tensor
    adv: torch.Tensor
    tries: int = 0
    iterations: int = 0

    @property
    def found(self) -> torch.Tensor:
        return torch.isfinite(self.distance)


def _per_input(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).pow(2).mean(1).sqrt()


def clip_perturbation(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """``LinfinityClippingMixin`` / ``L2ClippingMixin``: per entry to [−ε, ε], or scale so RMS(δ) ≤ ε."""
    e = _per_input(eps, delta)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    factor = torch.clamp(eps.to(delta.dtype) / _rms(delta).clamp(min=1e-12), max=1.0)
    return delta * _per_input(factor, delta)


def foolbox_distance(x01: torch.Tensor, adv01: torch.Tensor, norm: str) -> torch.Tensor:
    """foolbox's distance value: ``Linfinity`` (max |δ|) or ``MeanSquaredDistance`` (mean δ²), bounds (0, 1)."""
    diff = (adv01 - x01).flatten(1).double()
    return diff.abs().amax(1) if norm == "linf" else diff.pow(2).mean(1)


def _ce_gradient(model01: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂ CE(model(x), y) / ∂x per input (``PyTorchModel.gradient``: the loss of each image on its own)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model01(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """``LinfinityGradientMixin``: sign(∇); ``L2GradientMixin``: ∇ / RMS(∇) (RMS 0 → a zero step)."""
    if norm == "linf":
        return grad.sign()
    rms = _rms(grad)
    return grad / _per_input(torch.where(rms > 0, rms, torch.ones_like(rms)), grad)


def pgd_try(model01: nn.Module, verify01: nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
            cfg: Foolbox2Config) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One ``_run_one`` per input at its own ε (``eps``, (n,)): returns (success mask, the first adversarial
    iterate of each successful input, PGD steps summed over inputs)."""
    step = cfg.step_ratio * eps
    if cfg.random_start:
        noise = (torch.rand_like(x01) * 2 - 1) * _per_input(eps, x01)
        x = x01 + clip_perturbation(noise, eps, cfg.norm)  # not clipped to the bounds (strict=False)
    else:
        x = x01.clone()
    success = torch.zeros(len(x01), dtype=torch.bool, device=x01.device)
    adv = x01.clone()
    active = torch.arange(len(x01), device=x01.device)
    steps = 0
    for _ in range(cfg.iterations):
        if len(active) == 0:
            break
        steps += len(active)
        active = pgd_step(model01, verify01, x01, y, step, eps, active, x, success, adv, cfg.norm)
    return success, adv, steps


def pgd_step(model01: nn.Module, verify01: nn.Module, x01: torch.Tensor, y: torch.Tensor, step: torch.Tensor,
             eps: torch.Tensor, active: torch.Tensor, x: torch.Tensor, success: torch.Tensor, adv: torch.Tensor,
             norm: str) -> torch.Tensor:
    """One PGD iteration of the ``active`` inputs (a step, the projection, the clip to [0, 1], the
    classification): ``x``, ``success`` and ``adv`` are updated in place; returns the inputs still active (those
    not yet adversarial). One host sync: the number of inputs left, which sizes the next batch."""
    x0, xa, ea = x01[active], x[active], eps[active]
    xa = xa + _per_input(step[active], xa) * _direction(_ce_gradient(model01, xa, y[active]), norm)
    xa = (x0 + clip_perturbation(xa - x0, ea, norm)).clamp(0, 1)
    fooled = predict(verify01, xa, batch_size=len(xa)) != y[active]
    x[active] = xa
    success[active] = fooled  # active inputs had not succeeded before
    adv[active] = torch.where(fooled.view(-1, *([1] * (xa.dim() - 1))), xa, adv[active])
    return active[~fooled]


def attack_call(model01: nn.Module, verify01: nn.Module, x01: torch.Tensor, y: torch.Tensor,
                cfg: Foolbox2Config) -> Foolbox2Outcome:
    """One foolbox attack call per input (clean check, exponential search, bisection), batched."""
    n, dev = len(x01), x01.device
    best = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
    adv = x01.clone()
    clean_fooled = predict(verify01, x01, batch_size=n) != y  # Adversarial.__init__: distance 0, not attacked
    best[clean_fooled] = 0.0
    exp_phase, bisect_phase, done = 0, 1, 2
    phase = torch.where(clean_fooled | (cfg.search_steps == 0), done, exp_phase)  # k = 0: no try at all
    eps = torch.full((n,), float(cfg.eps_start), dtype=torch.float64, device=dev)
    count = torch.zeros(n, dtype=torch.long, device=dev)
    good = torch.zeros(n, dtype=torch.float64, device=dev)
    bad = torch.zeros(n, dtype=torch.float64, device=dev)
    tries = iterations = 0
    while bool((phase != done).any()):
        idx = (phase != done).nonzero().flatten()
        ok, found, steps = pgd_try(model01, verify01, x01[idx], y[idx], eps[idx], cfg)
        tries, iterations = tries + 1, iterations + steps
        dist = foolbox_distance(x01[idx], found, cfg.norm)
        better = ok & (dist < best[idx])
        best[idx[better]] = dist[better]
        adv[idx[better]] = found[better]
        in_exp = phase[idx] == exp_phase
        # exponential phase: success → bisect between 0 and this ε; failure → ε × growth, k failures → give up
        start = idx[in_exp & ok]
        phase[start], good[start], bad[start], count[start] = bisect_phase, eps[start], 0.0, 0
        grow = idx[in_exp & ~ok]
        count[grow] += 1
        eps[grow] *= cfg.growth
        phase[grow[count[grow] >= cfg.search_steps]] = done
        # bisection phase: success → good = ε, failure → bad = ε; k steps in all
        bis = idx[~in_exp]
        hit = ok[~in_exp]
        good[bis[hit]] = eps[bis[hit]]
        bad[bis[~hit]] = eps[bis[~hit]]
        count[bis] += 1
        phase[bis[count[bis] >= cfg.search_steps]] = done
        nxt = (phase == bisect_phase).nonzero().flatten()
        eps[nxt] = (good[nxt] + bad[nxt]) / 2
    return Foolbox2Outcome(distance=best, norm_distance=_norm_of(x01, adv, best, cfg.norm), adv=adv,
                           tries=tries, iterations=iterations)


def _norm_of(x01: torch.Tensor, adv01: torch.Tensor, distance: torch.Tensor, norm: str) -> torch.Tensor:
    diff = (adv01 - x01).flatten(1).double()
    value = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    return torch.where(torch.isfinite(distance), value, torch.full_like(value, float("inf")))


def keep_restart(kept: Foolbox2Outcome | None, new: Foolbox2Outcome, keep: str) -> Foolbox2Outcome:
    """The restart rule: ``last`` — JEM's ``adversarial = attack(...)`` overwritten by every call
    (attack_model.py:254-262), whatever that call found; ``best`` — the smaller distance per input."""
    if kept is None or keep == "last":
        return new
    better = new.distance < kept.distance
    kept.distance[better] = new.distance[better]
    kept.norm_distance[better] = new.norm_distance[better]
    kept.adv[better] = new.adv[better]
    return kept


def foolbox2_attack(model01: nn.Module, verify01: nn.Module, x01: torch.Tensor, y: torch.Tensor,
                    cfg: Foolbox2Config) -> Foolbox2Outcome:
    """``cfg.restarts`` attack calls per input; keep the last call's result (JEM) or the best one."""
    kept: Foolbox2Outcome | None = None
    tries = iterations = 0
    for _ in range(max(1, cfg.restarts)):
        out = attack_call(model01, verify01, x01, y, cfg)
        tries, iterations = tries + out.tries, iterations + out.iterations
        kept = keep_restart(kept, out, cfg.keep)
    assert kept is not None
    kept.tries, kept.iterations = tries, iterations
    return kept
