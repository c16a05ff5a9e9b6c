"""Divergence guard: detect a diverging run, roll back to the last good state, apply the JEM paper's remedies.

JEM training "regularly diverged" (Grathwohl et al. 2020, §6); App. G.3: a chain drawn from the replay buffer
with a far higher energy than the rest produces gradients orders of magnitude larger than the others and the
model blows up. What worked: (1) a lower learning rate, (2) more SGLD steps per iteration (20 → 40), and
(3) restarting from a saved checkpoint with a different random seed. The guard automates exactly that:

* **detect** — per iteration, on the device and without a host sync, it ORs a flag with: loss not finite,
  |loss| > ``loss_bound``, energy gap E(x̂) − E(x) not finite or |gap| > ``gap_bound`` (0 turns a bound off).
  The presets' bounds are the official codes' stopping rules, so the guard acts exactly where the official run
  would have stopped: JEM and JEM++ stop when |L| > 1e8 (train_wrn_ebm.py:354-357, train_jempp.py:286-290),
  SADA-JEM when its p(x) term |E(x) − E(x̂)| > 1e5 (train_sadajem.py:218-222) — where they stop (JEM: a
  deliberate ZeroDivisionError; JEM++ / SADA-JEM: return without a final checkpoint), the guard recovers.
  The flag (plus "all weights finite") is read — one sync, all-reduced under DDP — only
  at *check points*: the log cadence, before every checkpoint write and at the end, so no bad state ever
  reaches the disk;
* **remember** — after every passing check, the whole training state (weights, optimizer, scheduler, replay
  buffer, RNG states, iteration) is copied in memory (on the training device; no disk round trip); the last
  ``history`` (3) copies are kept;
* **recover** — on a failing check it restores the newest copy — or, when the run fails again before getting
  past the previous failure, the next older one (a state that passed its check can already be sliding
  towards divergence) — multiplies the learning rate by
  ``recovery_lr_factor`` and the SGLD steps by ``recovery_sgld_factor`` (1 disables either) and reseeds
  the RNGs (a new seed), logs the event, and training continues from the restored iteration;
* **give up** — after ``max_recoveries`` rollbacks (counted over the whole run, resumes included) it
  restores the last good state once more, lets the caller write it as the checkpoint, and raises a
  one-line :class:`TrainingDiverged` saying what to change;
* **stop** (``divergence = "stop"``, the ``*-official`` presets) — no rollback-and-retry: at the first failing
  check the last good state is restored, written as the checkpoint, and the run ends with
  :class:`TrainingDiverged` naming the first bad iteration and the rule that fired — the official runs' end
  (the official code stops *without* writing a checkpoint; its last one is up to an epoch older).

A run that recovered says so: :meth:`DivergenceGuard.summary` is the ``training`` block of every checkpoint
(``recovered_divergences``, where; :func:`jembench.reference_models.train_state.save_state`), which every record
evaluated from it copies into its ``model`` section, and which ``jembench eval`` and the leaderboard show.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from jembench.errors import JembenchError
from jembench.seeding import rng_state, seed_everything, set_rng_state

REASONS = ("loss not finite", "|loss| > loss_bound", "energy gap not finite or > gap_bound", "weights not finite")
#: exit code of a run that ended on divergence (stopped, or the recovery budget spent): not a bad input (2)
DIVERGED_EXIT = 3


class TrainingDiverged(JembenchError):
    """The run ended on divergence; the checkpoint holds the last good state. Exit code 3."""

    exit_code = DIVERGED_EXIT


@dataclass
class Snapshot:
    iteration: int
    model: dict
    optimizer: dict
    scheduler: dict
    buffer: dict | None
    rng: dict


@dataclass
class DivergenceGuard:
    loss_bound: float
    gap_bound: float
    max_recoveries: int
    lr_factor: float = 0.5
    sgld_factor: float = 2.0
    recoveries: int = 0
    events: list[dict] = field(default_factory=list)
    all_reduce_max: Callable[[torch.Tensor], torch.Tensor] | None = None  # DDP: OR the flags of every rank
    _flags: torch.Tensor | None = None  # (4,) bool: which REASONS fired since the last check
    _clean: torch.Tensor | None = None  # iterations since the last check before the first bad one
    _first_loss: torch.Tensor | None = None  # the loss of the first bad iteration
    _window_start: int = 0  # iteration of the last check
    history: int = 3  # good states kept in memory
    _snapshots: deque = field(default_factory=deque)
    _last_failure: int | None = None  # detection iteration of the previous, not yet overcome divergence
    _last_target: int = 0  # the iteration that divergence rolled back to

    # ------------------------------------------------------------------------------------------ detect
    @torch.no_grad()
    def observe(self, loss: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        """Fold one iteration's loss and energy gap into the flag (device ops only: no host sync)."""
        loss = loss.detach().float()
        no = torch.zeros_like(loss, dtype=torch.bool)
        gap = stats.get("e_gap")
        gap_bound = self.gap_bound or math.inf  # 0 = off
        gap_bad = (~torch.isfinite(gap) | (gap.abs() > gap_bound)) if gap is not None else no
        flags = torch.stack([~torch.isfinite(loss), loss.abs() > (self.loss_bound or math.inf), gap_bad, no])
        if self._flags is None or self._clean is None or self._first_loss is None:  # the window's first iteration
            self._flags, self._clean, self._first_loss = no.expand(4).clone(), torch.zeros_like(loss), loss.clone()
        seen = self._flags.any()
        self._first_loss = torch.where(~seen & flags.any(), loss, self._first_loss)
        self._flags = self._flags | flags
        self._clean = self._clean + (~self._flags.any()).float()

    @torch.no_grad()
    def check(self, model: torch.nn.Module, iteration: int) -> dict | None:
        """One host sync (all ranks agree under DDP): ``None`` when all is well, else what fired and where."""
        weights_ok = torch.stack([p.isfinite().all() for p in model.parameters()]).all()
        device = weights_ok.device
        first_loss: torch.Tensor | None
        if self._flags is None or self._clean is None:  # no iteration since the last check (set together)
            flags, clean, first_loss = torch.zeros(4, device=device), torch.zeros((), device=device), None
        else:
            flags, clean, first_loss = self._flags.float(), self._clean, self._first_loss
        flags = torch.cat([flags[:3], (~weights_ok).float().view(1)])
        packed = torch.cat([flags, -clean.view(1)])  # max over ranks: any flag, the earliest bad iteration
        if self.all_reduce_max is not None:
            packed = self.all_reduce_max(packed)
        values = packed.tolist()
        window_start, self._window_start = self._window_start, iteration
        self._flags = self._clean = self._first_loss = None
        if not any(v > 0 for v in values[:4]):
            return None
        first = window_start + int(-values[4]) + 1 if any(v > 0 for v in values[:3]) else iteration
        own_bad = first_loss is not None and bool(flags[:3].any())  # failure path only: a second sync is fine
        return {"reasons": [r for r, v in zip(REASONS, values[:4]) if v > 0], "first_bad_iteration": first,
                "first_bad_loss": first_loss.item() if own_bad and first_loss is not None else None}

    # ------------------------------------------------------------------------------------ remember / restore
    def remember(self, iteration: int, model, optimizer, scheduler, buffer) -> None:
        """Copy the (good) training state in memory, on its device."""
        if self._last_failure is not None and iteration > self._last_failure:
            self._last_failure = None  # got past the last failure point
        self._snapshots.append(Snapshot(
            iteration=iteration,
            model={k: v.detach().clone() for k, v in model.state_dict().items()},
            optimizer=copy.deepcopy(optimizer.state_dict()),
            scheduler=copy.deepcopy(scheduler.state_dict()),
            buffer={"images": buffer.images.clone(), "labels": buffer.labels.clone()} if buffer is not None else None,
            rng=rng_state(_device_of(model))))
        while len(self._snapshots) > self.history:
            self._snapshots.popleft()

    def restore(self, model, optimizer, scheduler, buffer) -> int:
        """Put the newest remembered state back; returns its iteration."""
        if not self._snapshots:
            raise JembenchError("training diverged before the first good state was remembered; lower --lr or "
                                "--log-every so the guard checks earlier")
        snap = self._snapshots[-1]
        model.load_state_dict(snap.model)
        optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        if buffer is not None and snap.buffer is not None:
            buffer.images = snap.buffer["images"].clone()
            buffer.labels = snap.buffer["labels"].clone()
            buffer.size = len(buffer.images)
        set_rng_state(snap.rng, _device_of(model))
        self._flags = self._clean = self._first_loss = None
        self._window_start = snap.iteration
        return snap.iteration

    # ------------------------------------------------------------------------------------------- recover
    def recover(self, found: dict, at_iteration: int, model, optimizer, scheduler, buffer, cfg, new_seed: int
                ) -> tuple[Any, dict]:
        """Roll back to the last good state and apply the remedies; returns (the remedied config, the event).

        When the budget is spent the state is still rolled back but nothing is remedied and the event is a
        ``give_up`` (the loop then writes the checkpoint and raises :meth:`give_up_message`).
        """
        if self._last_failure is not None and at_iteration <= self._last_failure:
            # failed again before getting past the previous failure: start from an older state than last time
            while len(self._snapshots) > 1 and self._snapshots[-1].iteration >= self._last_target:
                self._snapshots.pop()
        self._last_failure = at_iteration
        restored = self._last_target = self.restore(model, optimizer, scheduler, buffer)
        event: dict[str, Any] = {"event": "divergence", "detected_at": at_iteration, **found,
                                 "rolled_back_to": restored, "recovery": self.recoveries + 1}
        if self.recoveries >= self.max_recoveries:
            set_base_lr(optimizer, scheduler, cfg.lr)  # the saved state carries the settings reached so far
            event["event"] = "give_up"
            self.events.append(dict(event))
            return cfg, event
        self.recoveries += 1
        # remedies act on the current settings (``cfg``), not on those of the (possibly older) restored state
        steps = math.ceil(cfg.sgld.n_steps * self.sgld_factor) if cfg.sgld.n_steps > 0 else 0
        cfg = cfg.replace(lr=cfg.lr * self.lr_factor, sgld=dataclasses.replace(cfg.sgld, n_steps=steps))
        set_base_lr(optimizer, scheduler, cfg.lr)
        seed_everything(new_seed)
        event.update(lr=cfg.lr, sgld_steps=cfg.sgld.n_steps, seed=new_seed)
        self.events.append(dict(event))
        return cfg, event

    def stop(self, found: dict, at_iteration: int, model, optimizer, scheduler, buffer) -> dict:
        """``divergence = "stop"``: restore the last good state (for the caller to write) without remedies; the
        ``stopped`` event."""
        restored = self.restore(model, optimizer, scheduler, buffer)
        event = {"event": "stopped", "detected_at": at_iteration, **found, "rolled_back_to": restored}
        self.events.append(dict(event))
        return event

    def rules(self, reasons: list[str]) -> str:
        """The rules that fired, with their bounds (``|loss| > loss_bound = 1e+08``; a bound that is off, 0, is
        left out: only "not finite" can have fired then)."""
        bounds = {REASONS[1]: self.loss_bound, REASONS[2]: self.gap_bound}
        text = {REASONS[2]: "energy gap not finite"} if not self.gap_bound else {}
        return "; ".join(f"{r} = {bounds[r]:g}" if bounds.get(r) else text.get(r, r) for r in reasons)

    def stop_message(self, event: dict, ckpt: str) -> str:
        return (f"training diverged at iteration {event['first_bad_iteration']} ({self.rules(event['reasons'])}; "
                f"checked at {event['detected_at']}) and --divergence stop ends the run there, as the official code "
                f"does; {ckpt} holds the last good state (iteration {event['rolled_back_to']}): resume it with "
                f"--resume and a lower --lr, or with --divergence recover to roll back and retry")

    def summary(self, mode: str) -> dict[str, Any]:
        """The ``training`` block of a checkpoint (and of every record made from it): the divergence handling
        (``recover`` / ``stop``), how many divergences the run recovered from and at which iterations they began,
        and, when the run ended on one, where."""
        def began(event: dict) -> int:  # events of runs resumed from older versions may lack the first bad one
            return int(event.get("first_bad_iteration", event.get("detected_at", 0)))

        recovered = [e for e in self.events if e.get("event") == "divergence"]
        block: dict[str, Any] = {"divergence": mode, "recovered_divergences": self.recoveries,
                                 "recovered_at": [began(e) for e in recovered]}
        ended = [e for e in self.events if e.get("event") in ("stopped", "give_up") and not e.get("resumed")]
        if ended:
            block["stopped_at"] = began(ended[-1])
            block["stop_reasons"] = [str(r) for r in ended[-1].get("reasons", [])]
        return block

    def give_up_message(self, event: dict, ckpt: str) -> str:
        return (f"training diverged at iteration {event['detected_at']} ({'; '.join(event['reasons'])}) and the "
                f"recovery budget is spent (max_recoveries={self.max_recoveries}); {ckpt} now holds the last good "
                f"state (iteration {event['rolled_back_to']}): resume it with --resume and a lower --lr, more "
                f"--sgld-steps, or a higher --max-recoveries")

    def state_dict(self) -> dict:
        return {"recoveries": self.recoveries, "events": list(self.events)}

    def load_state_dict(self, state: dict) -> None:
        """The budget and events of a resumed run; a run that ended on divergence goes on, so its end is marked
        ``resumed`` (no longer where this run stopped)."""
        self.recoveries = int(state.get("recoveries", 0))
        self.events = [dict(e, resumed=True) if e.get("event") in ("stopped", "give_up") else dict(e)
                       for e in state.get("events", [])]


def set_base_lr(optimizer: torch.optim.Optimizer, scheduler, lr: float) -> None:
    """Make ``lr`` the schedule's base learning rate, keeping its current factor (warm-up, decay): used by the
    lr remedy and when a resumed run is given another ``--lr``. A no-op (bit for bit) when it already is."""
    for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
        if base != lr:
            group["lr"] *= lr / base
            group["initial_lr"] = lr
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)


def _device_of(model) -> torch.device:
    """Where the model computes (its random stream is part of a remembered state)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))
