"""Running the robustness suite: the attacked inputs, the units shared among ranks, resume from partial results.

Work is split into units (K, attack, block of ``batch_size`` inputs; :meth:`RobustnessProtocol.units`), each
attacked by :func:`jembench.suites.robustness.units.run_unit`. Under ``torchrun`` the units are shared among
ranks and gathered into one record equal to the single-process one. After each unit its result is saved
(atomically) through :class:`jembench.partials.PartialStore` as ``<record stem>.partial.<protocol
hash>.<unit>.json`` with the checkpoint SHA-256, seed and dataset; a rerun of the same protocol to the same record
resumes from there, another protocol's partial work is left alone, and the files are deleted once the record is
complete. Progress: a bar per unit and one inside it (PGD steps / attack queries) on a terminal, one line per
finished unit otherwise (:mod:`jembench.progress`).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch

from ... import distributed, progress
from ...attacks.inputs import select
from ...data import length, load_dataset, stack_dataset
from ...figures import robustness_figures
from ...partials import PartialStore
from .unit_results import unit_problem
from ...records import make_record
from ..context import EvalContext
from . import units as attack_units
from .protocol import RobustnessProtocol, Unit
from .summary import summarize

NAME = "robustness"


def attacked_inputs(cfg: RobustnessProtocol, ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked test images (in [-1, 1]) and labels, in attack order (:mod:`jembench.attacks.inputs`)."""
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)  # the same inputs for every model and --seed
    if cfg.selection == "random":
        return inputs_ctx.test_set(cfg.n)
    ds = load_dataset(ctx.dataset, "test", ctx.data_root, download=ctx.download)
    idx = select(cfg.selection, length(ds), cfg.n, cfg.input_seed)
    assert idx is not None, "only the random selection leaves the choice to the test split"
    if ctx.dataset.startswith("folder:") and distributed.is_main():
        print(f"robustness: selection {cfg.selection!r} indexes {ctx.dataset} in its sorted (class-folder) order, "
              f"not torchvision's test order: these are not the official images", file=sys.stderr)
    return stack_dataset(torch.utils.data.Subset(ds, idx))


def partial_store(ckpt, protocol, ctx: EvalContext, blocks: list[range]) -> PartialStore | None:
    """Where this evaluation's finished units are kept (None when it writes no record)."""
    if not ctx.record_path:
        return None

    def valid(unit: str, result: Any) -> bool | str:
        return unit_problem(unit, result, len(blocks[int(unit.rpartition("/b")[2])])) or True

    key = {"checkpoint_sha256": ckpt.sha256, "seed": int(ctx.seed), "dataset": ctx.dataset, **ctx.execution_key()}
    return PartialStore(ctx.record_path, protocol.hash, key, valid=valid, what="robustness")


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start_time = time.perf_counter()
    cfg: RobustnessProtocol = protocol.settings
    x, y = attacked_inputs(cfg, ctx)
    gradient_free = cfg.boundary.enabled or cfg.pointwise.enabled
    inputs_ctx = dataclasses.replace(ctx, seed=cfg.input_seed)
    pool = inputs_ctx.test_set(cfg.start.pool or None) if gradient_free else (x[:0], y[:0])
    blocks = cfg.blocks(len(x))
    units = cfg.units(len(x))

    store = partial_store(ckpt, protocol, ctx, blocks)
    done = store.load_all(u.key for u in units) if store is not None else {}
    distributed.barrier()  # every rank has read the partial files before any rank writes one
    todo = [u for u in units if u.key not in done]
    if done:
        print(f"robustness: resuming, {len(units) - len(todo)} of {len(units)} units already done", file=sys.stderr)
    mine = _run_units(distributed.shard(todo), ckpt.model.eval(), cfg, x, y, pool, blocks, ctx, store)
    for gathered in distributed.all_gather_objects(mine):
        done.update(gathered)
    metrics, details = summarize(cfg, units, done, y.tolist())
    figures = (robustness_figures(details, ckpt.name, ctx.dataset, ctx.figure_path, ctx.label)
               if distributed.is_main() else [])
    # the partial files are deleted by jembench.evaluation.run_suite once the record itself is on disk
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=figures, seed=ctx.seed, wall_time_s=time.perf_counter() - start_time)


def _run_units(units: Sequence[Unit], model: torch.nn.Module, cfg: RobustnessProtocol, x: torch.Tensor,
               y: torch.Tensor, pool: tuple[torch.Tensor, torch.Tensor], blocks: list[range], ctx: EvalContext,
               store: PartialStore | None) -> dict[str, dict]:
    """Attack this rank's ``units``, saving each result as it finishes; returns unit key → result."""
    results: dict[str, dict] = {}
    with progress.bar(total=len(units), desc="robustness", unit="unit", leave=True) as bar:
        for unit in units:
            t0 = time.perf_counter()
            rows = blocks[unit.block]
            decision = unit.attack in ("boundary", "pointwise")
            total = getattr(cfg, unit.attack).max_queries or None if decision else None
            with progress.bar(total=total, desc=f"  {unit.key}", unit="query" if decision else "step") as inner:
                results[unit.key] = attack_units.run_unit(unit, model, cfg, x[rows.start:rows.stop],
                                                          y[rows.start:rows.stop], pool, ctx.seed, ctx.device,
                                                          tick=inner.update, micro_batch=ctx.options.micro_batch)
            if store is not None:
                store.save(unit.key, results[unit.key])
            bar.update(1)
            seconds = time.perf_counter() - t0
            if distributed.rank() == 0:
                progress.unit_done(f"robustness {unit.key}", f"{len(rows)} inputs", seconds)
            else:  # bars and unit lines are rank 0's; the other ranks say what they did
                print(f"robustness: [rank {distributed.rank()}] {unit.key} done in {seconds:.1f}s", file=sys.stderr)
    return results
