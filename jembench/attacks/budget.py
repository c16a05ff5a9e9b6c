"""Query and wall-time budgets for decision-based attacks: count every query, keep the best adversarial seen,
stop the attack cleanly when the budget is spent.

foolbox 3's BoundaryAttack stops after ``steps`` (2 queries each) and its PointwiseAttack only when no entry can
be reset any more — on a 3×32×32 input that is tens of thousands of batched queries, minutes per input with an
SGLD-refined model. Neither has a query or time budget (hand-written here): :class:`QueryBudget` wraps the
attacked model, counts the queries each input receives (foolbox queries the whole batch at every call, so each
call is one query per input), keeps per input the best adversarial among the points it was queried at — by
the attack's own objective: L2 for boundary, L0 then L2 for pointwise — and raises :class:`BudgetSpent` at the
first query past ``max_queries`` (per input) or once ``max_seconds`` have passed. :func:`run_with_budget`
catches it and returns those best points instead of foolbox's (which never returns from a stopped run).

A budget that stops an attack makes its distances upper bounds of what the full attack would find; the record
says per input how many queries it used and whether the budget stopped it. A ``max_seconds`` stop depends on
the machine's speed, a ``max_queries`` stop does not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import distances


class BudgetSpent(Exception):
    """Raised by :class:`QueryBudget` inside the attack; ``reason`` is ``"queries"`` or ``"time"``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def objective(x01: torch.Tensor, adv01: torch.Tensor, norm: str) -> torch.Tensor:
    """What the attack minimises, as one number per input (smaller = better): L2, or L0 with L2 breaking ties
    (the L2 part is < 1 after scaling by √D + 1)."""
    l2 = distances(x01, adv01, "l2").double()
    if norm == "l2":
        return l2
    return distances(x01, adv01, "l0").double() + l2 / (math.sqrt(x01[0].numel()) + 1)


class QueryBudget(nn.Module):
    """``model01`` as a decision-based attack sees it, with a per-input query budget and a wall-time budget.

    ``x01`` / ``y`` are the attacked inputs (foolbox calls the model with batches of exactly these rows);
    ``max_queries`` / ``max_seconds`` = 0 means no limit; ``tick(n)`` is called after each query batch
    (progress). ``queries`` counts the queries per input, ``best`` / ``best_score`` hold the best adversarial seen.
    """

    def __init__(self, model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, norm: str, max_queries: int = 0,
                 max_seconds: float = 0.0, tick: Callable[[int], None] | None = None):
        super().__init__()
        self.model = model01
        self.x01, self.y, self.norm = x01, y, norm
        self.max_queries, self.max_seconds, self.tick = int(max_queries), float(max_seconds), tick
        self.queries = torch.zeros(len(x01), dtype=torch.long)
        self.best = x01.clone()
        self.best_score = torch.full((len(x01),), math.inf, dtype=torch.float64, device=x01.device)
        self.started = time.perf_counter()
        self.stopped: str | None = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if len(batch) != len(self.x01):
            raise RuntimeError(f"the attack queried {len(batch)} rows, expected {len(self.x01)} (one per input)")
        if self.max_queries and int(self.queries.max()) >= self.max_queries:
            self.stopped = "queries"
        elif self.max_seconds and int(self.queries.max()) > 0 \
                and time.perf_counter() - self.started >= self.max_seconds:  # the first query always runs
            self.stopped = "time"
        if self.stopped:
            raise BudgetSpent(self.stopped)
        logits = self.model(batch)
        self.queries += 1
        with torch.no_grad():  # no host sync: every row's score is computed, the better ones kept by torch.where
            fooled = logits.argmax(1) != self.y
            score = torch.where(fooled, objective(self.x01, batch.detach(), self.norm), math.inf)
            better = score < self.best_score
            self.best = torch.where(better.view(-1, *([1] * (batch.dim() - 1))), batch.detach(), self.best)
            self.best_score = torch.where(better, score, self.best_score)
        if self.tick is not None:
            self.tick(1)
        return logits


@dataclass
class BudgetedResult:
    """The attack's adversarials (foolbox's, or the best queried points when the budget stopped it), the
    queries each input used, and why the attack stopped early (``None`` = it finished)."""

    adv: torch.Tensor
    queries: torch.Tensor
    stopped: str | None


def run_with_budget(attack: Callable[[nn.Module], torch.Tensor], budget: QueryBudget) -> BudgetedResult:
    """Run ``attack(model)`` (a foolbox call on ``budget`` as the model) and stop it cleanly at the budget."""
    try:
        adv = attack(budget.eval())
    except BudgetSpent:
        # both attacks query their (checked, adversarial) starting points first, so every input has one
        adv = budget.best.clone()
    return BudgetedResult(adv=adv.detach(), queries=budget.queries.clone(), stopped=budget.stopped)
