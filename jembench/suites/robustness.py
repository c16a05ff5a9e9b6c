"""Robustness suite: adversarial robustness of the SGLD-refined classifier (JEM §5.4, Fig. 5; App. F, Fig. 10).

For every refinement depth K (JEM: 0, 1, 10 SGLD steps seeded at the input) the classifier
x → SGLD_K(x) → logits (:class:`jembench.refine.RefinedClassifier`) is attacked

* white-box with PGD, L∞ and L2, with gradients through the refinement (or BPDA), EOT for stochastic
  refinement and restarts, in one of three ways (``pgd.search``): ``bisect`` — torchattacks at every ε of a grid,
  then a per-input binary search for the minimal ε (:mod:`jembench.attacks.pgd`, :mod:`jembench.attacks.search`);
  ``grid`` — every ε on its own (SADA-JEM's one run per ε); ``foolbox2`` — foolbox 2's exponential + bisection
  ε search per input with JEM's restart rule (:mod:`jembench.attacks.foolbox2`) → robustness–distortion curves
  (Fig. 5). ``pgd.success`` says what breaks an input: the returned iterate (``final``) or any evaluated iterate
  (``any_iterate``, SADA-JEM; foolbox 2 stops each run at its first adversarial iterate);
* decision-based with foolbox's BoundaryAttack (L2) and PointwiseAttack (L0), started from a correctly
  classified input of the top-2 class (:mod:`jembench.attacks.gradient_free`), under per-input query and per-unit
  time budgets (:mod:`jembench.attacks.budget`) → accuracy vs distance (Fig. 10).

An adversarial counts only when a fresh ``eot_defense``-draw classifier (logits averaged) misclassifies it
(decision-based adversarials that do not verify are moved back towards their starting point until they do,
:func:`jembench.attacks.gradient_free.verified_along_line`; ``details`` counts them as ``unverified``).
ε and distances are in [0, 1] pixel units (8/255, 0.5 L2); images cross from [-1, 1] once
(:mod:`jembench.attacks`). The attacked images: a seeded random subset, the first ``n`` in order (JEM's code) or
SADA-JEM's shuffled-loader order (``selection``, :mod:`jembench.attacks.inputs`).

Protocols: ``suites/robustness.toml`` (the papers' text generalised — neither paper's code),
``robustness-jem-official.toml`` / ``-jem-official-l2.toml`` (JEM's attack_model.py), ``robustness-sadajem-official``
(SADA-JEM's bpda_eot_attack.py as shipped), ``robustness-cpu.toml`` (32×32 models on a CPU), ``robustness-tiny``.

Work is split into units (K, attack, block of ``batch_size`` inputs). Every unit is seeded from (seed, K,
attack, block), so its result depends on the inputs' global positions only — never on which rank ran it or in
what order. Under ``torchrun`` the units are shared among ranks and gathered into one record equal to the
single-process one. After each unit its result is saved (atomically) to ``<record stem>.partial.<protocol
hash>.json`` (rank r > 0: ``….rank<r>.json``) with the checkpoint SHA-256, seed and dataset; a rerun of the same
protocol to the same record resumes from there, another protocol's partial work is left alone, and the files are
deleted once the record is complete (exact names throughout: a record may be called ``r[1].json``). Progress:
a bar per unit and one inside it (PGD steps / attack queries) on a terminal, one line per finished unit
otherwise (:mod:`jembench.progress`).

Protocol (:class:`RobustnessProtocol`; ``suites/robustness.toml`` documents every field)::

    n, selection, input_seed, batch_size
    [refine]        steps (list of K), eot_attack, eot_defense, eot_mode, bpda, input_noise
    [refine.sgld]   step_size, noise, grad_clamp, x_clamp (a :class:`jembench.sampling.SGLDConfig`; K = n_steps)
    [pgd]           enabled, norms, steps, step_size (α/ε), alpha (absolute α), restarts, random_start, search,
                    success, keep, search_steps, search_start, search_growth, linf_eps, l2_eps
    [boundary]      enabled, steps, max_queries, max_seconds
    [pointwise]     enabled, l2_binary_search, max_queries, max_seconds
    [start]         pool, candidates

Metric keys (:mod:`jembench.metric_keys`): ``clean_acc/k<K>``, ``robust_acc/<norm>/k<K>/eps=<ε %g>`` (%),
``boundary/median_l2/k<K>``, ``pointwise/median_l0/k<K>`` (median over all inputs: 0 when misclassified clean,
``inf`` when more than half resisted). ``details`` holds per-input minimal ε / distances (``None`` = no
adversarial found; ``search = "grid"`` also each ε's own robust flags, ``robust_at``, from which its
``robust_acc`` comes; ``foolbox2`` also foolbox's own distance, MSE for L2, and the skipped inputs), per-input
"no starting point" flags, queries and budget stops of the decision-based attacks, the Wilson standard error
(z = 1, :func:`jembench.sampling_error.wilson_se`) of every accuracy (``sampling_error``, percentage points; for
people reading the record: ``check`` derives its errors from ``n`` itself), and forward-pass counts (images
through the network: every SGLD step, EOT draw, restart, search step and verification counts one per image).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tabulate import tabulate

from .. import atomic, distributed, metric_keys
from .. import progress
from ..attacks import NORMS, PixelSpace, distances, logits_of, to_pixels
from ..attacks.budget import QueryBudget, run_with_budget
from ..attacks.foolbox2 import Foolbox2Config, foolbox2_attack
from ..attacks.gradient_free import (boundary_attack, checked_starting_points, pointwise_attack, top2_candidates,
                                     verified_along_line)
from ..attacks.inputs import SELECTIONS, select
from ..attacks.pgd import PGDConfig, pgd, pgd_any_iterate
from ..attacks.search import minimal_eps
from ..figures import robustness_figures
from ..data import load_dataset, stack_dataset
from ..records import make_record
from ..sampling_error import wilson_se
from ..metric_keys import NORM_LABELS
from ..refine import ForwardCounter, QuenchedNoise, RefinedClassifier, fixed_rng
from ..sampling import SGLDConfig
from ..schema import Invalid, setting
from . import EvalContext

NAME = "robustness"
PARTIAL_SCHEMA = "jembench-robustness-partial/1"


# ------------------------------------------------------------------------------------------- the protocol
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

    steps: tuple[int, ...] = setting((0, 1, 10), ge=0, nonempty=True, help="the K values (JEM Fig. 5)")
    sgld: SGLDConfig = setting(SGLDConfig(n_steps=0, step_size=1.0, noise=0.01), omit=("n_steps",),
                               help="[refine.sgld]: the SGLD steps (K comes from steps)")
    eot_attack: int = setting(15, ge=1, help="EOT draws the attacker averages (SADA-JEM: 15)")
    eot_defense: int = setting(150, ge=1, help="draws that classify clean inputs and verify adversarials")
    eot_mode: str = setting("logits", choices=("logits", "gradients"), help="average logits or gradients")
    bpda: bool = setting(False, help="identity Jacobian for the refinement (BPDA) instead of exact gradients")
    input_noise: float = setting(0.0, ge=0, help="σ of N(0, σ²) added to each draw's copy of the input before "
                                                 "the SGLD steps, [-1, 1] units (JEM attack_model.py --sigma)")

    def __post_init__(self) -> None:
        _sorted_unique(self, "steps")

    def at(self, k: int) -> SGLDConfig:
        """The SGLD settings of the refinement with K = ``k`` steps."""
        return dataclasses.replace(self.sgld, n_steps=k)

    def stochastic_at(self, k: int) -> bool:
        return self.at(k).stochastic or self.input_noise > 0

    def classifier(self, base: torch.nn.Module, k: int, draws: int, bpda: bool = False) -> RefinedClassifier:
        """The refined classifier with K = ``k`` averaging ``draws`` draws' logits."""
        return RefinedClassifier(base, self.at(k), n_draws=draws, bpda=bpda, input_noise=self.input_noise)


