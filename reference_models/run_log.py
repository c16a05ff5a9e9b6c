"""The run folder's records of a training run: ``config.json``, ``log.csv`` and ``events.jsonl``, and the rule that a
fresh run never replaces an earlier one.

``log.csv`` has one row every ``log_every`` iterations (CE, accuracy, E(data), E(samples), their gap, the SGLD
gradient norm, iterations/s; statistics averaged over ranks under DDP); on resume or rollback the rows past that
iteration are dropped. ``events.jsonl`` has one JSON line per run event — start / resume (with the resolved
config), divergence (what fired, where, the rollback and the remedies), give_up, stopped (``divergence = "stop"``),
select (split, input noise, accuracy), interrupted, finish; divergence, give_up, stopped and finish carry
``recovered_divergences``, the count every checkpoint's ``training`` block holds too.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import torch

from jembench import atomic, distributed, untrusted
from jembench.errors import JembenchError

from .config import TrainConfig
from .train_state import TrainState

LOG_FIELDS = ["iteration", "epoch", "lr", "loss", "ce", "acc", "e_data", "e_samples", "e_gap", "sgld_grad_norm",
              "it_per_s"]


RUN_FILES = ("last.pt", "events.jsonl", "log.csv", "config.json")


def refuse_to_overwrite(out_dir: Path, method: str) -> None:
    """A fresh run never replaces an earlier run's checkpoint, log or events (``--resume`` continues one)."""
    present = [name for name in RUN_FILES if (out_dir / name).exists()]
    if present:
        raise JembenchError(f"run folder {out_dir} already holds a run ({', '.join(present)}); continue it with "
                            f"`jembench train {method} --resume {out_dir}` or choose another folder with --out "
                            f"(nothing was changed)")


def config_summary(cfg: TrainConfig, total_iters: int, iters_per_epoch: int, n_train: int, world: int) -> str:
    """One line: what is trained on what, for how long, with which network, sampler and optimiser."""
    parts = [f"{cfg.method} on {cfg.dataset}", f"{total_iters} iterations ({iters_per_epoch}/epoch, "
             f"{n_train} training images{f', {cfg.holdout} held out' if cfg.holdout else ''})",
             f"WRN-{cfg.depth}-{cfg.width}{'' if cfg.norm == 'none' else ' ' + cfg.norm + ' norm'}",
             f"batch {cfg.batch_size}", f"{cfg.optimizer} lr {cfg.lr:g}"]
    if cfg.px_weight > 0:
        parts.append(f"SGLD K={cfg.sgld.n_steps} on {cfg.px_batch_size or cfg.batch_size} chains, buffer "
                     f"{cfg.buffer_size} ({cfg.init})")
    if cfg.sam_rho > 0:
        parts.append(f"{'ASAM' if cfg.sam_adaptive else 'SAM'} rho {cfg.sam_rho:g}")
    if cfg.select_best != "none":
        noise = f" with σ = {cfg.select_noise:g}" if cfg.select_noise else ""
        parts.append(f"best.pt on {cfg.select_best} accuracy{noise}")
    parts.append("divergence: stop (as the official code)" if cfg.divergence == "stop" else
                 f"divergence: roll back and retry (up to {cfg.max_recoveries}x)")
    if world > 1:
        parts.append(f"{world} processes")
    return ", ".join(parts)


def log_row(state: TrainState, loss: torch.Tensor, stats: dict, iters_per_epoch: int, world: int) -> dict:
    """The CSV row (statistics averaged over ranks under DDP)."""
    names = ["loss", *stats]
    values = torch.stack([loss.float(), *(v.float() for v in stats.values())])
    if world > 1:
        values = distributed.all_reduce_mean(values)
    row: dict[str, Any] = {"iteration": state.iteration, "epoch": state.iteration / iters_per_epoch,
                           "lr": state.optimizer.param_groups[0]["lr"]}
    row.update(zip(names, values.tolist()))
    return row


class RunLog:
    """CSV log of training statistics; on resume / rollback, rows past that iteration are dropped."""

    def __init__(self, path: Path, keep_up_to: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if keep_up_to is not None and path.is_file():
            self.truncate(keep_up_to)
        elif keep_up_to is None or not path.is_file():
            with atomic.atomic_path(path) as tmp:
                tmp.write_text(",".join(LOG_FIELDS) + "\n")

    def truncate(self, iteration: int) -> None:
        if not self.enabled:
            return
        text = untrusted.read_text(self.path, "log")
        try:
            rows = [r for r in csv.DictReader(io.StringIO(text, newline="")) if int(r["iteration"]) <= iteration]
        except (KeyError, ValueError, TypeError, csv.Error) as exc:
            raise JembenchError(f"training log {self.path} is malformed ({type(exc).__name__}: {str(exc)[:80]}); "
                                f"delete it or start a new run folder") from None
        with atomic.atomic_path(self.path) as tmp, open(tmp, "w", newline="") as out:
            writer = csv.DictWriter(out, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self.enabled:
            try:
                with open(self.path, "a", newline="") as fh:
                    csv.DictWriter(fh, LOG_FIELDS, extrasaction="ignore").writerow(row)
            except OSError as exc:  # full disk, quota, read-only: one line (the checkpoint is written atomically)
                raise atomic.write_error(self.path, exc) from None


class RunEvents:
    """``events.jsonl``: one JSON line per run event — start / resume (with the resolved config), divergence
    (what fired, where, the rollback and the remedies), give_up, stopped, select, interrupted, finish."""

    def __init__(self, path: Path, enabled: bool, fresh: bool):
        self.path, self.enabled = path, enabled
        if enabled and fresh:
            atomic.write_text(path, "")
        elif enabled and (path.exists() or path.is_symlink()):  # appended to: a FIFO or device would block
            untrusted.check_file(path, "log", label="events log")

    def write(self, event: str, iteration: int, **fields: Any) -> None:
        if self.enabled:
            line = json.dumps({"event": event, "iteration": iteration, "time": time.time(), **fields}, default=str)
            try:
                with open(self.path, "a") as fh:
                    fh.write(line + "\n")
            except OSError as exc:
                raise atomic.write_error(self.path, exc) from None
