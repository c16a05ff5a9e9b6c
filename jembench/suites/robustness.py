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

Protocol (``suites/robustness.toml``; every field is documented there)::

    n, input_seed, batch_size
    [refine]    steps (list of K), step_size, noise, grad_clamp, x_clamp, eot_attack, eot_defense, eot_mode, bpda
    [pgd]       enabled, norms, steps, step_size (α/ε), restarts, random_start, search_steps, linf_eps, l2_eps
    [boundary]  enabled, steps
    [pointwise] enabled, l2_binary_search
    [start]     pool, candidates

Metric keys: ``clean_acc/k<K>``, ``robust_acc/<norm>/k<K>/eps=<ε %g>`` (%), ``boundary/median_l2/k<K>``,
``pointwise/median_l0/k<K>`` (median over all inputs: 0 when misclassified clean, ``inf`` when more than half
resisted). ``details`` holds per-input minimal ε / distances (``None`` = no adversarial found), curves and
forward-pass counts (images through the network: every SGLD step, EOT draw, restart, search step and
verification counts one per image).
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

from .. import atomic, distributed
from ..attacks import NORMS, PixelSpace, distances, logits_of, to_pixels
from ..attacks.gradient_free import (boundary_attack, checked_starting_points, pointwise_attack, top2_candidates,
                                     verified_along_line)
from ..attacks.pgd import PGDConfig, pgd
from ..attacks.search import minimal_eps
from ..errors import JembenchError
from ..records import make_record
from ..refine import ForwardCounter, QuenchedNoise, RefineConfig, RefinedClassifier, fixed_rng
from . import EvalContext

NAME = "robustness"
PARTIAL_SCHEMA = "jembench-robustness-partial/1"


# ------------------------------------------------------------------------------------------- the protocol
@dataclass(frozen=True)
class RobustnessProtocol:
    """The parsed protocol table (defaults = the paper setting; see ``suites/robustness.toml``)."""

    n: int = 300
    input_seed: int = 0
    batch_size: int = 50
    refine_steps: tuple[int, ...] = (0, 1, 10)
    refine_step_size: float = 1.0
    refine_noise: float = 0.01
    refine_grad_clamp: float = 0.0
    refine_x_clamp: bool = False
    eot_attack: int = 15
    eot_defense: int = 150
    eot_mode: str = "logits"
    bpda: bool = False
    pgd: bool = True
    norms: tuple[str, ...] = NORMS
    pgd_steps: int = 100
    pgd_step_size: float = 0.025
    restarts: int = 20
    random_start: bool = True
    search_steps: int = 10
    linf_eps: tuple[float, ...] = ()
    l2_eps: tuple[float, ...] = ()
    boundary: bool = True
    boundary_steps: int = 25000
    pointwise: bool = True
    pointwise_l2_search: bool = True
    start_pool: int = 0
    start_candidates: int = 10

    def refine(self, k: int) -> RefineConfig:
        return RefineConfig(n_steps=k, step_size=self.refine_step_size, noise=self.refine_noise,
                            grad_clamp=self.refine_grad_clamp or None, x_clamp=self.refine_x_clamp)

    def eps_grid(self, norm: str) -> tuple[float, ...]:
        return self.linf_eps if norm == "linf" else self.l2_eps

    def attacks(self) -> list[str]:
        names = [f"pgd-{norm}" for norm in self.norms] if self.pgd else []
        return names + (["boundary"] if self.boundary else []) + (["pointwise"] if self.pointwise else [])


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}

