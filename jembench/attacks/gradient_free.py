"""Decision-based (gradient-free) attacks through foolbox 3: BoundaryAttack (L2; Brendel et al. 2018) and
PointwiseAttack (L0; Schott et al. 2019), as in JEM App. F / Fig. 10.

Both are foolbox *minimization* attacks that need an adversarial starting point. Their default random
initialisations fail for JEM (and foolbox then raises for the whole batch), so, following JEM App. F, each
input starts from "a correctly classified input of another class ... chosen based on the top-2 prediction":
:func:`top2_candidates` lists, per input, the test images of the model's runner-up class, nearest (L2) first;
:func:`checked_starting_points` keeps, per input, the first one the model classifies as that class and the
attacked model really calls adversarial (and drops inputs with none), so foolbox's own check passes.

foolbox's distances are not used: callers measure them (:func:`jembench.attacks.distances`) on the returned
images, after verifying they are adversarial. Everything is in [0, 1] pixel space (``model01`` is a
:class:`~jembench.attacks.PixelSpace` wrapper; foolbox gets ``bounds=(0, 1)``).
"""

from __future__ import annotations

import foolbox as fb
import torch
from torch import nn

from . import predict


def top2_class(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The highest-scoring class other than the true one (the model's top-2 class when it is right)."""
    return logits.scatter(1, y.view(-1, 1).to(logits.device), float("-inf")).argmax(1)


def top2_candidates(x01: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, pool01: torch.Tensor,
                    pool_labels: torch.Tensor, max_candidates: int = 10) -> tuple[torch.Tensor, list[list[int]]]:
    """Per input: its top-2 class, and the pool images labelled with it, nearest (L2) first (at most
    ``max_candidates``). Whether the model classifies them correctly is checked lazily
    (:func:`checked_starting_points`), so a stochastic model is not run over the whole pool."""
    target = top2_class(logits, y)
    flat_pool = pool01.flatten(1)
    out = []
    for i in range(len(x01)):
        idx = (pool_labels == target[i]).nonzero().flatten()
        d = (flat_pool[idx] - x01[i].flatten()).norm(dim=1)
        out.append(idx[torch.argsort(d, stable=True)[:max_candidates]].tolist())
    return target, out


def checked_starting_points(attack_model01: nn.Module, verify_model01: nn.Module, y: torch.Tensor,
                            target: torch.Tensor, pool01: torch.Tensor, candidates: list[list[int]]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose per input the nearest candidate that (a) ``verify_model01`` classifies as the top-2 class
    ``target`` — "a correctly classified input of another class" (JEM App. F) — and (b) ``attack_model01``
    misclassifies *in the very batch foolbox will get*: with a quenched stochastic model the function of a
    batch position depends on the batch size, so (b) is repeated on the final batch until it is stable.

    Returns (indices of the inputs that got a starting point, their starting points); inputs whose
    candidates all fail are left out.
    """
    pointer = [0] * len(y)
    correct: set[tuple[int, int]] = set()
    keep = [i for i in range(len(y)) if candidates[i]]

    def advance(failed: list[int]) -> None:
        nonlocal keep
        for i in failed:
            pointer[i] += 1
        keep = [i for i in keep if pointer[i] < len(candidates[i])]

    while keep:
        unchecked = [i for i in keep if (i, pointer[i]) not in correct]
        if unchecked:
            starts = pool01[[candidates[i][pointer[i]] for i in unchecked]]
            pred = predict(verify_model01, starts)
            for i, p in zip(unchecked, pred.tolist()):
                if p == int(target[i]):
                    correct.add((i, pointer[i]))
            advance([i for i in unchecked if (i, pointer[i]) not in correct])
            continue
        starts = pool01[[candidates[i][pointer[i]] for i in keep]]
        ok = predict(attack_model01, starts, batch_size=len(starts)) != y[keep]
        if bool(ok.all()):
            return torch.tensor(keep, dtype=torch.long), starts
        advance([i for i, good in zip(keep, ok.tolist()) if not good])
    return torch.empty(0, dtype=torch.long), pool01[:0]


def boundary_attack(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, starts01: torch.Tensor,
                    steps: int = 25000) -> torch.Tensor:
    """foolbox ``BoundaryAttack`` (default settings but ``steps``) from the given adversarial starting points."""
    if len(x01) == 0:
        return x01.clone()
    fmodel = fb.PyTorchModel(model01, bounds=(0, 1), device=x01.device)
    attack = fb.attacks.BoundaryAttack(steps=steps)
    raw, _, _ = attack(fmodel, x01, fb.criteria.Misclassification(y), epsilons=None, starting_points=starts01)
    return raw.detach()


def pointwise_attack(model01: nn.Module, x01: torch.Tensor, y: torch.Tensor, starts01: torch.Tensor,
                     l2_binary_search: bool = True) -> torch.Tensor:
    """foolbox ``PointwiseAttack`` (which accepts only ``epsilons=None``) from the given starting points.

    Phase 1 resets entries to the original while the input stays adversarial (minimises L0); phase 2
    (``l2_binary_search``, foolbox's default) binary-searches each remaining entry's value (reduces L2, costs
    ~10× the queries). It shuffles entries with NumPy's global RNG: seed it for reproducible results.
    """
    if len(x01) == 0:
        return x01.clone()
    fmodel = fb.PyTorchModel(model01, bounds=(0, 1), device=x01.device)
    attack = fb.attacks.PointwiseAttack(l2_binary_search=l2_binary_search)
    raw, _, _ = attack(fmodel, x01, fb.criteria.Misclassification(y), epsilons=None, starting_points=starts01)
    return raw.detach()


@torch.no_grad()
def verified_along_line(verify_model01: nn.Module, adv01: torch.Tensor, starts01: torch.Tensor, y: torch.Tensor,
                        fractions: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0)
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Move each adversarial towards its starting point until ``verify_model01`` misclassifies it.

    A decision-based attack ends *on* the decision boundary of the function it queried; for a stochastic
    refinement (queried with quenched noise) about half of those points flip back under fresh draws. The
    starting point itself is a verified, correctly classified image of another class, so somewhere on the
    segment adv → start the adversarial verifies; the first of ``fractions`` that does is returned. Returns
    (adversarials, verified mask, fraction of the way moved: 0 = as the attack returned it, NaN = none
    verified). Hand-written: foolbox has no notion of a stochastic model.
    """
    out = adv01.clone()
    ok = torch.zeros(len(y), dtype=torch.bool, device=y.device)
    moved = torch.full((len(y),), float("nan"), device=y.device)
    for t in fractions:
        todo = (~ok).nonzero().flatten()
        if len(todo) == 0:
            break
        candidate = adv01[todo] + t * (starts01[todo] - adv01[todo])
        fooled = predict(verify_model01, candidate) != y[todo]
        out[todo[fooled]] = candidate[fooled]
        ok[todo[fooled]] = True
        moved[todo[fooled]] = t
    return out, ok, moved
