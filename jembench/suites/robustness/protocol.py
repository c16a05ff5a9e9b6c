"""The robustness protocol: the settings of one robustness evaluation, torch-free (:mod:`jembench.schema`).

Defaults = the paper setting; ``suites/robustness.toml`` documents every field::

    n, selection, input_seed, batch_size
    [refine]        steps (list of K), eot_attack, eot_defense, eot_mode, bpda, input_noise
    [refine.sgld]   step_size, noise, grad_clamp, x_clamp (a :class:`jembench.sgld_config.SGLDConfig`; K = n_steps)
    [pgd]           enabled, norms, steps, step_size (α/ε), alpha (absolute α), restarts, random_start, search,
                    success, keep, search_steps, search_start, search_growth, linf_eps, l2_eps
    [boundary]      enabled, steps, max_queries, max_seconds
    [pointwise]     enabled, l2_binary_search, max_queries, max_seconds
    [start]         pool, candidates

This module imports no torch: records, leaderboards and ``check`` read robustness protocols through it, and the
command line checks a protocol file before torch is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ...metric_keys import NORMS
from ...limits import MAX_BATCH, MAX_EOT, MAX_EPS, MAX_IMAGES, MAX_SGLD_STEPS, MAX_SIGMA
from ...schema import Invalid, setting
from ...sgld_config import SGLDConfig


def parse_number(value: Any, what: str = "a number", example: str = "1/30") -> float:
    """A finite number >= 0, written as a number or a fraction string such as ``"1/30"``."""
    try:
        number = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValueError(f"is not {what}; write a number or a fraction like \"{example}\"") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(f"must be a finite number >= 0 ({what})")
    return number


def parse_eps(value: Any) -> float:
    """An ε in [0, 1] pixel units: a number or a fraction string such as ``"8/255"``."""
    return parse_number(value, "an ε in [0, 1] pixel units", "8/255")


def _sorted_unique(obj: Any, name: str) -> None:
    object.__setattr__(obj, name, tuple(sorted(set(getattr(obj, name)))))


@dataclass(frozen=True)
class Refinement:
    """``[refine]``: the classifier attacked, x → K SGLD steps seeded at x → logits (JEM §5.4)."""

    steps: tuple[int, ...] = setting((0, 1, 10), ge=0, le=MAX_SGLD_STEPS, nonempty=True,
                                     help="the K values (JEM Fig. 5)")
    sgld: SGLDConfig = setting(SGLDConfig(n_steps=0, step_size=1.0, noise=0.01), omit=("n_steps",),
                               help="[refine.sgld]: the SGLD steps (K comes from steps)")
    eot_attack: int = setting(15, ge=1, le=MAX_EOT, help="EOT draws the attacker averages (SADA-JEM: 15)")
    eot_defense: int = setting(150, ge=1, le=MAX_EOT,
                                help="draws that classify clean inputs and verify adversarials")
    eot_mode: str = setting("logits", choices=("logits", "gradients"), help="average logits or gradients")
    bpda: bool = setting(False, help="identity Jacobian for the refinement (BPDA) instead of exact gradients")
    input_noise: float = setting(0.0, ge=0, le=MAX_SIGMA,
                                 help="σ of N(0, σ²) added to each draw's copy of the input before the SGLD "
                                      "steps, [-1, 1] units (JEM attack_model.py --sigma)")

    def __post_init__(self) -> None:
        _sorted_unique(self, "steps")

    def at(self, k: int) -> SGLDConfig:
        """The SGLD settings of the refinement with K = ``k`` steps."""
        return dataclasses.replace(self.sgld, n_steps=k)

    def stochastic_at(self, k: int) -> bool:
        return self.at(k).stochastic or self.input_noise > 0


SEARCHES = ("bisect", "grid", "foolbox2")
#: which test images are attacked, in which order (:func:`jembench.attacks.inputs.select` draws them)
SELECTIONS = ("random", "first", "sadajem-loader")
SUCCESS = ("final", "any_iterate")


@dataclass(frozen=True)
class PGDSettings:
    """``[pgd]``: white-box PGD — through torchattacks (``search`` bisect / grid) or foolbox 2's binary search
    over ε, hand-written (``search = "foolbox2"``, :mod:`jembench.attacks.foolbox2`)."""

    enabled: bool = setting(True)
    norms: tuple[str, ...] = setting(NORMS, choices=NORMS, nonempty=True)
    steps: int = setting(100, ge=1, le=100_000, help="iterations per run (JEM App. F: 100)")
    restarts: int = setting(20, ge=1, le=1000, help="random restarts per ε (JEM App. F: 20)")
    step_size: float = setting(0.025, gt=0, le=100, convert=parse_number, help="step α as a fraction of ε")
    alpha: float = setting(0.0, ge=0, le=MAX_EPS, convert=parse_eps,
                           help="an absolute step α in [0, 1] units whatever ε (SADA-JEM: 2/255); 0 = step_size·ε")
    random_start: bool = setting(True)
    search: str = setting("bisect", choices=SEARCHES,
                          help="bisect: the ε grid, then bisection of each input's bracket; grid: every ε on its own "
                               "(one official run per ε); foolbox2: foolbox 2's exponential + bisection search")
    success: str = setting("final", choices=SUCCESS,
                           help="final: the returned iterate, verified; any_iterate: any evaluated iterate")
    keep: str = setting("best", choices=("best", "last"),
                        help="over restarts: best = broken by any (smallest distance); last = the last restart's "
                             "result (foolbox2 only: JEM attack_model.py:254-262)")
    search_steps: int = setting(10, ge=0, le=100, help="bisect: bisections of each input's ε bracket after the grid; "
                                               "foolbox2: k, the cap on exponential tries and the bisection steps")
    search_start: float = setting(0.3, gt=0, le=MAX_EPS, convert=parse_eps,
                                  help="foolbox2: the first ε of the exponential search (foolbox: 0.3)")
    search_growth: float = setting(1.5, gt=1, le=100, help="foolbox2: ε × growth after each failed try (foolbox: 1.5)")
    linf_eps: tuple[float, ...] = setting((0.0, *(e / 255 for e in (1, 2, 4, 8, 12, 16, 22, 30))), le=1,
                                          convert=parse_eps,
                                          help="L∞ ε grid, [0, 1] pixel units (JEM Fig. 5a range)")
    l2_eps: tuple[float, ...] = setting((0.0, 0.25, 0.5, 1.0, 1.5, 2.0), le=MAX_EPS, convert=parse_eps,
                                        help="L2 ε grid, [0, 1] pixel units (JEM Fig. 5b range)")

    def __post_init__(self) -> None:
        for name in ("linf_eps", "l2_eps"):
            _sorted_unique(self, name)

    def eps_grid(self, norm: str) -> tuple[float, ...]:
        return self.linf_eps if norm == "linf" else self.l2_eps


@dataclass(frozen=True)
class QueryLimits:
    """Budgets of a decision-based attack (:mod:`jembench.attacks.budget`); 0 = unlimited."""

    max_queries: int = setting(0, ge=0, le=10**9,
                               help="model queries per input; the attack stops at the first one past it")
    max_seconds: float = setting(0.0, ge=0, le=7 * 86400,
                                 help="wall time per unit (machine-dependent: prefer max_queries)")


@dataclass(frozen=True)
class BoundarySettings(QueryLimits):
    """``[boundary]``: foolbox BoundaryAttack (L2) from a top-2-class starting point."""

    enabled: bool = setting(True)
    steps: int = setting(25000, ge=1, le=10**7, help="iterations (foolbox's default; 2 queries each)")


@dataclass(frozen=True)
class PointwiseSettings(QueryLimits):
    """``[pointwise]``: foolbox PointwiseAttack (L0, then L2 binary search)."""

    enabled: bool = setting(True)
    l2_binary_search: bool = setting(True)


@dataclass(frozen=True)
class StartSettings:
    """``[start]``: starting points of the gradient-free attacks (a correctly classified top-2-class image)."""

    pool: int = setting(0, ge=0, le=MAX_IMAGES, help="test images searched for them; 0 = the whole test split")
    candidates: int = setting(10, ge=1, le=10_000, help="nearest top-2-class images tried per input")


@dataclass(frozen=True)
class Unit:
    """One work unit: attack ``attack`` at K = ``k`` on block ``block`` of ``batch_size`` inputs."""

    k: int
    attack: str
    block: int

    @property
    def key(self) -> str:
        return f"k{self.k}/{self.attack}/b{self.block}"


@dataclass(frozen=True)
class RobustnessProtocol:
    """The robustness protocol; defaults = the paper setting (see ``suites/robustness.toml``)."""

    n: int = setting(300, ge=1, le=MAX_IMAGES, help="test inputs attacked (JEM App. F: 300)")
    selection: str = setting("random", choices=SELECTIONS,
                             help="random: seeded subset; first: the first n in order (JEM attack_model.py); "
                                  "sadajem-loader: SADA-JEM's shuffled loader (bpda_eot_attack.py)")
    input_seed: int = setting(0, ge=0, le=2**63 - 1,
                              help="seed choosing those inputs (random, sadajem-loader) and the start-point pool")
    batch_size: int = setting(50, ge=1, le=MAX_BATCH, help="inputs per work unit")
    refine: Refinement = setting(Refinement())
    pgd: PGDSettings = setting(PGDSettings())
    boundary: BoundarySettings = setting(BoundarySettings())
    pointwise: PointwiseSettings = setting(PointwiseSettings())
    start: StartSettings = setting(StartSettings())

    def validate(self) -> None:
        if self.refine.eot_mode == "gradients" and "l2" in self.pgd.norms and self.pgd.enabled \
                and (self.refine.sgld.noise > 0 or self.refine.input_noise > 0):
            raise Invalid("refine.eot_mode = 'gradients' uses torchattacks.EOTPGD, which is L∞ only; use "
                          "eot_mode = 'logits' or drop 'l2' from pgd.norms")
        if self.pgd.enabled:
            for norm in self.pgd.norms:
                if not any(e > 0 for e in self.pgd.eps_grid(norm)):
                    raise Invalid(f"pgd.{norm}_eps needs at least one ε > 0, e.g. [0, \"8/255\"]")
            if self.pgd.search == "foolbox2" and self.pgd.success != "any_iterate":
                raise Invalid("pgd.search = 'foolbox2' stops each run at its first adversarial iterate; set "
                              "pgd.success = 'any_iterate'")
            if self.pgd.search == "foolbox2" and self.pgd.search_steps < 1:
                raise Invalid("pgd.search = 'foolbox2' needs pgd.search_steps >= 1 (foolbox: 20)")
            if self.pgd.keep == "last" and self.pgd.search != "foolbox2":
                raise Invalid("pgd.keep = 'last' is foolbox 2's restart rule; use it with pgd.search = 'foolbox2'")
            if self.pgd.success == "any_iterate" and self.pgd.search != "foolbox2" \
                    and self.refine.eot_mode == "gradients":
                raise Invalid("pgd.success = 'any_iterate' reads predictions off torchattacks' PGD forward passes; "
                              "use refine.eot_mode = 'logits'")
        if not self.attacks():
            raise Invalid("every attack is disabled; enable [pgd], [boundary] or [pointwise]")

    def blocks(self, n: int) -> list[range]:
        """The input positions of each block of ``batch_size`` among ``n`` attacked inputs."""
        return [range(b * self.batch_size, min(n, (b + 1) * self.batch_size))
                for b in range(math.ceil(n / self.batch_size))]

    def units(self, n: int) -> list[Unit]:
        """Every work unit of an evaluation of ``n`` inputs, in the canonical order (K, attack, block)."""
        return [Unit(k, attack, b) for k in self.refine.steps for attack in self.attacks()
                for b in range(len(self.blocks(n)))]

    def attacks(self) -> list[str]:
        names = [f"pgd-{norm}" for norm in self.pgd.norms] if self.pgd.enabled else []
        return names + (["boundary"] if self.boundary.enabled else []) + (
            ["pointwise"] if self.pointwise.enabled else [])
