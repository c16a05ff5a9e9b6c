"""Robustness suite: adversarial robustness of the SGLD-refined classifier (JEM §5.4, Fig. 5; App. F, Fig. 10).

For every refinement depth K (JEM: 0, 1, 10 SGLD steps seeded at the input) the classifier
x → SGLD_K(x) → logits (:class:`jembench.refine.RefinedClassifier`) is attacked

* white-box with PGD, L∞ and L2, through torchattacks, with gradients through the refinement (or BPDA), EOT
  for stochastic refinement, restarts, an ε grid and a per-input binary search for the minimal ε
  (:mod:`jembench.attacks.pgd`, :mod:`jembench.attacks.search`) → robustness–distortion curves (Fig. 5);
* decision-based with foolbox's BoundaryAttack (L2) and PointwiseAttack (L0), started from a correctly
  classified input of the top-2 class (:mod:`jembench.attacks.gradient_free`) → accuracy vs distance (Fig. 10).

An adversarial counts only when a fresh ``eot_defense``-draw classifier (logits averaged) misclassifies it
(decision-based adversarials that do not verify are moved back towards their starting point until they do,
:func:`jembench.attacks.gradient_free.verified_along_line`; ``details`` counts them as ``unverified``).
ε and distances are in [0, 1] pixel units (8/255, 0.5 L2); images cross from [-1, 1] once
(:mod:`jembench.attacks`).

Work is split into units (K, attack, block of ``batch_size`` inputs). Every unit is seeded from (seed, K,
attack, block), so its result depends on the inputs' global positions only — never on which rank ran it or in
what order. Under ``torchrun`` the units are shared among ranks and gathered into one record equal to the
single-process one. After each unit its result is saved (atomically) to ``<record>.partial.json`` (rank r > 0:
``<record>.partial.rank<r>.json``) under the protocol hash, checkpoint SHA-256, seed and dataset; a rerun with
the same record path resumes from there, and the files are deleted once the record is complete.

Protocol (:class:`RobustnessProtocol`, defaults = the paper setting; ``suites/robustness.toml`` documents every
field)::

    n, input_seed, batch_size
    [refine]        steps (list of K), eot_attack, eot_defense, eot_mode, bpda
    [refine.sgld]   step_size, noise, grad_clamp, x_clamp (a :class:`jembench.sampling.SGLDConfig`; K = n_steps)
    [pgd]           enabled, norms, steps, step_size (α/ε), restarts, random_start, search_steps, linf_eps, l2_eps
    [boundary]      enabled, steps
    [pointwise]     enabled, l2_binary_search
    [start]         pool, candidates

Metric keys (:mod:`jembench.metric_keys`): ``clean_acc/k<K>``, ``robust_acc/<norm>/k<K>/eps=<ε %g>`` (%),
``boundary/median_l2/k<K>``, ``pointwise/median_l0/k<K>`` (median over all inputs: 0 when misclassified clean,
``inf`` when more than half resisted). ``details`` holds per-input minimal ε / distances (``None`` = no
adversarial found), curves and forward-pass counts (images through the network: every SGLD step, EOT draw,
restart, search step and verification counts one per image).
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
from typing import Any

import numpy as np
import torch
from tabulate import tabulate

from .. import atomic, distributed, metric_keys
from ..attacks import NORMS, PixelSpace, distances, logits_of, to_pixels
from ..attacks.gradient_free import (boundary_attack, checked_starting_points, pointwise_attack, top2_candidates,
                                     verified_along_line)
from ..attacks.pgd import PGDConfig, pgd
from ..attacks.search import minimal_eps
from ..figures import robustness_figures
from ..records import make_record
from ..metric_keys import NORM_LABELS
from ..refine import ForwardCounter, QuenchedNoise, RefinedClassifier, fixed_rng
from ..sampling import SGLDConfig
from ..schema import Invalid, setting
from . import EvalContext

NAME = "robustness"
PARTIAL_SCHEMA = "jembench-robustness-partial/1"


# ------------------------------------------------------------------------------------------- the protocol
def parse_eps(value: Any) -> float:
    """An ε in [0, 1] pixel units: a number or a fraction string such as ``"8/255"``."""
    try:
        eps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise ValueError("is not an ε; write a number or a fraction like \"8/255\"") from None
    if isinstance(value, bool) or not math.isfinite(eps) or eps < 0:
        raise ValueError("must be a finite number >= 0 (ε in [0, 1] pixel units)")
    return eps


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

    def __post_init__(self) -> None:
        _sorted_unique(self, "steps")

    def at(self, k: int) -> SGLDConfig:
        """The SGLD settings of the refinement with K = ``k`` steps."""
        return dataclasses.replace(self.sgld, n_steps=k)


@dataclass(frozen=True)
class PGDSettings:
    """``[pgd]``: white-box PGD through torchattacks."""

    enabled: bool = setting(True)
    norms: tuple[str, ...] = setting(NORMS, choices=NORMS, nonempty=True)
    steps: int = setting(100, ge=1, help="iterations per run (JEM App. F: 100)")
    restarts: int = setting(20, ge=1, help="random restarts per ε (JEM App. F: 20)")
    step_size: float = setting(0.025, gt=0, help="step α as a fraction of ε")
    random_start: bool = setting(True)
    search_steps: int = setting(10, ge=0, help="bisections of each input's ε bracket after the grid")
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
class BoundarySettings:
    """``[boundary]``: foolbox BoundaryAttack (L2) from a top-2-class starting point."""

    enabled: bool = setting(True)
    steps: int = setting(25000, ge=1, help="iterations (foolbox's default)")


@dataclass(frozen=True)
class PointwiseSettings:
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
    input_seed: int = setting(0, help="seed choosing those inputs and the start-point pool")
    batch_size: int = setting(50, ge=1, help="inputs per work unit")
    refine: Refinement = setting(Refinement())
    pgd: PGDSettings = setting(PGDSettings())
    boundary: BoundarySettings = setting(BoundarySettings())
    pointwise: PointwiseSettings = setting(PointwiseSettings())
    start: StartSettings = setting(StartSettings())

    def validate(self) -> None:
        if self.refine.eot_mode == "gradients" and "l2" in self.pgd.norms and self.pgd.enabled \
                and self.refine.sgld.noise > 0:
            raise Invalid("refine.eot_mode = 'gradients' uses torchattacks.EOTPGD, which is L∞ only; use "
                          "eot_mode = 'logits' or drop 'l2' from pgd.norms")
        if self.pgd.enabled:
            for norm in self.pgd.norms:
                if not any(e > 0 for e in self.pgd.eps_grid(norm)):
                    raise Invalid(f"pgd.{norm}_eps needs at least one ε > 0, e.g. [0, \"8/255\"]")
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
        refine = cfg.refine.at(k)
        self.stochastic = refine.stochastic
        self.verify = PixelSpace(RefinedClassifier(base, refine, n_draws=cfg.refine.eot_defense)).eval()
        gradient_eot = cfg.refine.eot_mode == "gradients" and self.stochastic
        attack_draws = 1 if gradient_eot else cfg.refine.eot_attack
        self.attack = PixelSpace(RefinedClassifier(base, refine, n_draws=attack_draws, bpda=cfg.refine.bpda)).eval()
        self.eot_iter = cfg.refine.eot_attack if gradient_eot else 1
        self.decision = PixelSpace(RefinedClassifier(base, refine, n_draws=cfg.refine.eot_attack)).eval()


def run_unit(unit: Unit, base: torch.nn.Module, cfg: RobustnessProtocol, x: torch.Tensor, y: torch.Tensor,
             pool: tuple[torch.Tensor, torch.Tensor], seed: int, device: str) -> dict[str, Any]:
    """Attack one block of inputs (``x`` in [-1, 1]) with one attack at one K; a JSON-ready result."""
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
            out.update(_pgd_unit(unit.attack[4:], models, cfg, x01, y, correct))
        else:
            out.update(_decision_unit(unit, models, cfg, x01, y, correct, logits, pool, seed, device))
    out["forward_passes"] = counter.count - clean_forwards
    return out


def _pgd_unit(norm: str, models: _Models, cfg: RobustnessProtocol, x01, y, correct) -> dict[str, Any]:
    pgd_cfg = PGDConfig(norm=norm, steps=cfg.pgd.steps, step_size=cfg.pgd.step_size, restarts=cfg.pgd.restarts,
                        random_start=cfg.pgd.random_start, eot_iter=models.eot_iter)

    def attack(idx: torch.Tensor, eps: float):
        idx = idx.to(x01.device)
        outcome = pgd(models.attack, x01[idx], y[idx], eps, pgd_cfg, verify=models.verify)
        return outcome.success, outcome.distance

    start = torch.where(correct.cpu(), math.inf, 0.0)
    result = minimal_eps(attack, len(x01), cfg.pgd.eps_grid(norm), cfg.pgd.search_steps, start=start)
    return {"min_eps": _finite(result.min_eps), "attack_calls": result.n_calls}


def _decision_unit(unit: Unit, models: _Models, cfg: RobustnessProtocol, x01, y, correct, logits, pool, seed,
                   device) -> dict[str, Any]:
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
    unverified = 0
    if len(kept):
        if unit.attack == "boundary":
            adv = boundary_attack(attack_model, x01[kept], y[kept], starts, steps=cfg.boundary.steps)
        else:
            adv = pointwise_attack(attack_model, x01[kept], y[kept], starts,
                                   l2_binary_search=cfg.pointwise.l2_binary_search)
        adv, fooled, moved = verified_along_line(models.verify, adv, starts, y[kept])
        unverified = int((moved != 0).sum())  # did not verify as returned by foolbox (moved, or none verified)
        found = kept[fooled]
        l2[found] = distances(x01[found], adv[fooled], "l2").double()
        l0[found] = distances(x01[found], adv[fooled], "l0").double()
    out = {"l2": _finite(l2), "no_start": int(len(todo) - len(kept)), "unverified": unverified}
    if unit.attack == "pointwise":
        out["l0"] = _finite(l0)
    return out


# ------------------------------------------------------------------------------------- partial results
def _partial_paths(record_path: str | None) -> tuple[Path | None, list[Path]]:
    """(this rank's partial file, every partial file of this record) — none without a record path."""
    if not record_path:
        return None, []
    record = Path(record_path)
    rank = distributed.rank()
    mine = record.with_name(f"{record.stem}.partial.json" if rank == 0 else f"{record.stem}.partial.rank{rank}.json")
    found = sorted(record.parent.glob(f"{record.stem}.partial.json")) + sorted(
        record.parent.glob(f"{record.stem}.partial.rank*.json"))
    return mine, found


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
def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start_time = time.perf_counter()
    cfg: RobustnessProtocol = protocol.settings
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)  # the same inputs for every model and --seed
    x, y = inputs_ctx.test_set(cfg.n)
    gradient_free = cfg.boundary.enabled or cfg.pointwise.enabled
    pool = inputs_ctx.test_set(cfg.start.pool or None) if gradient_free else (x[:0], y[:0])
    n = len(x)
    blocks = [(b, range(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size)))
              for b in range(math.ceil(n / cfg.batch_size))]
    units = [Unit(k, attack, b) for k in cfg.refine.steps for attack in cfg.attacks() for b, _ in blocks]

    mine, partial_files = _partial_paths(ctx.record_path)
    key = _partial_key(ckpt, protocol, ctx)
    done = _load_partials(partial_files, key)
    distributed.barrier()  # every rank has read the partial files before any rank writes one
    todo = [u for u in units if u.key not in done]
    if done:
        print(f"robustness: resuming, {len(units) - len(todo)} of {len(units)} units already done", file=sys.stderr)
    model = ckpt.model.eval()
    mine_done: dict[str, dict] = {}
    for unit in distributed.shard(todo):
        t0 = time.perf_counter()
        rows = blocks[unit.block][1]
        mine_done[unit.key] = run_unit(unit, model, cfg, x[rows.start:rows.stop], y[rows.start:rows.stop], pool,
                                       ctx.seed, ctx.device)
        if mine is not None:
            atomic.write_json(mine, dict(key, units={**done, **mine_done}))
        print(f"robustness: [rank {distributed.rank()}] {unit.key} done in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
    for gathered in distributed.all_gather_objects(mine_done):
        done.update(gathered)
    metrics, details = summarize(cfg, units, done, y)
    figures = robustness_figures(details, ckpt.name, ctx.dataset, ctx.figure_path) if distributed.is_main() else []
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

    metrics: dict[str, float] = {}
    details: dict[str, Any] = {"n": int(len(y)), "labels": y.tolist(), "units": len(units),
                               "batch_size": cfg.batch_size, "clean": {}, "pgd": {}, "boundary": {},
                               "pointwise": {}, "forward_passes": {}}
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
                dist = _as_array(min_eps)
                grid = list(cfg.pgd.eps_grid(norm))
                acc = [100.0 * float(np.mean(dist > e)) for e in grid]
                for eps, value in zip(grid, acc):
                    metrics[metric_keys.robust_acc(norm, k, eps)] = value
                details["pgd"].setdefault(norm, {})[f"k{k}"] = {
                    "eps": grid, "robust_acc": acc, "min_eps": min_eps,
                    "attack_calls": sum(p["attack_calls"] for p in parts),
                    "forward_passes_per_input": forwards / max(1, len(min_eps))}
            else:
                entry = {"l2": joined(parts, "l2"), "no_start": sum(p["no_start"] for p in parts),
                         "unverified": sum(p["unverified"] for p in parts),
                         "forward_passes_per_input": forwards / max(1, len(y))}
                if attack == "pointwise":
                    entry["l0"] = joined(parts, "l0")
                    metrics[metric_keys.pointwise_median_l0(k)] = _median(entry["l0"])
                else:
                    metrics[metric_keys.boundary_median_l2(k)] = _median(entry["l2"])
                details[attack][f"k{k}"] = entry
    return metrics, details


# ------------------------------------------------------------------------------------------ reporting
def _eps_label(norm: str, eps: float) -> str:
    scaled = eps * 255
    if norm == "linf" and eps > 0 and abs(scaled - round(scaled)) < 1e-3:
        return f"{NORM_LABELS[norm]} {round(scaled)}/255"
    return f"{NORM_LABELS.get(norm, norm)} {eps:g}"


def _parsed(metrics: dict) -> list[metric_keys.Key]:
    return [k for k in map(metric_keys.parse, metrics) if k is not None]


def format_table(record: dict) -> str:
    m = record["metrics"]
    keys = _parsed(m)
    ks = sorted({k.k for k in keys if k.family == "clean_acc"})
    columns: list[tuple[str, Any]] = [("Clean %", metric_keys.clean_acc)]
    for key in keys:
        if key.family == "robust_acc" and key.k == ks[0]:
            columns.append((f"{_eps_label(key.norm, key.eps_value)} %",
                            lambda k, key=key: metric_keys.robust_acc(key.norm, k, key.eps_value)))
    for build, label in ((metric_keys.boundary_median_l2, "Boundary med. L2"),
                         (metric_keys.pointwise_median_l0, "Pointwise med. L0")):
        if build(ks[0]) in m:
            columns.append((label, build))
    rows = [[record["model"]["name"], k] + [f"{m[build(k)]:.4g}" for _, build in columns] for k in ks]
    return tabulate(rows, headers=["Model", "K"] + [c for c, _ in columns], tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    """Clean and robust accuracy at the ε closest to 8/255 (L∞) and 0.5 (L2), for the largest K."""
    m = record["metrics"]
    keys = _parsed(m)
    k = max(key.k for key in keys if key.family == "clean_acc")
    out = {f"Clean % K={k}": m[metric_keys.clean_acc(k)]}
    for norm, ref in (("linf", 8 / 255), ("l2", 0.5)):
        grid = [key.eps_value for key in keys if key.family == "robust_acc" and key.norm == norm and key.k == k]
        if grid:
            best = min(grid, key=lambda eps: abs(eps - ref))
            out[f"{_eps_label(norm, best)} % K={k}"] = m[metric_keys.robust_acc(norm, k, best)]
    return out
