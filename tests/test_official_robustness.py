"""The official robustness attacks, re-derived: each test transcribes the official arithmetic independently (a
plain per-image loop, as the official scripts run it) and compares jembench's batched implementation with it.

* JEM attack_model.py: the attacked model's gradient (5 chains from x + N(0, σ²), K SGLD steps through
  ``x_k.data``, logits averaged) is BPDA — and not the exact gradient; foolbox 2's exponential (×1.5) +
  bisection ε search with early-stopped PGD runs, the Adversarial's smallest-distance bookkeeping, the clean
  check, the skip of misclassified inputs and the keep-the-last-call restart rule.
* SADA-JEM bpda_eot_attack.py with its shipped json (langevin_steps 0): PGD-50 with ``defended *= correct`` at
  every evaluated iterate, and the shuffled loader's image order.

Small models (linear and tanh nets on 1×4×4 images), float64 where iterates are compared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jembench.attacks import PixelSpace, to_pixels
from jembench.attacks.foolbox2 import Foolbox2Config, Foolbox2Outcome, foolbox2_attack, keep_restart
from jembench.attacks.inputs import sadajem_loader_order, wrn_init_shapes
from jembench.attacks.pgd import PGDConfig, pgd_any_iterate
from jembench.protocols import Protocol
from jembench.refine import RefinedClassifier
from jembench.sampling import SGLDConfig
from jembench.suites import robustness
from jembench.suites.robustness import units as robustness_units
from test_refine import SmoothNet as Tanh  # a smooth 3-class net on 1×4×4 images

class Linear(nn.Module):
    def __init__(self, n_classes: int = 2):
        super().__init__()
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


# ------------------------------------------------------------------------------ JEM: the attacked model
def official_refined_logits(f: nn.Module, x: torch.Tensor, n_steps: int, n_dup: int, sigma: float,
                            sgld_sigma: float) -> torch.Tensor:
    """attack_model.py:168-177 and :188-196 (``refine(..., detach=False)``), as written."""
    xs = x.size()
    dup_x = x.view(xs[0], 1, *xs[1:]).repeat(1, n_dup, *([1] * (x.dim() - 1)))
    dup_x = dup_x.view(xs[0] * n_dup, *xs[1:])
    dup_x = dup_x + torch.randn_like(dup_x) * sigma
    x_k = dup_x
    for _ in range(n_steps):
        f_prime = torch.autograd.grad(f(x_k).logsumexp(1).sum(), [x_k], retain_graph=True)[0]
        x_k.data += f_prime + sgld_sigma * torch.randn_like(x_k)
    logits = f(x_k)
    return logits.view(xs[0], n_dup, logits.size(1)).mean(1)


def official_gradient(f: nn.Module, x01: torch.Tensor, y: torch.Tensor, **kw) -> torch.Tensor:
    """foolbox's PyTorchModel.gradient through gradient_attack_wrapper (attack_model.py:97-102): ∂CE/∂x01."""
    x01 = x01.clone().requires_grad_(True)
    x = (x01 - 0.5) / 0.5
    loss = F.cross_entropy(official_refined_logits(f, x, **kw), y, reduction="sum")
    return torch.autograd.grad(loss, x01)[0]


def _our_gradient(f, x01, y, k, draws, sigma, sgld_sigma, bpda):
    model = PixelSpace(RefinedClassifier(f, SGLDConfig(n_steps=k, step_size=1.0, noise=sgld_sigma), n_draws=draws,
                                         bpda=bpda, input_noise=sigma)).eval()
    x01 = x01.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(x01), y, reduction="sum"), x01)[0]


@pytest.fixture
def tanh_net():
    torch.manual_seed(0)
    return Tanh().double().eval()  # default init: curved enough that the exact gradient differs by 3-8 %


