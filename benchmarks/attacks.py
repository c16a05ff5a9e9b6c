"""Decision-based attacks against the limit: time per query of foolbox's BoundaryAttack and PointwiseAttack as
the robustness suite runs them / a bare loop of the same forward passes.

A decision-based attack's cost is its queries: one forward pass of the attacked batch each. The numerator is the
suite's own path — :class:`jembench.attacks.budget.QueryBudget` (counting, best-adversarial bookkeeping) around
``PixelSpace(RefinedClassifier(model, K = 0))``, called by foolbox 3 through
:func:`jembench.attacks.gradient_free.boundary_attack` / ``pointwise_attack`` and stopped by the budget after
``Q`` queries. The denominator is ``Q`` bare ``model(x)`` calls under ``no_grad`` on a batch of the same shape.
Target ≤ 1.2: foolbox's per-query NumPy/eagerpy bookkeeping and ours must cost less than a fifth of a forward.

PGD through K-step refinement (the white-box row): time per PGD iteration of :func:`jembench.attacks.pgd.pgd`
(torchattacks' PGD, restarts, verification) on ``PixelSpace(RefinedClassifier(model, K))`` / a bare loop of the
same number of input-gradient passes through the same differentiable K-step SGLD (``jembench.sampling.sgld``
with ``differentiable=True``, cross-entropy of the refined logits, ``autograd.grad`` to the input). Same target.

The network is a WRN-10-1 on 3×32×32 (random weights: the work per query does not depend on the answers, and a
random network calls every input the same class, so the labels are its prediction + 1 and every starting point
is adversarial).
"""

from __future__ import annotations

import torch

from .common import Row, check, fmt_ms, interleaved, log, median, paired_ratio

TARGET = 1.2
LABEL = "WRN-10-1 (3x32x32, B={batch})"


def _setup(batch: int, device: str):
    from jembench.attacks import PixelSpace
    from jembench.refine import RefinedClassifier
    from jembench.sampling import SGLDConfig
    from jembench.reference_models.wideresnet import wide_resnet

    torch.manual_seed(0)
    net = wide_resnet(10, 1, 10, 3, None).to(device).eval()
    model01 = PixelSpace(RefinedClassifier(net, SGLDConfig(n_steps=0))).eval()
    gen = torch.Generator().manual_seed(1)
    x01 = torch.rand((batch, 3, 32, 32), generator=gen).to(device)
    starts = torch.rand((batch, 3, 32, 32), generator=gen).to(device)
    with torch.no_grad():
        y = (model01(x01).argmax(1) + 1) % 10
        assert bool((model01(starts).argmax(1) != y).all())
    return net, model01, x01, y, starts


def measure(attack: str, batch: int, queries: int, repeats: int, device: str) -> Row:
    import numpy as np

    from jembench.attacks.budget import QueryBudget, run_with_budget
    from jembench.attacks.gradient_free import boundary_attack, pointwise_attack

    net, model01, x01, y, starts = _setup(batch, device)
    used: list[int] = []

    def jembench_side() -> None:
        np.random.seed(0)
        torch.manual_seed(0)
        budget = QueryBudget(model01, x01, y, "l2" if attack == "boundary" else "l0", max_queries=queries)
        if attack == "boundary":
            out = run_with_budget(lambda m: boundary_attack(m, x01, y, starts, steps=25000), budget)
        else:
            out = run_with_budget(lambda m: pointwise_attack(m, x01, y, starts, l2_binary_search=False), budget)
        used.append(int(out.queries[0]))

    x = x01 * 2 - 1

    def bare() -> None:
        with torch.no_grad():
            for _ in range(queries):
                net(x)

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    times = interleaved({"jembench": jembench_side, "bare": bare}, repeats, warmup=1, sync=sync)
    assert set(used) == {queries}, used  # every timed run made exactly `queries` queries
    ratio = paired_ratio(times["jembench"], times["bare"])
    qps, bare_qps = queries / median(times["jembench"]), queries / median(times["bare"])
    per_query = fmt_ms(median(times["jembench"]) / queries)
    return Row("attacks", LABEL.format(batch=batch), f"{attack} attack time per query / bare forward loop", ratio,
               "x", f"<= {TARGET:.1f}", check(ratio, TARGET),
               f"{qps:.1f} vs {bare_qps:.1f} queries/s ({per_query} per query of {batch} images); "
               f"Q={queries}, n={repeats}",
               {"attack": attack, "batch": batch, "queries": queries, "jembench_s": times["jembench"],
                "bare_s": times["bare"]})


def measure_pgd(batch: int, steps: int, k: int, repeats: int, device: str) -> Row:
    import torch.nn.functional as F

    from jembench.attacks import PixelSpace
    from jembench.attacks.pgd import PGDConfig, pgd
    from jembench.refine import RefinedClassifier
    from jembench.sampling import SGLDConfig, sgld

    net, _, x01, y, _ = _setup(batch, device)
    scfg = SGLDConfig(n_steps=k, step_size=1.0, noise=0.0)  # deterministic: one draw, as a K-step defence
    model01 = PixelSpace(RefinedClassifier(net, scfg)).eval()
    cfg = PGDConfig(norm="linf", steps=steps, step_size=0.25, restarts=1, random_start=True)
    eps = 8 / 255

    def verify(adv01: torch.Tensor) -> torch.Tensor:
        return model01(adv01)

    def jembench_side() -> None:
        torch.manual_seed(0)
        pgd(model01, x01, y, eps, cfg, verify)

    def bare() -> None:
        x = (x01 * 2 - 1).clone()
        for _ in range(steps):
            x.requires_grad_(True)
            loss = F.cross_entropy(net(sgld(net, x, scfg, differentiable=True)), y)
            grad = torch.autograd.grad(loss, x)[0]
            x = (x + 1e-3 * grad.sign()).detach()

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    times = interleaved({"jembench": jembench_side, "bare": bare}, repeats, warmup=1, sync=sync)
    ratio = paired_ratio(times["jembench"], times["bare"])
    per_iter = fmt_ms(median(times["jembench"]) / steps)
    return Row("attacks", LABEL.format(batch=batch), f"PGD-Linf through K={k} refinement, time per iteration / "
                                                     "bare input-gradient loop", ratio, "x", f"<= {TARGET:.1f}",
               check(ratio, TARGET),
               f"{per_iter} vs {fmt_ms(median(times['bare']) / steps)} per iteration of {batch} images "
               f"(incl. verification and the clean pass); {steps} iterations, n={repeats}",
               {"attack": "pgd-linf", "batch": batch, "steps": steps, "K": k, "jembench_s": times["jembench"],
                "bare_s": times["bare"]})


def run(quick: bool, device: str) -> list[Row]:
    batch, queries, repeats = (8, 20, 3) if quick else (16, 60, 7)
    rows = []
    for attack in ("boundary", "pointwise"):
        log(f"attacks: {attack}")
        rows.append(measure(attack, batch, queries, repeats, device))
    log("attacks: pgd through refinement")
    rows.append(measure_pgd(batch, 5 if quick else 10, 2, repeats, device))
    return rows
