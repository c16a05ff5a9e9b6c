"""Attack dispatch: one work unit of the robustness suite — one attack at one K on one block of inputs.

A unit is (K, attack, block of ``batch_size`` inputs) and is seeded from (seed, K, attack, block), so its result
depends on the inputs' global positions only — never on which rank ran it or in what order. The attacks:

* white-box PGD, L∞ and L2, with gradients through the refinement (or BPDA), EOT for stochastic refinement and
  restarts, in one of three ways (``pgd.search``): ``bisect`` — torchattacks at every ε of a grid, then a
  per-input binary search for the minimal ε (:mod:`jembench.attacks.pgd`, :mod:`jembench.attacks.search`);
  ``grid`` — every ε on its own (SADA-JEM's one run per ε); ``foolbox2`` — foolbox 2's exponential + bisection ε
  search per input with JEM's restart rule (:mod:`jembench.attacks.foolbox2`). ``pgd.success`` says what breaks
  an input: the returned iterate (``final``) or any evaluated iterate (``any_iterate``, SADA-JEM);
* decision-based foolbox BoundaryAttack (L2) and PointwiseAttack (L0), started from a correctly classified input
  of the top-2 class (:mod:`jembench.attacks.gradient_free`), under per-input query and per-unit time budgets
  (:mod:`jembench.attacks.budget`).

An adversarial counts only when a fresh ``eot_defense``-draw classifier (logits averaged) misclassifies it
(decision-based adversarials that do not verify are moved back towards their starting point until they do,
:func:`jembench.attacks.gradient_free.verified_along_line`). ε and distances are in [0, 1] pixel units; images
cross from [-1, 1] once (:mod:`jembench.attacks`).
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Callable

import numpy as np
import torch

from ...attacks import PixelSpace, distances, logits_of, to_pixels
from ...attacks.budget import QueryBudget, run_with_budget
from ...attacks.foolbox2 import Foolbox2Config, foolbox2_attack
from ...attacks.gradient_free import (boundary_attack, checked_starting_points, pointwise_attack, top2_candidates,
                                      verified_along_line)
from ...attacks.pgd import PGDConfig, pgd, pgd_any_iterate
from ...attacks.search import minimal_eps
from ...refine import ForwardCounter, QuenchedNoise, RefinedClassifier, fixed_rng
from .protocol import Refinement, RobustnessProtocol, Unit


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


def refined_classifier(refine: Refinement, base: torch.nn.Module, k: int, draws: int, bpda: bool = False,
                       micro_batch: int = 0) -> RefinedClassifier:
    """The classifier of ``[refine]`` with K = ``k`` SGLD steps, averaging ``draws`` draws' logits; ``micro_batch``
    images at a time through the refinement (0: all at once; memory only, :class:`RefinedClassifier`)."""
    return RefinedClassifier(base, refine.at(k), n_draws=draws, bpda=bpda, input_noise=refine.input_noise,
                             micro_batch=micro_batch)


class _Models:
    """The classifiers one K needs, in [0, 1] pixel space."""

    def __init__(self, base: torch.nn.Module, cfg: RobustnessProtocol, k: int, micro_batch: int = 0):
        refine, mb = cfg.refine, micro_batch
        self.stochastic = refine.stochastic_at(k)
        self.verify: torch.nn.Module = PixelSpace(refined_classifier(refine, base, k, refine.eot_defense,
                                                                     micro_batch=mb)).eval()
        gradient_eot = refine.eot_mode == "gradients" and self.stochastic
        attack_draws = 1 if gradient_eot else refine.eot_attack
        self.attack: torch.nn.Module = PixelSpace(refined_classifier(refine, base, k, attack_draws,
                                                                     bpda=refine.bpda, micro_batch=mb)).eval()
        self.eot_iter = refine.eot_attack if gradient_eot else 1
        self.decision: torch.nn.Module = PixelSpace(refined_classifier(refine, base, k, refine.eot_attack,
                                                                       micro_batch=mb)).eval()


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
             tick: Callable[[int], Any] = lambda n: None, micro_batch: int = 0) -> dict[str, Any]:
    """Attack one block of inputs (``x`` in [-1, 1]) with one attack at one K; a JSON-ready result.
    ``tick(n)`` reports progress: PGD steps (attacked-model calls) or decision-attack queries. ``micro_batch``:
    images per pass through the refinement (memory only)."""
    models = _Models(base, cfg, unit.k, micro_batch)
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