def test_jem_attack_gradient_is_bpda_and_not_the_exact_gradient(tanh_net):
    x01 = torch.rand(4, 1, 4, 4, dtype=torch.double)
    y = torch.tensor([0, 1, 2, 0])
    # one chain per input: the official noise draws (input noise, then one per SGLD step) line up with ours
    for k in (1, 3):
        torch.manual_seed(5)
        official = official_gradient(tanh_net, x01, y, n_steps=k, n_dup=1, sigma=0.03, sgld_sigma=0.01)
        torch.manual_seed(5)
        bpda = _our_gradient(tanh_net, x01, y, k, 1, 0.03, 0.01, bpda=True)
        torch.manual_seed(5)
        exact = _our_gradient(tanh_net, x01, y, k, 1, 0.03, 0.01, bpda=False)
        assert torch.allclose(official, bpda, rtol=1e-10, atol=1e-12), k
        assert (official - exact).norm() > 0.01 * official.norm(), k  # the .data update hides the chain
    # five chains, averaged logits (noise off, so the chains' order does not matter)
    official = official_gradient(tanh_net, x01, y, n_steps=2, n_dup=5, sigma=0.0, sgld_sigma=0.0)
    ours = _our_gradient(tanh_net, x01, y, 2, 5, 0.0, 0.0, bpda=True)
    assert torch.allclose(official, ours, rtol=1e-10, atol=1e-12)


# -------------------------------------------------------------------- JEM: foolbox 2's ε search, per image
def official_search(model01: nn.Module, x0: torch.Tensor, label: int, norm: str = "linf", eps0: float = 0.3,
                    stepsize: float = 0.01, iterations: int = 40, k: int = 20, random_start: bool = False
                    ) -> tuple[float, torch.Tensor | None]:
    """One foolbox attack call on one image, transcribed from foolbox 2.x:
    ``Adversarial.__init__`` / ``call_decorator`` (distance 0 if the clean image is misclassified), then
    ``_run_binary_search`` (k × 1.5 exponential tries, k bisection steps, stepsize/ε fixed) over ``_run_one``
    (sign / RMS-normalised gradient step, clip to the ε-ball, clip to [0, 1], return at the first adversarial)
    and ``__new_adversarial`` (the smallest distance wins); with ``random_start`` (``_run_one``: ``noise =
    uniform(-ε, ε, shape)``, ``x = original + clip_perturbation(noise, ε)``, not clipped to the bounds) the start is
    drawn from torch's global RNG where foolbox drew it from NumPy's. Every model call draws from torch's global
    RNG in foolbox's order (clean check; per try: the start, then per iteration gradient and prediction), so a
    stochastic model sees the same noise as jembench's for one image under one seed. Returns (distance, image)."""
    best: list = [math.inf, None]

    def predict(x):
        return int(model01(x[None]).detach().argmax(1))

    def distance(x):
        d = (x - x0).flatten()
        return float(d.abs().max()) if norm == "linf" else float((d ** 2).mean())

    def is_adversarial(x):
        adv = predict(x) != label
        if adv and distance(x) < best[0]:
            best[0], best[1] = distance(x), x.clone()
        return adv

    if is_adversarial(x0):
        return best[0], best[1]
    factor = stepsize / eps0

    def clip(delta, eps):
        if norm == "linf":
            return delta.clamp(-eps, eps)
        rms = max(1e-12, float(delta.pow(2).mean().sqrt()))
        return delta * min(1.0, eps / rms)

    def run_one(eps):
        step, x = factor * eps, x0.clone()
        if random_start:
            noise = (torch.rand_like(x0) * 2 - 1) * eps  # foolbox: nprng.uniform(-eps, eps, shape)
            x = x0 + clip(noise, eps)
        for _ in range(iterations):
            xg = x.clone().requires_grad_(True)
            g = torch.autograd.grad(F.cross_entropy(model01(xg[None]), torch.tensor([label])), xg)[0]
            g = g.sign() if norm == "linf" else g / g.pow(2).mean().sqrt()
            x = x + step * g
            x = (x0 + clip(x - x0, eps)).clamp(0, 1)
            if is_adversarial(x):
                return True
        return False

    eps = eps0
    for _ in range(k):
        if run_one(eps):
            break
        eps = eps * 1.5
    else:
        return best[0], best[1]
    bad, good = 0.0, eps
    for _ in range(k):
        eps = (good + bad) / 2
        if run_one(eps):
            good = eps
        else:
            bad = eps
    return best[0], best[1]


