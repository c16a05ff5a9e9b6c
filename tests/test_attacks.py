"""Attacks against classifiers whose minimal adversarial distances are known in closed form.

A linear classifier f(x) = W x + b on [-1, 1] images: the smallest perturbation moving x across the boundary
between classes y and c has L2 norm margin / ‖w_y − w_c‖₂ and L∞ norm margin / ‖w_y − w_c‖₁ (Hölder),
as long as the [0, 1] box does not bind (the inputs sit near the centre). In [0, 1] pixel units — where ε is
quoted — both are halved: the one conversion the attack boundary makes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from jembench.attacks import PixelSpace, distances, predict, to_pixels
from jembench.attacks.budget import QueryBudget, run_with_budget
from jembench.attacks.gradient_free import (boundary_attack, checked_starting_points, pointwise_attack,
                                            top2_candidates, verified_along_line)
from jembench.attacks.pgd import PGDConfig, pgd, pgd_any_iterate
from jembench.attacks.search import minimal_eps
from jembench.refine import RefinedClassifier
from jembench.sampling import SGLDConfig

D = 64


class Linear(nn.Module):
    def __init__(self, n_classes: int = 2):
        super().__init__()
        self.fc = nn.Linear(D, n_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.fixture
def binary():
    """A 2-class linear model, 8 inputs near the centre of the box, and their closed-form minimal distances."""
    torch.manual_seed(0)
    model = Linear(2).eval()
    with torch.no_grad():
        model.fc.weight.normal_()
        model.fc.bias.zero_()
    x = (torch.rand(8, 1, 8, 8) - 0.5) * 0.2
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(1)
    dw = model.fc.weight[0] - model.fc.weight[1]
    margin = (logits[:, 0] - logits[:, 1]).abs()
    exact = {"l2": (margin / dw.norm() / 2).detach(), "linf": (margin / dw.abs().sum() / 2).detach()}
    return model, x, y, exact


@pytest.mark.parametrize("norm, grid", [("l2", [0, 0.01, 0.02, 0.04]), ("linf", [0, 0.002, 0.004, 0.008])])
def test_pgd_minimal_eps_matches_the_closed_form(binary, norm, grid):
    model, x, y, exact = binary
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    cfg = PGDConfig(norm=norm, steps=20, step_size=0.25, restarts=1)

    def attack(idx, eps):
        out = pgd(model01, x01[idx], y[idx], eps, cfg, verify=model01)
        return out.success, out.distance

    result = minimal_eps(attack, len(x), grid, steps=7)  # bracket ≤ grid spacing / 2^7
    assert torch.isfinite(result.min_eps).all()
    assert (result.min_eps.float() >= exact[norm] * (1 - 1e-3)).all()  # nothing beats the optimum
    assert torch.allclose(result.min_eps.float(), exact[norm], rtol=0.02)  # and PGD + search finds it


def test_pgd_at_zero_eps_finds_nothing_and_robust_accuracy_never_rises(binary):
    model, x, y, exact = binary
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    out = pgd(model01, x01, y, 0.0, PGDConfig(norm="linf", steps=5, restarts=2), verify=model01)
    assert not out.success.any() and torch.equal(out.adv, x01)
    y_wrong = y.clone()
    y_wrong[:3] = 1 - y_wrong[:3]  # three inputs misclassified when clean
    start = torch.where(predict(model01, x01) == y_wrong, float("inf"), 0.0)
    cfg = PGDConfig(norm="linf", steps=10, step_size=0.25, restarts=1)

    def attack(idx, eps):
        o = pgd(model01, x01[idx], y_wrong[idx], eps, cfg, verify=model01)
        return o.success, o.distance

    grid = [0, 0.001, 0.002, 0.003, 0.004, 0.006]
    result = minimal_eps(attack, len(x), grid, steps=3, start=start)
    acc = [100.0 * (result.min_eps > e).double().mean().item() for e in grid]  # robust accuracy at each ε
    assert acc[0] == pytest.approx(100 * 5 / 8)  # ε = 0: the clean accuracy
    assert all(a >= b for a, b in zip(acc, acc[1:]))
    assert acc[-1] < acc[0]


def test_pgd_restarts_keep_a_verified_adversarial_within_the_budget(binary):
    model, x, y, exact = binary
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    ordered = exact["linf"].sort().values
    eps = float(ordered[3] + ordered[4]) / 2  # half the inputs have their optimum inside the ball
    out = pgd(model01, x01, y, eps, PGDConfig(norm="linf", steps=20, step_size=0.25, restarts=3), verify=model01)
    broken = exact["linf"] < eps
    assert torch.equal(out.success, broken)  # exactly the inputs whose optimum is inside the ball
    assert (predict(model01, out.adv[out.success]) != y[out.success]).all()
    assert (distances(x01, out.adv, "linf") <= eps + 1e-6).all()
    assert (out.adv >= 0).all() and (out.adv <= 1).all()


def test_eot_pgd_attacks_a_stochastic_refined_classifier(binary):
    model, x, y, exact = binary
    refined = RefinedClassifier(model, SGLDConfig(n_steps=2, step_size=0.01, noise=0.01))
    model01 = PixelSpace(refined).eval()
    verify = PixelSpace(RefinedClassifier(model, refined.config, n_draws=20)).eval()
    eps = float(exact["linf"].max()) * 1.5
    out = pgd(model01, to_pixels(x), y, eps, PGDConfig(norm="linf", steps=10, step_size=0.25, restarts=1,
                                                        eot_iter=4), verify=verify)
    assert out.success.all()  # torchattacks.EOTPGD through the (stochastic) refinement breaks every input


def _top2_setup(n_classes=4):
    torch.manual_seed(1)
    model = Linear(n_classes).eval()
    with torch.no_grad():
        model.fc.weight.normal_()
    pool = torch.rand(300, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        pool_pred = model(pool).argmax(1)
    pool_labels = pool_pred.clone()
    pool_labels[::7] = (pool_labels[::7] + 1) % n_classes  # some pool images are misclassified
    x = (torch.rand(6, 1, 8, 8) - 0.5) * 0.2
    with torch.no_grad():
        logits = model(x)
    return model, x, logits.argmax(1), logits, to_pixels(pool), pool_labels


def test_top2_starting_point_is_a_correctly_classified_input_of_another_class():
    model, x, y, logits, pool01, pool_labels = _top2_setup()
    model01 = PixelSpace(model).eval()
    target, candidates = top2_candidates(to_pixels(x), logits, y, pool01, pool_labels)
    assert torch.equal(target, logits.topk(2, dim=1).indices[:, 1])  # the runner-up class
    kept, starts = checked_starting_points(model01, model01, y, target, pool01, candidates)
    assert len(kept) == len(x)
    pred = predict(model01, starts)
    assert torch.equal(pred, target[kept])  # classified as the top-2 class ...
    assert (pred != y[kept]).all()  # ... which is another class than the input's
    for i, start in zip(kept.tolist(), starts):  # ... and correctly: it is labelled with that class
        chosen = [c for c in candidates[i] if torch.equal(pool01[c], start)]
        assert chosen and pool_labels[chosen[0]] == target[i]


def _top2_starts(model, x, y):
    """The [0, 1]-space model and inputs plus top-2-class starting points from a random pool (JEM App. F)."""
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    pool = (torch.rand(200, 1, 8, 8) - 0.5) * 0.4
    with torch.no_grad():
        logits, pool_labels = model(x), model(pool).argmax(1)
    target, candidates = top2_candidates(x01, logits, y, to_pixels(pool), pool_labels)
    kept, starts = checked_starting_points(model01, model01, y, target, to_pixels(pool), candidates)
    return model01, x01, kept, starts


def test_boundary_attack_distance_matches_the_closed_form(binary):
    model, x, y, exact = binary
    model01, x01, kept, starts = _top2_starts(model, x, y)
    assert len(kept) == len(x)
    torch.manual_seed(0)
    adv = boundary_attack(model01, x01, y, starts, steps=5000)
    assert (predict(model01, adv) != y).all()
    d = distances(x01, adv, "l2")
    assert (d >= exact["l2"] * (1 - 1e-3)).all()
    assert torch.allclose(d, exact["l2"], rtol=0.03)


def test_pointwise_attack_reduces_l0_and_stays_adversarial(binary):
    model, x, y, exact = binary
    model01, x01, kept, starts = _top2_starts(model, x, y)
    np.random.seed(0)
    adv = pointwise_attack(model01, x01, y, starts, l2_binary_search=False)
    assert (predict(model01, adv) != y).all()
    l0 = distances(x01, adv, "l0")
    assert (l0 < distances(x01, starts, "l0")).all() and (l0 >= 1).all()
    # lower bound: entry j moves by at most 0.55 (inputs lie in [0.45, 0.55]) and shifts the logit gap by
    # 2·|Δw_j|·0.55, so an adversarial needs at least the k largest |Δw_j| with 1.1 · Σ_k |Δw_j| ≥ margin
    dw = model.fc.weight[0] - model.fc.weight[1]
    reach = 1.1 * torch.cumsum(dw.abs().sort(descending=True).values, 0)
    margin = exact["l2"] * 2 * dw.norm()
    for i in range(len(x)):
        assert l0[i] >= int((reach < margin[i]).sum()) + 1


def test_unverified_adversarials_move_towards_their_starting_point(binary):
    """A decision-based adversarial that a fresh verification rejects is walked back towards its start."""
    model, x, y, exact = binary
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    pool = (torch.rand(200, 1, 8, 8) - 0.5) * 0.4
    with torch.no_grad():
        logits, pool_labels = model(x), model(pool).argmax(1)
    target, candidates = top2_candidates(x01, logits, y, to_pixels(pool), pool_labels)
    _, starts = checked_starting_points(model01, model01, y, target, to_pixels(pool), candidates)
    adv, ok, moved = verified_along_line(model01, x01.clone(), starts, y)  # x itself is not adversarial
    assert ok.all() and (moved > 0).all()
    assert (predict(model01, adv) != y).all()
    assert (distances(x01, adv, "l2") <= distances(x01, starts, "l2") + 1e-6).all()
    same, ok, moved = verified_along_line(model01, starts, starts, y)  # already verified: unchanged
    assert torch.equal(same, starts) and (moved == 0).all()


def test_query_budget_stops_pointwise_and_keeps_the_best_adversarial_it_queried(binary):
    """foolbox's PointwiseAttack has no query budget; the wrapper stops it at max_queries per input."""
    model, x, y, exact = binary
    model01, x01, kept, starts = _top2_starts(model, x, y)
    np.random.seed(0)
    full = run_with_budget(lambda m: pointwise_attack(m, x01, y, starts, l2_binary_search=False),
                           QueryBudget(model01, x01, y, "l0"))
    assert full.stopped is None and (full.queries == full.queries[0]).all() and full.queries[0] > 40
    np.random.seed(0)
    cut = run_with_budget(lambda m: pointwise_attack(m, x01, y, starts, l2_binary_search=False),
                          QueryBudget(model01, x01, y, "l0", max_queries=40))
    assert cut.stopped == "queries" and (cut.queries == 40).all()
    assert (predict(model01, cut.adv) != y).all()  # the kept points are adversarial ...
    l0_cut, l0_full, l0_start = (distances(x01, a, "l0") for a in (cut.adv, full.adv, starts))
    assert (l0_cut < l0_start).all()  # ... better than the start (40 resets tried) ...
    assert (l0_cut >= l0_full).all() and (l0_cut > l0_full).any()  # ... and no better than the full attack