# table -> (field, type); "" = top level
_FIELDS: dict[str, dict[str, tuple[str, type]]] = {
    "": {"n": ("n", int), "input_seed": ("input_seed", int), "batch_size": ("batch_size", int)},
    "refine": {"steps": ("refine_steps", list), "step_size": ("refine_step_size", float),
               "noise": ("refine_noise", float), "grad_clamp": ("refine_grad_clamp", float),
               "x_clamp": ("refine_x_clamp", bool), "eot_attack": ("eot_attack", int),
               "eot_defense": ("eot_defense", int), "eot_mode": ("eot_mode", str), "bpda": ("bpda", bool)},
    "pgd": {"enabled": ("pgd", bool), "norms": ("norms", list), "steps": ("pgd_steps", int),
            "step_size": ("pgd_step_size", float), "restarts": ("restarts", int),
            "random_start": ("random_start", bool), "search_steps": ("search_steps", int),
            "linf_eps": ("linf_eps", list), "l2_eps": ("l2_eps", list)},
    "boundary": {"enabled": ("boundary", bool), "steps": ("boundary_steps", int)},
    "pointwise": {"enabled": ("pointwise", bool), "l2_binary_search": ("pointwise_l2_search", bool)},
    "start": {"pool": ("start_pool", int), "candidates": ("start_candidates", int)},
}


def parse_eps(value: Any, where: str) -> float:
    """An ε in [0, 1] pixel units: a number or a fraction string such as ``"8/255"``."""
    try:
        eps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise JembenchError(f"{where}: {value!r} is not an ε; write a number or a fraction like \"8/255\"") from None
    if isinstance(value, bool) or not math.isfinite(eps) or eps < 0:
        raise JembenchError(f"{where}: ε {value!r} must be a finite number >= 0 (in [0, 1] pixel units)")
    return eps


