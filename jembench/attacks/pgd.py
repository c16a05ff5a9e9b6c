"""White-box PGD (Madry et al. 2018) at a fixed ε through torchattacks: L∞ (``PGD``), L2 (``PGDL2``) and the
EOT variant (``EOTPGD``, gradients averaged over ``eot_iter`` calls of a stochastic model; L∞ only).

JEM App. F runs PGD with 20 random restarts × 100 iterations; SADA-JEM's refinement attack uses 50 steps of
2/255 at ε = 8/255 with a random start. torchattacks returns the *last* iterate of one run and has no restarts,
so :func:`pgd` adds them (hand-written, a loop): an input leaves the batch as soon as a restart's adversarial is
verified, and for the inputs never broken the restart with the highest verified loss is kept. Verification uses
a separate classifier (for a stochastic refinement: the logits averaged over many fresh draws), so a lucky
draw during the attack does not count as a success.

:func:`pgd_any_iterate` is SADA-JEM's bookkeeping (bpda_eot_attack.py:211-279): the same torchattacks run, but
an input is broken as soon as *any* evaluated iterate is misclassified — the random start, every iterate
torchattacks takes a gradient at, and the final one. :class:`IterateRecorder` reads those predictions off the
forward passes torchattacks makes anyway (no extra queries but the final one).

Everything here is in [0, 1] pixel space (see :mod:`jembench.attacks`): ``model01`` is a
:class:`~jembench.attacks.PixelSpace` wrapper, ε and the step size are in [0, 1] units.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

from . import distances


@dataclass(frozen=True)
class PGDConfig:
    """One PGD attack at a fixed ε: ``step_size`` is relative (α = step_size · ε, as 2/255 is 1/4 of 8/255)."""

    norm: str = "linf"
    steps: int = 100
    step_size: float = 0.025  # α/ε; 2.5/steps is Madry et al.'s rule
    restarts: int = 20
    random_start: bool = True
    eot_iter: int = 1  # > 1: torchattacks.EOTPGD (gradient-averaged EOT; L∞ only)
    alpha: float = 0.0  # > 0: an absolute step in [0, 1] units, whatever ε (SADA-JEM: 2/255); 0 = step_size · ε

    def alpha_at(self, eps: float) -> float:
        return self.alpha if self.alpha > 0 else self.step_size * eps


@dataclass
class AttackOutcome:
    """Per input: whether a verified adversarial was found, the kept adversarial ([0, 1] pixels) and its
    distance to the input in the attack's norm ([0, 1] units, capped at ε; ``inf`` when none was found)."""

    success: torch.Tensor
    adv: torch.Tensor
    distance: torch.Tensor


def make_attack(model01: nn.Module, eps: float, cfg: PGDConfig) -> torchattacks.attack.Attack:
    """The torchattacks object for one run (torchattacks puts ``model01`` into eval mode)."""
    alpha = cfg.alpha_at(eps)
    if cfg.norm == "linf":
        if cfg.eot_iter > 1:
            return torchattacks.EOTPGD(model01, eps=eps, alpha=alpha, steps=cfg.steps, eot_iter=cfg.eot_iter,
                                       random_start=cfg.random_start)
        return torchattacks.PGD(model01, eps=eps, alpha=alpha, steps=cfg.steps, random_start=cfg.random_start)
    if cfg.norm == "l2":
        if cfg.eot_iter > 1:
            raise ValueError("torchattacks has no L2 EOT PGD; average logits over draws (eot_mode = 'logits')")
        return torchattacks.PGDL2(model01, eps=eps, alpha=alpha, steps=cfg.steps, random_start=cfg.random_start)
    raise ValueError(f"unknown norm {cfg.norm!r}; use linf or l2")


def pgd(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: float, cfg: PGDConfig,
        verify: Callable[[torch.Tensor], torch.Tensor]) -> AttackOutcome:
    """PGD at ε with ``cfg.restarts`` restarts on [0, 1] images ``x01`` with labels ``y``.

    ``verify(adv01) -> logits`` decides success (prediction ≠ y for a perturbed input). ε = 0 runs no attack
    and finds nothing. One host sync per restart (which inputs are still unbroken, :func:`_restart`); none in
    torchattacks' iterations.
    """
    n = len(x01)
    best = x01.clone()
    with torch.no_grad():
        best_loss = F.cross_entropy(verify(x01), y, reduction="none")
    # success needs a real perturbation: a clean input misclassified by one stochastic draw is not an attack
    # success (inputs misclassified when clean are the caller's business, at distance 0)
    success = torch.zeros(n, dtype=torch.bool, device=x01.device)
    if eps > 0:
        for _ in range(max(1, cfg.restarts)):
            if not _restart(model01, x01, y, eps, cfg, verify, best, best_loss, success):
                break
    # a perturbation clipped to the ε-ball can measure ε + 1e-8 in float32: cap it, it is within budget
    dist = torch.where(success, distances(x01, best, cfg.norm).clamp(max=eps), float("inf"))
    return AttackOutcome(success=success, adv=best, distance=dist)