def _linear_binary(seed: int = 0, n: int = 6):
    """A 2-class linear model in [0, 1] pixel space with inputs near the centre, and the closed-form minimal
    distances: L∞ margin / ‖Δw‖₁ and L2 margin / ‖Δw‖₂ (in [0, 1] units, the [-1, 1] model scaled by 2)."""
    torch.manual_seed(seed)
    base = Linear(2).double().eval()
    with torch.no_grad():
        base.fc.weight.normal_()
        base.fc.bias.zero_()
    model01 = PixelSpace(base).eval()
    x01 = 0.5 + (torch.rand(n, 1, 4, 4, dtype=torch.double) - 0.5) * 0.1
    with torch.no_grad():
        logits = model01(x01)
    y = logits.argmax(1)
    dw = 2 * (base.fc.weight[0] - base.fc.weight[1]).detach()
    margin = (logits[:, 0] - logits[:, 1]).abs()
    return base, model01, x01, y, {"linf": margin / dw.abs().sum(), "l2": margin / dw.norm()}


@pytest.mark.parametrize("norm, stepsize", [("linf", 0.01), ("l2", 0.05)])
def test_foolbox2_search_equals_a_per_image_transcription_and_the_closed_form(norm, stepsize):
    _, model01, x01, y, exact = _linear_binary(n=3)
    # 32 iterations (JEM: 40) and k = 12 (foolbox: 20) keep the per-image loop fast; L∞ reaches the corner of the
    # ε-box in 30 steps of ε/30, L2 its sphere in 6 steps of ε/6
    cfg = Foolbox2Config(norm=norm, iterations=32, eps_start=0.3, step_ratio=stepsize / 0.3, search_steps=12,
                         random_start=False, restarts=1)
    ours = foolbox2_attack(model01, model01, x01, y, cfg)
    for i in range(len(x01)):
        dist, adv = official_search(model01, x01[i], int(y[i]), norm=norm, stepsize=stepsize, iterations=32, k=12)
        assert ours.distance[i].item() == pytest.approx(dist, rel=1e-9), i
        assert torch.allclose(ours.adv[i], adv), i
    # and the search finds the analytic minimum (from above: the first crossing iterate of the best ε)
    if norm == "linf":
        assert (ours.norm_distance >= exact["linf"] * (1 - 1e-9)).all()
        assert torch.allclose(ours.norm_distance, exact["linf"], rtol=0.04)
    else:  # foolbox's L2 distance is the mean squared perturbation: ‖δ‖₂² / D
        assert torch.allclose(ours.distance, exact["l2"] ** 2 / 16, rtol=0.08)
        assert torch.allclose(ours.norm_distance, exact["l2"], rtol=0.04)


def test_foolbox2_search_tries_grow_by_1_5_then_bisect():
    """Minimal ε beyond ε₀ = 0.3 (a large margin the [0, 1] box still lets PGD cross): the exponential phase must
    grow ε to 0.45 before the bisection starts; with k = 1 the only try (0.3) fails and nothing is found."""
    base = Linear(2).double().eval()
    with torch.no_grad():
        base.fc.weight.copy_(torch.stack([torch.full((16,), 0.1), torch.full((16,), -0.1)]))
        base.fc.bias.copy_(torch.tensor([1.1, -1.1]))
    model01 = PixelSpace(base).eval()
    x01 = 0.5 + (torch.rand(2, 1, 4, 4, dtype=torch.double) - 0.5) * 0.02
    y = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        margin = model01(x01)[:, 0] - model01(x01)[:, 1]
    exact = margin / (2 * 0.2 * 16)  # margin / ‖Δw‖₁ in [0, 1] units
    assert (exact > 0.3).all() and (exact < 0.45).all()
    cfg = Foolbox2Config(norm="linf", iterations=32, random_start=False, restarts=1, search_steps=8)
    ours = foolbox2_attack(model01, model01, x01, y, cfg)
    for i in range(2):
        dist, _ = official_search(model01, x01[i], 0, iterations=32, k=8)
        assert ours.distance[i].item() == pytest.approx(dist, rel=1e-9)
    assert torch.allclose(ours.norm_distance, exact, rtol=0.04)
    few = Foolbox2Config(norm="linf", iterations=32, random_start=False, restarts=1, search_steps=1)
    assert not foolbox2_attack(model01, model01, x01, y, few).found.any()
    assert all(official_search(model01, x01[i], 0, iterations=32, k=1)[0] == math.inf for i in range(2))