def parse_protocol(protocol) -> RobustnessProtocol:
    """Check the protocol table (unknown keys and wrong types are errors naming the field) → dataclass."""
    table = dict(protocol.table)
    source = f"protocol {getattr(protocol, 'path', protocol.name)}"
    table.pop("suite", None)
    sections = {"": table}
    for section in _FIELDS:
        if section:
            block = table.pop(section, {})
            if not isinstance(block, dict):
                raise JembenchError(f"{source}: [{section}] must be a table; see suites/robustness.toml")
            sections[section] = block
    values: dict[str, Any] = {}
    for section, block in sections.items():
        fields = _FIELDS[section]
        for key, value in block.items():
            name = f"{section}.{key}" if section else key
            if key not in fields:
                known = ", ".join(sorted(fields) + ([f"[{s}]" for s in _FIELDS if s] if not section else []))
                raise JembenchError(f"{source}: unknown field {name!r}; known: {known} (see suites/robustness.toml)")
            field, kind = fields[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
                raise JembenchError(f"{source}: field {name!r} must be {_KIND_NAMES[kind]}, got {value!r}")
            values[field] = value
    values["refine_steps"] = tuple(_int_list(values.get("refine_steps", [0, 1, 10]), f"{source}: refine.steps"))
    values["norms"] = tuple(values.get("norms", list(NORMS)))
    for norm in values["norms"]:
        if norm not in NORMS:
            raise JembenchError(f"{source}: pgd.norms has {norm!r}; use linf and/or l2")
    for norm in NORMS:
        key = f"{norm}_eps"
        values[key] = tuple(sorted({parse_eps(v, f"{source}: pgd.{key}") for v in values.get(key, [])}))
    cfg = RobustnessProtocol(**values)
    _validate(cfg, source)
    return cfg


def _int_list(values: list, where: str) -> list[int]:
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise JembenchError(f"{where} must be a non-empty list of integers >= 0, e.g. [0, 1, 10]")
    return sorted(set(values))


def _validate(cfg: RobustnessProtocol, source: str) -> None:
    positive = {"n": cfg.n, "batch_size": cfg.batch_size, "refine.eot_attack": cfg.eot_attack,
                "refine.eot_defense": cfg.eot_defense, "pgd.steps": cfg.pgd_steps, "pgd.restarts": cfg.restarts,
                "boundary.steps": cfg.boundary_steps, "start.candidates": cfg.start_candidates}
    for name, value in positive.items():
        if value < 1:
            raise JembenchError(f"{source}: {name} must be >= 1, got {value}")
    if cfg.search_steps < 0 or cfg.start_pool < 0 or cfg.pgd_step_size <= 0:
        raise JembenchError(f"{source}: pgd.search_steps and start.pool must be >= 0, pgd.step_size > 0")
    if cfg.refine_noise < 0 or cfg.refine_step_size < 0 or cfg.refine_grad_clamp < 0:
        raise JembenchError(f"{source}: refine.step_size, refine.noise and refine.grad_clamp must be >= 0")
    if cfg.eot_mode not in ("logits", "gradients"):
        raise JembenchError(f"{source}: refine.eot_mode must be 'logits' or 'gradients', got {cfg.eot_mode!r}")
    if cfg.eot_mode == "gradients" and "l2" in cfg.norms and cfg.pgd and cfg.refine_noise > 0:
        raise JembenchError(f"{source}: refine.eot_mode = 'gradients' uses torchattacks.EOTPGD, which is L∞ only; "
                            f"use eot_mode = 'logits' or drop 'l2' from pgd.norms")
    if cfg.pgd:
        for norm in cfg.norms:
            if not any(e > 0 for e in cfg.eps_grid(norm)):
                raise JembenchError(f"{source}: pgd.{norm}_eps needs at least one ε > 0, e.g. [0, \"8/255\"]")
    if not cfg.attacks():
        raise JembenchError(f"{source}: every attack is disabled; enable [pgd], [boundary] or [pointwise]")


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
        refine = cfg.refine(k)
        self.stochastic = refine.stochastic
        self.verify = PixelSpace(RefinedClassifier(base, refine, n_draws=cfg.eot_defense)).eval()
        gradient_eot = cfg.eot_mode == "gradients" and self.stochastic
        attack_draws = 1 if gradient_eot else cfg.eot_attack
        self.attack = PixelSpace(RefinedClassifier(base, refine, n_draws=attack_draws, bpda=cfg.bpda)).eval()
        self.eot_iter = cfg.eot_attack if gradient_eot else 1
        self.decision = PixelSpace(RefinedClassifier(base, refine, n_draws=cfg.eot_attack)).eval()


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
    pgd_cfg = PGDConfig(norm=norm, steps=cfg.pgd_steps, step_size=cfg.pgd_step_size, restarts=cfg.restarts,
                        random_start=cfg.random_start, eot_iter=models.eot_iter)

    def attack(idx: torch.Tensor, eps: float):
        idx = idx.to(x01.device)
        outcome = pgd(models.attack, x01[idx], y[idx], eps, pgd_cfg, verify=models.verify)
        return outcome.success, outcome.distance

    start = torch.where(correct.cpu(), math.inf, 0.0)
    result = minimal_eps(attack, len(x01), cfg.eps_grid(norm), cfg.search_steps, start=start)
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
                                         cfg.start_candidates)
    kept, starts = checked_starting_points(attack_model, models.verify, y[todo], target, pool01, candidates)
    kept = todo[kept.to(device)]
    l2 = torch.where(correct, math.inf, 0.0).double()
    l0 = l2.clone()
    unverified = 0
    if len(kept):
        if unit.attack == "boundary":
            adv = boundary_attack(attack_model, x01[kept], y[kept], starts, steps=cfg.boundary_steps)
        else:
            adv = pointwise_attack(attack_model, x01[kept], y[kept], starts, l2_binary_search=cfg.pointwise_l2_search)
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
    cfg = parse_protocol(protocol)
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)  # the same inputs for every model and --seed
    x, y = inputs_ctx.test_set(cfg.n)
    pool = inputs_ctx.test_set(cfg.start_pool or None) if (cfg.boundary or cfg.pointwise) else (x[:0], y[:0])
    n = len(x)
    blocks = [(b, range(b * cfg.batch_size, min(n, (b + 1) * cfg.batch_size)))
              for b in range(math.ceil(n / cfg.batch_size))]
    units = [Unit(k, attack, b) for k in cfg.refine_steps for attack in cfg.attacks() for b, _ in blocks]

    mine, partial_files = _partial_paths(ctx.options.get("record_path"))
    key = _partial_key(ckpt, protocol, ctx)
    done = _load_partials(partial_files, key)
    distributed.barrier()  # every rank has read the partial files before any rank writes one
    todo = [u for u in units if u.key not in done]
    if done:
        print(f"robustness: resuming, {len(units) - len(todo)} of {len(units)} units already done", file=sys.stderr)
    model = ckpt.model.eval()
    mine_done: dict[str, dict] = {}
    for i, unit in enumerate(todo[distributed.rank()::distributed.world_size()]):
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
    figures = write_figures(details, ckpt.name, ctx) if distributed.is_main() else []
    # the partial files are deleted by jembench.evaluate.run_suite once the record itself is on disk
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
    for k in cfg.refine_steps:
        first = by_attack[(k, cfg.attacks()[0])]
        correct = joined(first, "correct")
        metrics[f"clean_acc/k{k}"] = 100.0 * float(np.mean(correct))
        details["clean"][f"k{k}"] = correct
        for attack in cfg.attacks():
            parts = by_attack[(k, attack)]
            forwards = sum(p["forward_passes"] for p in parts)
            details["forward_passes"][f"{attack.replace('-', '/')}/k{k}"] = forwards
            if attack.startswith("pgd-"):
                norm = attack[4:]
                min_eps = joined(parts, "min_eps")
                dist = _as_array(min_eps)
                grid = list(cfg.eps_grid(norm))
                acc = [100.0 * float(np.mean(dist > e)) for e in grid]
                for eps, value in zip(grid, acc):
                    metrics[f"robust_acc/{norm}/k{k}/eps={eps:g}"] = value
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
                    metrics[f"pointwise/median_l0/k{k}"] = _median(entry["l0"])
                else:
                    metrics[f"boundary/median_l2/k{k}"] = _median(entry["l2"])
                details[attack][f"k{k}"] = entry
    return metrics, details


