"""Per-input minimal ε of a fixed-ε attack: an ε grid, then binary search inside each input's bracket.

JEM App. F: "PGD uses binary search to determine minimal epsilons for every input and we plot the resulting
robustness-distortion curves." Here the attack first runs at every ε of the protocol's grid (so the robust
accuracies at those ε are measured, not interpolated), then ``steps`` bisections refine each broken input's
bracket [largest ε that failed, smallest ε that succeeded]. Bookkeeping keeps the *best* adversarial: an
input's minimal ε is the smallest distance of any verified adversarial found, at any ε (an adversarial of
norm d is valid for every budget ≥ d). Hence robust accuracy(ε) = share of inputs with minimal ε > ε is
non-increasing in ε by construction, and at ε = 0 it is the clean accuracy.

Inputs whose bisection midpoints coincide are attacked as one batch (midpoints are dyadic inside the grid
brackets, so they do coincide). Hand-written: neither torchattacks nor foolbox 3 has an ε search for
fixed-ε attacks (foolbox's is a TODO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

# attack(indices, eps) -> (success (len(indices),) bool, distance (len(indices),) float, inf where no success)
FixedEpsAttack = Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SearchResult:
    """Per input: ``min_eps`` (smallest verified adversarial distance found, ``inf`` if none up to the largest
    grid ε), the final bracket [``lower``, ``upper``] (``upper`` = ``inf`` when unbroken) and how many
    attack calls (batches) were made."""

    min_eps: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    n_calls: int


def minimal_eps(attack: FixedEpsAttack, n: int, grid: Sequence[float], steps: int,
                start: torch.Tensor | None = None) -> SearchResult:
    """Search minimal ε for ``n`` inputs over ``grid`` then ``steps`` bisections.

    ``start`` (optional, (n,)) holds distances already known (e.g. 0 for inputs misclassified when clean,
    ``inf`` elsewhere); those inputs are not attacked at budgets their known distance already covers.
    """
    grid = sorted({float(e) for e in grid})
    best = torch.full((n,), float("inf"), dtype=torch.float64) if start is None else start.double().cpu().clone()
    lower = torch.zeros(n, dtype=torch.float64)
    upper = torch.full((n,), float("inf"), dtype=torch.float64)
    upper[best < float("inf")] = best[best < float("inf")]
    calls = 0

    def run(idx: torch.Tensor, eps: float) -> None:
        nonlocal calls
        ok, dist = attack(idx, eps)
        ok, dist = ok.cpu(), dist.double().cpu()
        calls += 1
        hit = idx[ok]
        best[hit] = torch.minimum(best[hit], dist[ok])
        upper[hit] = torch.minimum(upper[hit], torch.full_like(upper[hit], eps))
        miss = idx[~ok]
        lower[miss] = torch.maximum(lower[miss], torch.full_like(lower[miss], eps))

    for eps in grid:
        if eps <= 0:
            continue
        idx = (best > eps).nonzero().flatten()
        if len(idx):
            run(idx, eps)
    for _ in range(steps):
        active = (upper < float("inf")) & (best > lower)
        mid = (lower + upper) / 2
        implied = active & (best <= mid)  # an adversarial within mid is already known
        upper[implied] = mid[implied]
        todo = (active & ~implied).nonzero().flatten()
        for value in sorted({float(mid[i]) for i in todo}):
            group = todo[mid[todo] == value]
            run(group, value)
    return SearchResult(min_eps=best, lower=lower, upper=upper, n_calls=calls)