class OfficialRefined01(nn.Module):
    """attack_model.py's attacked model in [0, 1] pixels (gradient_attack_wrapper, :97-102, over ``refine`` with
    ``n_dup`` chains, :168-177 / :188-196), written without jembench."""

    def __init__(self, f: nn.Module, n_steps: int, n_dup: int, sigma: float, sgld_sigma: float):
        super().__init__()
        self.f, self.kw = f, {"n_steps": n_steps, "n_dup": n_dup, "sigma": sigma, "sgld_sigma": sgld_sigma}

    def forward(self, x01):
        x = (x01 - 0.5) / 0.5
        if not x.requires_grad:  # the chain's autograd.grad needs a graph even for a prediction
            x = x.clone().requires_grad_(True)
        return official_refined_logits(self.f, x, **self.kw)


@pytest.mark.parametrize("norm, stepsize", [("linf", 0.01), ("l2", 0.05)])
def test_foolbox2_random_start_on_the_stochastic_5_chain_model_equals_the_transcription(tanh_net, norm, stepsize):
    """JEM's setting end to end: random start, the stochastic model (5 chains from x + N(0, .03²), one SGLD step of
    noise .01, BPDA, logits averaged) for the gradients and for the predictions that decide success, and two
    restarts keeping the last. One image at a time under one seed, both sides draw the same noise in the same
    order (foolbox's: the clean check; per try the start, then per iteration a gradient and a prediction), so the
    kept distance and image agree to float rounding."""
    refined = PixelSpace(RefinedClassifier(tanh_net, SGLDConfig(n_steps=1, step_size=1.0, noise=0.01), n_draws=5,
                                           bpda=True, input_noise=0.03)).eval()
    official01 = OfficialRefined01(tanh_net, n_steps=1, n_dup=5, sigma=0.03, sgld_sigma=0.01)
    torch.manual_seed(3)
    x01 = torch.rand(4, 1, 4, 4, dtype=torch.double)
    with torch.no_grad():
        y = tanh_net(x01 * 2 - 1).argmax(1)
    cfg = Foolbox2Config(norm=norm, iterations=8, eps_start=0.3, step_ratio=stepsize / 0.3, search_steps=5,
                         random_start=True, restarts=2, keep="last")
    found = 0
    for i in range(len(x01)):
        torch.manual_seed(100 + i)
        ours = foolbox2_attack(refined, refined, x01[i:i + 1], y[i:i + 1], cfg)
        torch.manual_seed(100 + i)
        for _ in range(cfg.restarts):  # attack_model.py:253-264: every call overwrites `adversarial`
            dist, adv = official_search(official01, x01[i], int(y[i]), norm=norm, stepsize=stepsize, iterations=8,
                                        k=5, random_start=True)
        if math.isinf(dist):
            assert not ours.found[0], i
            continue
        found += 1
        assert ours.distance[0].item() == pytest.approx(dist, rel=1e-9), i
        assert torch.allclose(ours.adv[0], adv, rtol=0, atol=1e-12), i
    assert found >= 2  # the comparison is not vacuous: most searches succeed