# --------------------------------------------------------------------------------------------- curves
def accuracy_curve(distances_: list[float | None], xs: np.ndarray) -> np.ndarray:
    """Accuracy (%) at each distance budget: share of inputs whose smallest adversarial is farther."""
    d = _as_array(distances_)
    return np.array([100.0 * float(np.mean(d > x)) for x in xs]) if len(d) else np.full(len(xs), np.nan)


_PANELS = {
    "linf": ("pgd", "linf", "min_eps", "PGD L∞ ε ([0, 1] pixels)"),
    "l2": ("pgd", "l2", "min_eps", "PGD L2 ε ([0, 1] pixels)"),
    "boundary": ("boundary", None, "l2", "boundary attack L2 distance ([0, 1] pixels)"),
    "pointwise": ("pointwise", None, "l0", "pointwise attack L0 distance (changed entries)"),
}


def curves(details: dict[str, Any], kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"k<K>": (x, accuracy %)} for one panel kind (linf, l2, boundary, pointwise) of a record's details."""
    family, norm, field, _ = _PANELS[kind]
    entries = details.get(family, {})
    entries = entries.get(norm, {}) if norm else entries
    out = {}
    for k_name, entry in entries.items():
        values = [v for v in entry[field] if v is not None]
        top = max(entry.get("eps") or [0.0]) if family == "pgd" else max(values, default=0.0)
        xs = np.linspace(0.0, top if top > 0 else 1.0, 201)
        out[k_name] = (xs, accuracy_curve(entry[field], xs))
    return out