SEARCHES = ("bisect", "grid", "foolbox2")
SUCCESS = ("final", "any_iterate")


@dataclass(frozen=True)
class PGDSettings:
    """``[pgd]``: white-box PGD — through torchattacks (``search`` bisect / grid) or foolbox 2's binary search
    over ε, hand-written (``search = "foolbox2"``, :mod:`jembench.attacks.foolbox2`)."""

    enabled: bool = setting(True)
    norms: tuple[str, ...] = setting(NORMS, choices=NORMS, nonempty=True)
    steps: int = setting(100, ge=1, help="iterations per run (JEM App. F: 100)")
    restarts: int = setting(20, ge=1, help="random restarts per ε (JEM App. F: 20)")
    step_size: float = setting(0.025, gt=0, convert=parse_number, help="step α as a fraction of ε")
    alpha: float = setting(0.0, ge=0, convert=parse_eps,
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
    search_steps: int = setting(10, ge=0, help="bisect: bisections of each input's ε bracket after the grid; "
                                               "foolbox2: k, the cap on exponential tries and the bisection steps")
    search_start: float = setting(0.3, gt=0, convert=parse_eps,
                                  help="foolbox2: the first ε of the exponential search (foolbox: 0.3)")
    search_growth: float = setting(1.5, gt=1, help="foolbox2: ε × growth after each failed try (foolbox: 1.5)")
    linf_eps: tuple[float, ...] = setting((0.0, *(e / 255 for e in (1, 2, 4, 8, 12, 16, 22, 30))), convert=parse_eps,
                                          help="L∞ ε grid, [0, 1] pixel units (JEM Fig. 5a range)")
    l2_eps: tuple[float, ...] = setting((0.0, 0.25, 0.5, 1.0, 1.5, 2.0), convert=parse_eps,
                                        help="L2 ε grid, [0, 1] pixel units (JEM Fig. 5b range)")

    def __post_init__(self) -> None:
        for name in ("linf_eps", "l2_eps"):
            _sorted_unique(self, name)

    def eps_grid(self, norm: str) -> tuple[float, ...]:
        return self.linf_eps if norm == "linf" else self.l2_eps


@dataclass(frozen=True)
class QueryLimits:
    """Budgets of a decision-based attack (:mod:`jembench.attacks.budget`); 0 = unlimited."""

    max_queries: int = setting(0, ge=0, help="model queries per input; the attack stops at the first one past it")
    max_seconds: float = setting(0.0, ge=0, help="wall time per unit (machine-dependent: prefer max_queries)")


@dataclass(frozen=True)
class BoundarySettings(QueryLimits):
    """``[boundary]``: foolbox BoundaryAttack (L2) from a top-2-class starting point."""

    enabled: bool = setting(True)
    steps: int = setting(25000, ge=1, help="iterations (foolbox's default; 2 queries each)")


@dataclass(frozen=True)
class PointwiseSettings(QueryLimits):
    """``[pointwise]``: foolbox PointwiseAttack (L0, then L2 binary search)."""

    enabled: bool = setting(True)
    l2_binary_search: bool = setting(True)


@dataclass(frozen=True)
class StartSettings:
    """``[start]``: starting points of the gradient-free attacks (a correctly classified top-2-class image)."""

    pool: int = setting(0, ge=0, help="test images searched for them; 0 = the whole test split")
    candidates: int = setting(10, ge=1, help="nearest top-2-class images tried per input")


@dataclass(frozen=True)
class RobustnessProtocol:
    """The robustness protocol; defaults = the paper setting (see ``suites/robustness.toml``)."""

    n: int = setting(300, ge=1, help="test inputs attacked (JEM App. F: 300)")
    selection: str = setting("random", choices=SELECTIONS,
                             help="random: seeded subset; first: the first n in order (JEM attack_model.py); "
                                  "sadajem-loader: SADA-JEM's shuffled loader (bpda_eot_attack.py)")
    input_seed: int = setting(0, help="seed choosing those inputs (random, sadajem-loader) and the start-point pool")
    batch_size: int = setting(50, ge=1, help="inputs per work unit")
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

    def attacks(self) -> list[str]:
        names = [f"pgd-{norm}" for norm in self.pgd.norms] if self.pgd.enabled else []
        return names + (["boundary"] if self.boundary.enabled else []) + (
            ["pointwise"] if self.pointwise.enabled else [])


PROTOCOL = RobustnessProtocol


# ---------------------------------------------------------------------------------------------- the units
@dataclass(frozen=True)
class Unit:
    k: int
    attack: str
    block: int

    @property
    def key(self) -> str:
        return f"k{self.k}/{self.attack}/b{self.block}"


def _seed(*parts: Any) -> int:
    """A stable 31-bit seed from (run seed, K, attack, block): the unit's randomness, whatever the rank."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "big") & 0x7FFFFFFF


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # foolbox's PointwiseAttack shuffles with NumPy's global RNG
    torch.manual_seed(seed)


def _finite(values: torch.Tensor) -> list[float | None]:
    """Per-input distances for JSON: ``None`` where no adversarial was found (inf)."""
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([math.inf if v is None else float(v) for v in values], dtype=np.float64)


class _Models:
    """The classifiers one K needs, in [0, 1] pixel space."""

    def __init__(self, base: torch.nn.Module, cfg: RobustnessProtocol, k: int):
        refine = cfg.refine
        self.stochastic = refine.stochastic_at(k)
        self.verify = PixelSpace(refine.classifier(base, k, refine.eot_defense)).eval()
        gradient_eot = refine.eot_mode == "gradients" and self.stochastic
        attack_draws = 1 if gradient_eot else refine.eot_attack
        self.attack = PixelSpace(refine.classifier(base, k, attack_draws, bpda=refine.bpda)).eval()
        self.eot_iter = refine.eot_attack if gradient_eot else 1
        self.decision = PixelSpace(refine.classifier(base, k, refine.eot_attack)).eval()


class _Ticking(torch.nn.Module):
    """A model that calls ``tick()`` after every forward: one tick per PGD step (progress inside a unit)."""

    def __init__(self, model: torch.nn.Module, tick: Callable[[int], Any]):
        super().__init__()
        self.model, self.tick = model, tick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.tick(1)
        return out


def run_unit(unit: Unit, base: torch.nn.Module, cfg: RobustnessProtocol, x: torch.Tensor, y: torch.Tensor,
             pool: tuple[torch.Tensor, torch.Tensor], seed: int, device: str,
             tick: Callable[[int], Any] = lambda n: None) -> dict[str, Any]:
    """Attack one block of inputs (``x`` in [-1, 1]) with one attack at one K; a JSON-ready result.
    ``tick(n)`` reports progress: PGD steps (attacked-model calls) or decision-attack queries."""
    models = _Models(base, cfg, unit.k)
    x01, y = to_pixels(x).to(device), y.to(device)
    with ForwardCounter(base) as counter:
        with fixed_rng(_seed(seed, unit.k, "clean", unit.block), device):  # the same in every unit of this block
            logits = logits_of(models.verify, x01, batch_size=len(x01))
        correct = logits.argmax(1) == y
        clean_forwards = counter.count
        _seed_all(_seed(seed, unit.k, unit.attack, unit.block))
        out: dict[str, Any] = {"correct": correct.cpu().tolist()}
        if unit.attack.startswith("pgd-"):
            models.attack = _Ticking(models.attack, tick).eval()
            out.update(_pgd_unit(unit.attack[4:], models, cfg, x01, y, correct))
        else:
            out.update(_decision_unit(unit, models, cfg, x01, y, correct, logits, pool, seed, device, tick))
    out["forward_passes"] = counter.count - clean_forwards
    return out


def _pgd_config(norm: str, models: _Models, cfg: RobustnessProtocol) -> PGDConfig:
    return PGDConfig(norm=norm, steps=cfg.pgd.steps, step_size=cfg.pgd.step_size, restarts=cfg.pgd.restarts,
                     random_start=cfg.pgd.random_start, eot_iter=models.eot_iter, alpha=cfg.pgd.alpha)


def _pgd_unit(norm: str, models: _Models, cfg: RobustnessProtocol, x01, y, correct) -> dict[str, Any]:
    if cfg.pgd.search == "foolbox2":
        return _foolbox2_unit(norm, models, cfg, x01, y, correct)
    pgd_cfg = _pgd_config(norm, models, cfg)
    verify = models.verify if models.stochastic else None

    def attack(idx: torch.Tensor, eps: float):
        idx = idx.to(x01.device)
        if cfg.pgd.success == "final":
            outcome = pgd(models.attack, x01[idx], y[idx], eps, pgd_cfg, verify=models.verify)
            return outcome.success, outcome.distance
        broken = torch.zeros(len(idx), dtype=torch.bool, device=x01.device)
        dist = torch.full((len(idx),), math.inf, device=x01.device)
        for _ in range(cfg.pgd.restarts):  # an input is broken if any restart breaks it
            todo = (~broken).nonzero().flatten()
            if len(todo) == 0:
                break
            run = pgd_any_iterate(models.attack, x01[idx[todo]], y[idx[todo]], eps, pgd_cfg, verify=verify)
            broken[todo[run.broken]] = True
            dist[todo[run.broken]] = run.distance[run.broken]
        return broken, dist

    start = torch.where(correct.cpu(), math.inf, 0.0)
    if cfg.pgd.search == "grid":  # every ε on its own, as SADA-JEM's bpda_attack.sh runs one process per ε
        grid = [e for e in cfg.pgd.eps_grid(norm) if e > 0]
        todo = correct.cpu().nonzero().flatten()
        min_eps = start.double().clone()
        robust_at = []
        for eps in grid:
            robust = correct.cpu().clone()
            if len(todo):
                broken, dist = attack(todo, eps)
                broken, dist = broken.cpu(), dist.double().cpu()
                robust[todo[broken]] = False
                min_eps[todo[broken]] = torch.minimum(min_eps[todo[broken]], dist[broken])
            robust_at.append(robust.tolist())
        return {"min_eps": _finite(min_eps), "robust_at": robust_at, "attack_calls": len(grid)}
    result = minimal_eps(attack, len(x01), cfg.pgd.eps_grid(norm), cfg.pgd.search_steps, start=start)
    return {"min_eps": _finite(result.min_eps), "attack_calls": result.n_calls}


def _foolbox2_unit(norm: str, models: _Models, cfg: RobustnessProtocol, x01, y, correct) -> dict[str, Any]:
    """JEM's attack_model.py: inputs misclassified by the clean forward are skipped (distance 0, :244-252);
    the others get foolbox 2's searched PGD, ``restarts`` calls, the last (or best) kept."""
    fb_cfg = Foolbox2Config(norm=norm, iterations=cfg.pgd.steps, eps_start=cfg.pgd.search_start,
                            step_ratio=cfg.pgd.step_size, growth=cfg.pgd.search_growth,
                            search_steps=cfg.pgd.search_steps, random_start=cfg.pgd.random_start,
                            restarts=cfg.pgd.restarts, keep=cfg.pgd.keep)
    n = len(x01)
    min_eps = torch.where(correct.cpu(), math.inf, 0.0).double()
    fb_distance = min_eps.clone()
    todo = correct.nonzero().flatten()
    tries = iterations = 0
    if len(todo):
        out = foolbox2_attack(models.attack, models.verify, x01[todo], y[todo], fb_cfg)
        min_eps[todo.cpu()] = out.norm_distance.cpu()
        fb_distance[todo.cpu()] = out.distance.cpu()
        tries, iterations = out.tries, out.iterations
    return {"min_eps": _finite(min_eps), "foolbox_distance": _finite(fb_distance),
            "skipped": (~correct).cpu().tolist(), "attack_calls": tries, "pgd_iterations": iterations,
            "n": n}


def _decision_unit(unit: Unit, models: _Models, cfg: RobustnessProtocol, x01, y, correct, logits, pool, seed,
                   device, tick) -> dict[str, Any]:
    pool01, pool_labels = pool
    pool01, pool_labels = pool01.to(device), pool_labels.to(device)
    attack_model = models.decision
    if models.stochastic:  # decision-based attacks need a deterministic function: quench the SGLD noise
        attack_model = QuenchedNoise(attack_model, _seed(seed, unit.k, unit.attack, unit.block, "quench")).eval()
    todo = correct.nonzero().flatten()
    target, candidates = top2_candidates(x01[todo], logits[todo], y[todo], pool01, pool_labels,
                                         cfg.start.candidates)
    kept, starts = checked_starting_points(attack_model, models.verify, y[todo], target, pool01, candidates)
    kept = todo[kept.to(device)]
    l2 = torch.where(correct, math.inf, 0.0).double()
    l0 = l2.clone()
    no_start = torch.zeros(len(x01), dtype=torch.bool)
    no_start[todo.cpu()] = True
    no_start[kept.cpu()] = False
    queries: list[int | None] = [None] * len(x01)
    stopped: list[str | None] = [None] * len(x01)
    unverified = 0
    if len(kept):
        settings = cfg.boundary if unit.attack == "boundary" else cfg.pointwise
        budget = QueryBudget(attack_model, x01[kept], y[kept], "l2" if unit.attack == "boundary" else "l0",
                             max_queries=settings.max_queries, max_seconds=settings.max_seconds, tick=tick)
        if unit.attack == "boundary":
            result = run_with_budget(lambda m: boundary_attack(m, x01[kept], y[kept], starts,
                                                               steps=cfg.boundary.steps), budget)
        else:
            result = run_with_budget(lambda m: pointwise_attack(m, x01[kept], y[kept], starts,
                                                                l2_binary_search=cfg.pointwise.l2_binary_search),
                                     budget)
        for i, q in zip(kept.tolist(), result.queries.tolist()):
            queries[i], stopped[i] = int(q), result.stopped
        adv, fooled, moved = verified_along_line(models.verify, result.adv, starts, y[kept])
        unverified = int((moved != 0).sum())  # did not verify as returned by the attack (moved, or none verified)
        found = kept[fooled]
        l2[found] = distances(x01[found], adv[fooled], "l2").double()
        l0[found] = distances(x01[found], adv[fooled], "l0").double()
    out = {"l2": _finite(l2), "no_start": int(no_start.sum()), "no_start_inputs": no_start.tolist(),
           "unverified": unverified, "queries": queries, "stopped": stopped}
    if unit.attack == "pointwise":
        out["l0"] = _finite(l0)
    return out


# ------------------------------------------------------------------------------------- partial results
def _partial_base(record: Path, protocol_hash: str) -> str:
    return f"{record.stem}.partial.{protocol_hash}"


def partial_files(record_path: str | Path, protocol) -> list[Path]:
    """Every rank's partial-result file of this record *and protocol* that exists (exact names — a record path
    with glob characters such as ``r[1].json`` is never used as a pattern). :func:`jembench.evaluation.run_suite`
    deletes them once the record is on disk; other protocols' partial files of the same record are kept."""
    record = Path(record_path)
    base = _partial_base(record, protocol.hash)
    if not record.parent.is_dir():
        return []
    return sorted(p for p in record.parent.iterdir() if p.is_file() and (
        p.name == f"{base}.json" or (p.name.startswith(f"{base}.rank") and p.name.endswith(".json"))))


def _my_partial(record_path: str | Path | None, protocol) -> Path | None:
    """This rank's partial file: ``<stem>.partial.<protocol hash>.json`` (rank r > 0: ``….rank<r>.json``)."""
    if not record_path:
        return None
    record = Path(record_path)
    rank = distributed.rank()
    base = _partial_base(record, protocol.hash)
    return record.with_name(f"{base}.json" if rank == 0 else f"{base}.rank{rank}.json")


def _partial_key(ckpt, protocol, ctx: EvalContext) -> dict[str, Any]:
    return {"schema": PARTIAL_SCHEMA, "protocol_hash": protocol.hash, "checkpoint_sha256": ckpt.sha256,
            "seed": int(ctx.seed), "dataset": ctx.dataset}


def _load_partials(paths: list[Path], key: dict[str, Any]) -> dict[str, dict]:
    import json

    done: dict[str, dict] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable: recompute (it is rewritten atomically, so this is rare)
        if not isinstance(data, dict) or any(data.get(k) != v for k, v in key.items()):
            print(f"robustness: ignoring {path} (another protocol, checkpoint, seed or dataset)", file=sys.stderr)
            continue
        done.update(data.get("units", {}))
    return done


# ------------------------------------------------------------------------------------------------- run
def attacked_inputs(cfg: RobustnessProtocol, ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked test images (in [-1, 1]) and labels, in attack order (:mod:`jembench.attacks.inputs`)."""
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)  # the same inputs for every model and --seed
    if cfg.selection == "random":
        return inputs_ctx.test_set(cfg.n)
    ds = load_dataset(ctx.dataset, "test", ctx.data_root, download=ctx.download)
    idx = select(cfg.selection, len(ds), cfg.n, cfg.input_seed)
    if ctx.dataset.startswith("folder:") and distributed.is_main():
        print(f"robustness: selection {cfg.selection!r} indexes {ctx.dataset} in its sorted (class-folder) order, "
              f"not torchvision's test order: these are not the official images", file=sys.stderr)
    return stack_dataset(torch.utils.data.Subset(ds, idx))


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start_time = time.perf_counter()
    cfg: RobustnessProtocol = protocol.settings
    x, y = attacked_inputs(cfg, ctx)
    gradient_free = cfg.boundary.enabled or cfg.pointwise.enabled
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)
    pool = inputs_ctx.test_set(cfg.start.pool or None) if gradient_free else (x[:0], y[:0])
    n = len(x)
    blocks = [(b, range(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size)))
              for b in range(math.ceil(n / cfg.batch_size))]
    units = [Unit(k, attack, b) for k in cfg.refine.steps for attack in cfg.attacks() for b, _ in blocks]

    mine = _my_partial(ctx.record_path, protocol)
    key = _partial_key(ckpt, protocol, ctx)
    done = _load_partials(partial_files(ctx.record_path, protocol) if ctx.record_path else [], key)
    distributed.barrier()  # every rank has read the partial files before any rank writes one
    todo = [u for u in units if u.key not in done]
    if done:
        print(f"robustness: resuming, {len(units) - len(todo)} of {len(units)} units already done", file=sys.stderr)
    model = ckpt.model.eval()
    mine_done: dict[str, dict] = {}
    my_units = distributed.shard(todo)
    with progress.bar(total=len(my_units), desc="robustness", unit="unit", leave=True) as bar:
        for unit in my_units:
            t0 = time.perf_counter()
            rows = blocks[unit.block][1]
            decision = unit.attack in ("boundary", "pointwise")
            total = getattr(cfg, unit.attack).max_queries or None if decision else None
            with progress.bar(total=total, desc=f"  {unit.key}", unit="query" if decision else "step") as inner:
                mine_done[unit.key] = run_unit(unit, model, cfg, x[rows.start:rows.stop], y[rows.start:rows.stop],
                                               pool, ctx.seed, ctx.device, tick=inner.update)
            if mine is not None:
                atomic.write_json(mine, dict(key, units={**done, **mine_done}))
            bar.update(1)
            seconds = time.perf_counter() - t0
            if distributed.rank() == 0:
                progress.unit_done(f"robustness {unit.key}", f"{len(rows)} inputs", seconds)
            else:  # bars and unit lines are rank 0's; the other ranks say what they did
                print(f"robustness: [rank {distributed.rank()}] {unit.key} done in {seconds:.1f}s", file=sys.stderr)
    for gathered in distributed.all_gather_objects(mine_done):
        done.update(gathered)
    metrics, details = summarize(cfg, units, done, y)
    figures = (robustness_figures(details, ckpt.name, ctx.dataset, ctx.figure_path, ctx.label)
               if distributed.is_main() else [])
    # the partial files are deleted by jembench.evaluation.run_suite once the record itself is on disk
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=figures, seed=ctx.seed, wall_time_s=time.perf_counter() - start_time)


def _median(values: list[float | None]) -> float:
    return float(np.median(_as_array(values))) if values else math.nan


def summarize(cfg: RobustnessProtocol, units: list[Unit], done: dict[str, dict], y: torch.Tensor
              ) -> tuple[dict[str, float], dict[str, Any]]:
    """Merge unit results (in global input order) into the record's metrics and details."""
    by_attack: dict[tuple[int, str], list[dict]] = {}
    for unit in sorted(units, key=lambda u: (u.k, u.attack, u.block)):
        by_attack.setdefault((unit.k, unit.attack), []).append(done[unit.key])

    def joined(parts: list[dict], field: str) -> list:
        return [v for part in parts for v in part[field]]

    n = int(len(y))
    metrics: dict[str, float] = {}
    details: dict[str, Any] = {"n": n, "labels": y.tolist(), "units": len(units), "batch_size": cfg.batch_size,
                               "selection": cfg.selection, "clean": {}, "pgd": {}, "boundary": {},
                               "pointwise": {}, "forward_passes": {}, "sampling_error": {}}
    for k in cfg.refine.steps:
        first = by_attack[(k, cfg.attacks()[0])]
        correct = joined(first, "correct")
        metrics[metric_keys.clean_acc(k)] = 100.0 * float(np.mean(correct))
        details["clean"][f"k{k}"] = correct
        for attack in cfg.attacks():
            parts = by_attack[(k, attack)]
            forwards = sum(p["forward_passes"] for p in parts)
            details["forward_passes"][f"{attack.replace('-', '/')}/k{k}"] = forwards
            if attack.startswith("pgd-"):
                norm = attack[4:]
                min_eps = joined(parts, "min_eps")
                grid = list(cfg.pgd.eps_grid(norm))
                if "robust_at" in parts[0]:  # search = grid: each ε's own run (ε = 0: the clean accuracy)
                    positive = [e for e in grid if e > 0]
                    runs = {eps: [v for p in parts for v in p["robust_at"][i]] for i, eps in enumerate(positive)}
                    acc = [100.0 * float(np.mean(runs[e])) if e > 0 else 100.0 * float(np.mean(correct))
                           for e in grid]
                else:
                    dist = _as_array(min_eps)
                    acc = [100.0 * float(np.mean(dist > e)) for e in grid]
                for eps, value in zip(grid, acc):
                    metrics[metric_keys.robust_acc(norm, k, eps)] = value
                entry = {"eps": grid, "robust_acc": acc, "min_eps": min_eps, "search": cfg.pgd.search,
                         "attack_calls": sum(p["attack_calls"] for p in parts),
                         "forward_passes_per_input": forwards / max(1, len(min_eps))}
                for field in ("foolbox_distance", "skipped"):
                    if field in parts[0]:
                        entry[field] = joined(parts, field)
                details["pgd"].setdefault(norm, {})[f"k{k}"] = entry
            else:
                entry = {"n": n, "l2": joined(parts, "l2"), "no_start": sum(p["no_start"] for p in parts),
                         "no_start_inputs": joined(parts, "no_start_inputs"),
                         "unverified": sum(p["unverified"] for p in parts),
                         "queries": joined(parts, "queries"), "stopped": joined(parts, "stopped"),
                         "forward_passes_per_input": forwards / max(1, n)}
                entry["budget_stopped"] = sum(s is not None for s in entry["stopped"])
                if attack == "pointwise":
                    entry["l0"] = joined(parts, "l0")
                    metrics[metric_keys.pointwise_median_l0(k)] = _median(entry["l0"])
                else:
                    metrics[metric_keys.boundary_median_l2(k)] = _median(entry["l2"])
                details[attack][f"k{k}"] = entry
    details["sampling_error"] = {key: wilson_se(value, n) for key, value in metrics.items()
                                 if getattr(metric_keys.spec(key), "se", None) == "binomial"}
    return metrics, details


# ------------------------------------------------------------------------------------------ reporting
def _eps_label(norm: str, eps: float) -> str:
    return f"{NORM_LABELS.get(norm, norm)} {metric_keys.eps_label(eps, norm)}"


def _parsed(metrics: dict) -> list[metric_keys.Key]:
    return [k for k in map(metric_keys.parse, metrics) if k is not None]


def format_table(record: dict) -> str:
    m = record["metrics"]
    keys = _parsed(m)
    ks = sorted({k.k for k in keys if k.family == "clean_acc"})
    specs = metric_keys.SPECS
    columns: list[tuple[str, Any]] = [(specs["clean_acc"].label, metric_keys.clean_acc)]
    for key in keys:
        if key.family == "robust_acc" and key.k == ks[0]:
            columns.append((f"{_eps_label(key.norm, key.eps_value)} %",
                            lambda k, key=key: metric_keys.robust_acc(key.norm, k, key.eps_value)))
    for build, label in ((metric_keys.boundary_median_l2, specs["boundary"].label),
                         (metric_keys.pointwise_median_l0, specs["pointwise"].label)):
        if build(ks[0]) in m:
            columns.append((label, build))
    rows = [[record["model"]["name"], k] + [f"{m[build(k)]:.4g}" for _, build in columns] for k in ks]
    return tabulate(rows, headers=["Model", "K"] + [c for c, _ in columns], tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    """Clean and robust accuracy at the ε closest to 8/255 (L∞) and 0.5 (L2), for the largest K."""
    m = record["metrics"]
    keys = _parsed(m)
    k = max(key.k for key in keys if key.family == "clean_acc")
    out = {f"{metric_keys.SPECS['clean_acc'].label} K={k}": m[metric_keys.clean_acc(k)]}
    for norm, ref in (("linf", 8 / 255), ("l2", 0.5)):
        grid = [key.eps_value for key in keys if key.family == "robust_acc" and key.norm == norm and key.k == k]
        if grid:
            best = min(grid, key=lambda eps: abs(eps - ref))
            out[f"{_eps_label(norm, best)} % K={k}"] = m[metric_keys.robust_acc(norm, k, best)]
    return out