def test_jem_restart_rule_keeps_the_last_call_not_the_best():
    """attack_model.py:253-264, transcribed: ``adversarial`` is overwritten by every call; ``best_adv`` unused."""
    calls = [[0.2, 0.1, math.inf], [0.05, math.inf, 0.3], [0.4, 0.2, math.inf]]  # distance per call, 3 inputs

    def official(per_call):
        adversarial = None
        for d in per_call:  # for ii in range(20): adversarial = attack(...)
            adversarial = d
        return adversarial  # adversaries.append((..., adversarial.image, ...))

    def outcome(ds):
        d = torch.tensor(ds, dtype=torch.float64)
        return Foolbox2Outcome(distance=d, norm_distance=d.clone(), adv=torch.zeros(3, 1))

    kept = None
    for ds in calls:
        kept = keep_restart(kept, outcome(ds), "last")
    assert kept.distance.tolist() == [official([c[i] for c in calls]) for i in range(3)]
    best = None
    for ds in calls:
        best = keep_restart(best, outcome(ds), "best")
    assert best.distance.tolist() == [min(c[i] for c in calls) for i in range(3)]
    assert kept.distance.tolist() != best.distance.tolist()


def test_jem_protocol_skips_misclassified_inputs_and_matches_the_transcription(tmp_path):
    """The suite's foolbox2 unit: inputs the clean forward misclassifies are skipped (attack_model.py:244-252:
    distance 0, never attacked); the others get the transcribed search's distance."""
    base, model01, x01, y, _ = _linear_binary(seed=1, n=6)
    base = base.float()
    x01, model01 = x01.float(), PixelSpace(base).eval()
    y_wrong = y.clone()
    y_wrong[[1, 4]] = 1 - y_wrong[[1, 4]]  # two inputs the model gets wrong
    table = {"n": 6, "batch_size": 6, "refine": {"steps": [0], "eot_attack": 1, "eot_defense": 1},
             "pgd": {"norms": ["linf"], "search": "foolbox2", "success": "any_iterate", "keep": "last",
                     "steps": 32, "restarts": 2, "step_size": "1/30", "search_steps": 8, "random_start": False,
                     "linf_eps": [0, "1/255"]},
             "boundary": {"enabled": False}, "pointwise": {"enabled": False}}
    cfg = Protocol.from_table("robustness", table).settings
    out = robustness_units.run_unit(robustness.Unit(0, "pgd-linf", 0), base, cfg, x01 * 2 - 1, y_wrong,
                              (x01[:0], y[:0]), seed=0, device="cpu")
    assert out["skipped"] == [False, True, False, False, True, False]
    for i in range(6):
        if out["skipped"][i]:
            assert out["min_eps"][i] == 0.0 and out["foolbox_distance"][i] == 0.0
        else:
            dist, _ = official_search(model01, x01[i], int(y_wrong[i]), iterations=32, k=8)
            assert out["foolbox_distance"][i] == pytest.approx(dist, rel=1e-5)
            assert out["min_eps"][i] == pytest.approx(dist, rel=1e-5)  # L∞: foolbox's distance is the norm