def plot_records(records: list[dict], target: str | Path, kinds: list[str] | None = None,
                 labels: list[str] | None = None) -> Path:
    """Draw the robustness curves of several records (e.g. softmax vs JEM) on one figure, one panel per kind
    (default: every kind present), and save it atomically to ``target`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        raise JembenchError("no robustness records to plot; pass record files written by `jembench eval "
                            "--suite robustness`")
    for rec in records:
        if rec.get("suite") != NAME:
            raise JembenchError(f"record of {rec.get('model', {}).get('name', '?')} is a {rec.get('suite')!r} "
                                f"record; pass robustness records")
    kinds = kinds or [k for k in _PANELS if any(curves(r.get("details", {}), k) for r in records)]
    if not kinds:
        raise JembenchError("the records hold no robustness curves; regenerate them with `jembench eval`")
    labels = labels or [r["model"]["name"] for r in records]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, kind in zip(axes[0], kinds):
        for r_i, (rec, label) in enumerate(zip(records, labels)):
            for k_i, (k_name, (xs, acc)) in enumerate(sorted(curves(rec["details"], kind).items(),
                                                             key=lambda kv: int(kv[0][1:]))):
                ax.plot(xs, acc, styles[r_i % len(styles)], color=f"C{k_i}",
                        label=f"{label} K={k_name[1:]}")
        ax.set_xlabel(_PANELS[kind][3])
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("robustness–distortion (JEM Fig. 5 / Fig. 10)", fontsize=9)
    fig.tight_layout()
    atomic.save_figure(target, fig)
    plt.close(fig)
    return Path(target)


def write_figures(details: dict[str, Any], name: str, ctx: EvalContext) -> list[str]:
    """One PNG per curve family present, beside the record: ``<stem>_pgd.png`` (L∞ | L2, Fig. 5) and
    ``<stem>_gradient_free.png`` (boundary | pointwise, Fig. 10)."""
    record = {"suite": NAME, "model": {"name": name}, "details": details}
    written = []
    for suffix, kinds in (("pgd", ["linf", "l2"]), ("gradient_free", ["boundary", "pointwise"])):
        present = [k for k in kinds if curves(details, k)]
        if present:
            path = ctx.figure_path(suffix)
            plot_records([record], path, kinds=present)
            written.append(path.name)
    return written


# ------------------------------------------------------------------------------------------ reporting
def _eps_label(norm: str, eps: float) -> str:
    scaled = eps * 255
    if norm == "linf" and eps > 0 and abs(scaled - round(scaled)) < 1e-3:
        return f"L∞ {round(scaled)}/255"
    return f"{'L∞' if norm == 'linf' else 'L2'} {eps:g}"


def format_table(record: dict) -> str:
    m = record["metrics"]
    ks = sorted({int(key.split("/k")[1]) for key in m if key.startswith("clean_acc/k")})
    columns: list[tuple[str, str]] = [("Clean %", "clean_acc/k{k}")]
    for key in m:
        if key.startswith("robust_acc/") and key.split("/")[2] == f"k{ks[0]}":
            _, norm, _, eps = key.split("/")
            columns.append((f"{_eps_label(norm, float(eps[4:]))} %", key.replace(f"/k{ks[0]}/", "/k{k}/")))
    for key, label in (("boundary/median_l2/k{k}", "Boundary med. L2"), ("pointwise/median_l0/k{k}",
                                                                          "Pointwise med. L0")):
        if key.format(k=ks[0]) in m:
            columns.append((label, key))
    rows = [[record["model"]["name"], k] + [f"{m[pattern.format(k=k)]:.4g}" for _, pattern in columns] for k in ks]
    return tabulate(rows, headers=["Model", "K"] + [c for c, _ in columns], tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    """Clean and robust accuracy at the ε closest to 8/255 (L∞) and 0.5 (L2), for the largest K."""
    m = record["metrics"]
    ks = sorted({int(key.split("/k")[1]) for key in m if key.startswith("clean_acc/k")})
    k = ks[-1]
    out = {f"Clean % K={k}": m[f"clean_acc/k{k}"]}
    for norm, ref in (("linf", 8 / 255), ("l2", 0.5)):
        keys = [key for key in m if key.startswith(f"robust_acc/{norm}/k{k}/eps=")]
        if keys:
            best = min(keys, key=lambda key: abs(float(key.split("eps=")[1]) - ref))
            out[f"{_eps_label(norm, float(best.split('eps=')[1]))} % K={k}"] = m[best]
    return out