def test_query_budget_stops_the_boundary_attack_by_queries_and_by_time(binary):
    model, x, y, exact = binary
    model01, x01, kept, starts = _top2_starts(model, x, y)
    torch.manual_seed(0)
    cut = run_with_budget(lambda m: boundary_attack(m, x01, y, starts, steps=5000),
                          QueryBudget(model01, x01, y, "l2", max_queries=30))
    assert cut.stopped == "queries" and (cut.queries == 30).all()
    assert (predict(model01, cut.adv) != y).all()
    d = distances(x01, cut.adv, "l2")
    assert (d <= distances(x01, starts, "l2") + 1e-6).all() and (d >= exact["l2"] * (1 - 1e-3)).all()
    timed = run_with_budget(lambda m: boundary_attack(m, x01, y, starts, steps=5000),
                            QueryBudget(model01, x01, y, "l2", max_seconds=1e-6))
    assert timed.stopped == "time" and (timed.queries == 1).all()  # the first query always runs
    assert torch.equal(timed.adv, starts)  # the starting points, queried first, are the best seen


def test_any_iterate_pgd_counts_every_evaluated_iterate(binary):
    model, x, y, exact = binary
    model01, x01 = PixelSpace(model).eval(), to_pixels(x)
    eps = float(exact["linf"].median())
    cfg = PGDConfig(norm="linf", steps=7, alpha=eps / 4, random_start=False)  # 6 steps reach the ball's corner
    out = pgd_any_iterate(model01, x01, y, eps * 1.5, cfg)
    assert out.evaluated == 8  # the start + 6 gradient iterates + the final one
    assert torch.equal(out.broken, exact["linf"] < eps * 1.5)  # a linear model: broken iff the optimum is inside
    assert (predict(model01, out.adv[out.broken]) != y[out.broken]).all()
    assert (out.distance[out.broken] <= eps * 1.5 + 1e-6).all() and (out.first[~out.broken] == -1).all()