# --------------------------------------------------------------------------- SADA-JEM: PGD-50, any iterate
def official_attack_batch(clf: nn.Module, X: torch.Tensor, y: torch.Tensor, eps255: float, eta255: float,
                          steps: int, start: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """bpda_eot_attack.py:228-279 with langevin_steps 0, in [-1, 1] units (eps, eta × 2/255, :68-69); returns
    ``class_batch`` ([steps + 2, n]: row 0 = clean, row s + 1 = defended after evaluating iterate s) and
    the correctness at the final iterate alone (what a last-iterate attack would count)."""
    eps, eta = eps255 * 2 / 255, eta255 * 2 / 255

    def predict(Xa, requires_grad):
        Xp = Xa.clone().requires_grad_(requires_grad)
        logits = clf(Xp)
        correct = logits.argmax(1) == y
        grad = torch.autograd.grad(F.cross_entropy(logits, y), [Xp])[0] if requires_grad else None
        return correct, grad

    defended = predict(X, False)[0]  # baseline
    class_batch = torch.zeros(steps + 2, len(X), dtype=torch.bool)
    class_batch[0] = defended
    X_adv = X.clone() if start is None else start.clone()  # rand_init_l_p: clamp(X + eps·(2·rand − 1), −1, 1)
    for step in range(steps + 1):
        if step == steps:
            correct, grad = predict(X_adv, False)
        else:
            correct, grad = predict(X_adv, True)
        defended = defended & correct  # defended *= correct
        class_batch[step + 1] = defended
        if step < steps:  # pgd_update, l_inf
            X_adv = X_adv + eta * torch.sign(grad)
            X_adv = torch.clamp(torch.min(X + eps, torch.max(X - eps, X_adv)), min=-1, max=1)
    return class_batch, correct


def test_sadajem_pgd_any_iterate_bookkeeping_equals_the_official_loop():
    torch.manual_seed(0)
    net = Tanh().double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4)  # a sharp net: ε of a few /255 breaks some inputs
    torch.manual_seed(2)
    x = (torch.rand(48, 1, 4, 4, dtype=torch.double) * 2 - 1) * 0.5
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:3] = (y[:3] + 1) % 3  # some misclassified clean
    model01 = PixelSpace(net).eval()
    clean = model01(to_pixels(x)).argmax(1) == y
    steps = 12
    for eps255, start_random in ((1, True), (4, True), (16, True), (16, False)):
        cfg = PGDConfig(norm="linf", steps=steps, alpha=2 / 255, random_start=start_random)
        torch.manual_seed(11)
        ours = pgd_any_iterate(model01, to_pixels(x), y, eps255 / 255, cfg)
        start = None
        if start_random:  # the same draw torchattacks makes, mapped to [-1, 1]
            torch.manual_seed(11)
            x01 = to_pixels(x)
            start = torch.clamp(x01 + torch.empty_like(x01).uniform_(-eps255 / 255, eps255 / 255), 0, 1) * 2 - 1
        path, final_correct = official_attack_batch(net, x, y, eps255, 2.0, steps, start)
        assert ours.evaluated == steps + 1  # the random start, steps − 1 iterates with a gradient, the final one
        assert torch.equal(clean & ~ours.broken, path[-1]), eps255
        broken_at = (~path[1:]).int().argmax(0)  # first evaluated iterate at which defended fell
        hit = clean & ours.broken
        assert torch.equal(ours.first[hit], broken_at[hit]), eps255
        assert (~path[-1]).sum() > (~path[0]).sum()  # the attack breaks something ...
        assert (ours.first[hit] < steps).any()  # ... mostly before the last iterate (index `steps`)
        assert torch.equal(~final_correct & clean, hit)  # (this net never recovers: each broken input stays broken)


# ------------------------------------------------------------------------------- SADA-JEM: image order
def test_sadajem_loader_order_equals_torch_dataloader_after_the_same_init():
    """The shuffled loader after ``manual_seed(123)`` and a network's default init, replayed (small net)."""
    shapes = [(8, 3, 3, 3), (8,), (4, 8), (4,)]
    torch.manual_seed(123)
    nn.Conv2d(3, 8, 3)
    nn.Linear(8, 4)
    loader = torch.utils.data.DataLoader(list(range(500)), batch_size=10, shuffle=True, num_workers=0)
    order = torch.cat(list(loader))
    state = torch.get_rng_state()
    assert torch.equal(sadajem_loader_order(500, 123, shapes), order)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert not torch.equal(sadajem_loader_order(500, 124, shapes), order)


def test_sadajem_loader_order_equals_the_official_script_after_building_the_official_network():
    """bpda_eot_attack.py:36-46: seed 123 (utils.py:320-323), ``CCF(width=10, norm='batch')`` built (WRN-28-10: its
    default init consumes the RNG, models/jem_models.py:8-16 with models/wideresnet.py:64-97), then the shuffled
    loader (batch 10) iterated. The network is the independent transcription in tests/official_models.py, so the
    test runs anywhere (no official code is read)."""
    from official_models import CCF, SADAWideResNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        clf = CCF(SADAWideResNet(28, 10, "batch"), 10)
        loader = torch.utils.data.DataLoader(list(range(10000)), batch_size=10, shuffle=True, num_workers=0)
        official = torch.cat([batch for _, batch in zip(range(100), loader)])
    assert [tuple(p.shape) for name, p in clf.named_parameters() if ".bn" not in name] == wrn_init_shapes()
    del clf
    assert torch.equal(sadajem_loader_order(10000, 123)[:1000], official)
    assert len(set(official.tolist())) == 1000 and np.ptp(official.numpy()) > 9000