def _restart(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: float, cfg: PGDConfig,
             verify: Callable[[torch.Tensor], torch.Tensor], best: torch.Tensor, best_loss: torch.Tensor,
             success: torch.Tensor) -> bool:
    """One restart on the inputs not yet broken, updating ``best`` / ``best_loss`` / ``success`` in place (an
    adversarial, or a higher verified loss, replaces the kept point). Returns False when no input was left (no
    attack run). One host sync: the indices of the unbroken inputs (their number sizes the batch)."""
    todo = (~success).nonzero().flatten()
    if len(todo) == 0:
        return False
    adv = run_attack(make_attack(model01, eps, cfg), x01[todo], y[todo])
    with torch.no_grad():
        logits = verify(adv)
    fooled = (logits.argmax(1) != y[todo]) & (distances(x01[todo], adv, cfg.norm) > 0)
    loss = F.cross_entropy(logits, y[todo], reduction="none")
    better = fooled | (loss > best_loss[todo])
    best[todo] = torch.where(better.view(-1, *([1] * (adv.dim() - 1))), adv, best[todo])
    best_loss[todo] = torch.where(better, loss, best_loss[todo])
    success[todo] = fooled  # the inputs of this restart had not succeeded before
    return True


def run_attack(attack: torchattacks.attack.Attack, x01: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One torchattacks run (all its iterations), detached: the attacks' inner loop, without host syncs."""
    return attack(x01, y).detach()


class IterateRecorder(nn.Module):
    """The attacked model, recording for every forward call which inputs it misclassifies, and the points.

    torchattacks' PGD classifies each iterate it takes a gradient at — the random start and the iterates after
    steps 1 … steps − 1 — so the recorder sees SADA-JEM's per-step ``correct`` (bpda_eot_attack.py:200-209,
    223-225) for free. Hand-written: torchattacks has no per-iterate hook.
    """

    def __init__(self, model01: nn.Module, y: torch.Tensor):
        super().__init__()
        self.model = model01
        self.y = y
        self.fooled: list[torch.Tensor] = []
        self.points: list[torch.Tensor] = []

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        logits = self.model(x01)
        # every iterate is kept whole (steps + 1 copies of the batch): picking the misclassified rows here would
        # cost a host sync per PGD step
        self.fooled.append((logits.argmax(1) != self.y).detach())
        self.points.append(x01.detach().clone())
        return logits


@dataclass
class IterateOutcome:
    """Per input: ``broken`` (some evaluated iterate was misclassified and, for a stochastic model, verified),
    ``first`` — the index of the first such iterate (0 = the random start, ``steps`` = the final iterate; −1 =
    never), ``adv`` — that iterate (the input itself where none), ``distance`` — its norm in [0, 1] units
    (``inf`` where none), and ``evaluated`` — how many iterates were classified (steps + 1)."""

    broken: torch.Tensor
    first: torch.Tensor
    adv: torch.Tensor
    distance: torch.Tensor
    evaluated: int


def pgd_any_iterate(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, eps: float, cfg: PGDConfig,
                    verify: Callable[[torch.Tensor], torch.Tensor] | None = None) -> IterateOutcome:
    """One torchattacks PGD run at ε; an input is broken at the first evaluated iterate its prediction is wrong.

    SADA-JEM's loop (bpda_eot_attack.py:228-279): ``defended`` starts as clean correctness (the caller's) and is
    ANDed with correctness at the random start (step 0), after each of the first ``steps − 1`` updates and,
    without a gradient, after the last one (step ``steps``): ``steps + 1`` evaluations in all. With ``verify``
    (a stochastic classifier), a misclassified iterate counts only if ``verify`` misclassifies it too — the
    official ``eot_defense_verification`` (:182-188), which its shipped json never reaches (langevin_steps 0).
    ``restarts`` is not used (the official attack has none).
    """
    n = len(x01)
    recorder = IterateRecorder(model01, y).eval()
    final = run_attack(make_attack(recorder, eps, dataclasses.replace(cfg, eot_iter=1)), x01, y)
    with torch.no_grad():
        recorder(final)  # the final evaluation (eval_and_attack_grad at step == adv_steps, :218-220)
    broken = torch.zeros(n, dtype=torch.bool, device=x01.device)
    first = torch.full((n,), -1, dtype=torch.long, device=x01.device)
    adv = x01.clone()
    for step, (fooled, points) in enumerate(zip(recorder.fooled, recorder.points)):
        rows = (fooled & ~broken).nonzero().flatten()
        points = points[rows]
        if verify is not None and len(rows):
            with torch.no_grad():
                confirmed = verify(points).argmax(1) != y[rows]
            rows, points = rows[confirmed], points[confirmed]
        broken[rows] = True
        first[rows] = step
        adv[rows] = points
    distance = torch.where(broken, distances(x01, adv, cfg.norm).clamp(max=eps), float("inf"))
    return IterateOutcome(broken=broken, first=first, adv=adv, distance=distance, evaluated=len(recorder.fooled))
