"""The SGLD-refined classifier (jembench.refine): gradients through the refinement, BPDA, EOT, counters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jembench.errors import JembenchError
from jembench.refine import ForwardCounter, QuenchedNoise, RefinedClassifier
from jembench.sampling import SGLDConfig, sgld


class SmoothNet(nn.Module):
    """A tiny smooth (tanh) network on 1×4×4 images, so second derivatives exist everywhere."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, n_classes))

    def forward(self, x):
        return self.net(x)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return SmoothNet().double().eval()


def test_k0_is_the_plain_classifier(net):
    x = torch.rand(5, 1, 4, 4, dtype=torch.double) * 2 - 1
    refined = RefinedClassifier(net, SGLDConfig(n_steps=0), n_draws=7)
    assert torch.equal(refined(x), net(x))


def test_refinement_moves_the_input_and_matches_sgld(net):
    cfg = SGLDConfig(n_steps=3, step_size=0.1, noise=0.0)
    x = torch.rand(4, 1, 4, 4, dtype=torch.double) * 2 - 1
    refined = RefinedClassifier(net, cfg)
    expected = net(sgld(net, x, SGLDConfig(n_steps=3, step_size=0.1, noise=0.0)))
    with torch.no_grad():  # works under no_grad too (foolbox's call path): SGLD re-enables autograd itself
        out = refined(x)
    assert torch.allclose(out, expected)
    assert not torch.allclose(out, net(x))


def test_gradient_through_refinement_equals_finite_difference(net):
    """White-box gradients through K SGLD steps (JEM footnote 2): autograd = central differences."""
    refined = RefinedClassifier(net, SGLDConfig(n_steps=3, step_size=0.2, noise=0.0))
    x = (torch.rand(1, 1, 4, 4, dtype=torch.double) * 2 - 1).requires_grad_(True)
    score = lambda inp: refined(inp)[0, 1]  # noqa: E731
    (grad,) = torch.autograd.grad(score(x), x)
    assert grad.abs().max() > 1e-4  # gradients flow
    h = 1e-5
    for i in range(16):
        e = torch.zeros_like(x).view(-1)
        e[i] = h
        e = e.view_as(x)
        with torch.no_grad():
            fd = (score(x + e) - score(x - e)) / (2 * h)
        assert torch.isclose(grad.view(-1)[i], fd, rtol=1e-5, atol=1e-8), i
    # and differs from the gradient of the un-refined classifier: the refinement is really differentiated
    (plain,) = torch.autograd.grad(net(x)[0, 1], x)
    assert not torch.allclose(grad, plain, rtol=1e-3)


def test_bpda_forward_is_refined_backward_is_identity(net):
    cfg = SGLDConfig(n_steps=3, step_size=0.2, noise=0.0)
    exact = RefinedClassifier(net, cfg)
    bpda = RefinedClassifier(net, cfg, bpda=True)
    x = (torch.rand(2, 1, 4, 4, dtype=torch.double) * 2 - 1).requires_grad_(True)
    out = bpda(x)
    assert torch.allclose(out, exact(x))
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x)
    x_ref = exact.refine(x.detach()).detach().requires_grad_(True)
    (at_refined,) = torch.autograd.grad(net(x_ref)[:, 0].sum(), x_ref)
    assert torch.allclose(grad, at_refined)


def test_eot_averaging_reduces_the_variance_of_a_stochastic_refinement(net):
    cfg = SGLDConfig(n_steps=2, step_size=0.1, noise=0.3)
    x = torch.rand(3, 1, 4, 4, dtype=torch.double) * 2 - 1
    torch.manual_seed(1)
    reps = x.repeat(200, 1, 1, 1)  # 200 independent calls, as one batch
    with torch.no_grad():
        single = RefinedClassifier(net, cfg, n_draws=1)(reps).view(200, 3, -1)
        averaged = RefinedClassifier(net, cfg, n_draws=16)(reps).view(200, 3, -1)
    var1, var16 = single.var(0).mean(), averaged.var(0).mean()
    assert var1 > 0
    assert var16 < var1 / 6  # ideally 1/16
    assert torch.allclose(averaged.mean(0), single.mean(0), atol=4 * float(var1.sqrt()) / 14)


def test_deterministic_refinement_ignores_draws_and_counter_counts_every_step(net):
    x = torch.rand(5, 1, 4, 4, dtype=torch.double)
    for noise, draws, expected in [(0.0, 8, 5 * 4), (0.1, 8, 5 * 4 * 8), (0.1, 1, 5 * 4)]:
        model = RefinedClassifier(net, SGLDConfig(n_steps=3, step_size=0.1, noise=noise), n_draws=draws)
        with ForwardCounter(net) as counter:
            model(x)
        assert counter.count == expected, (noise, draws)  # (K + 1) network calls per image and draw


def test_quenched_noise_makes_a_stochastic_refinement_a_function(net):
    model = RefinedClassifier(net, SGLDConfig(n_steps=2, step_size=0.1, noise=0.5))
    x = torch.rand(4, 1, 4, 4, dtype=torch.double)
    q = QuenchedNoise(model, seed=3)
    assert torch.equal(q(x), q(x))
    assert not torch.equal(q(x), QuenchedNoise(model, seed=4)(x))
    state = torch.get_rng_state()
    q(x)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG stream is untouched


def test_bad_settings_are_one_line_errors(net):
    with pytest.raises(JembenchError, match="eot"):
        RefinedClassifier(net, SGLDConfig(n_steps=1), n_draws=0)
    with pytest.raises(JembenchError, match="n_steps"):
        SGLDConfig(n_steps=-1)


def test_input_noise_is_drawn_per_draw_before_the_refinement(net):
    """JEM's attacked model (attack_model.py:168-177): each draw refines its own x + N(0, σ²) copy."""
    x = torch.rand(3, 1, 4, 4, dtype=torch.double) * 2 - 1
    cfg = SGLDConfig(n_steps=0)
    model = RefinedClassifier(net, cfg, n_draws=4, input_noise=0.1)
    assert model.stochastic and not RefinedClassifier(net, cfg, n_draws=4).stochastic
    torch.manual_seed(3)
    out = model(x)
    torch.manual_seed(3)
    reps = x.repeat(4, 1, 1, 1)
    expected = net(reps + 0.1 * torch.randn_like(reps)).view(4, 3, -1).mean(0)
    assert torch.allclose(out, expected)
    assert not torch.allclose(out, model(x))  # a fresh draw at every call
    with pytest.raises(JembenchError, match="input_noise"):
        RefinedClassifier(net, cfg, input_noise=-1.0)


# ------------------------------------------------------------------------------------------ memory micro-batch
def _wrn():
    from jembench.reference_models.wideresnet import wide_resnet

    torch.manual_seed(0)
    return wide_resnet(depth=10, widen_factor=1, n_classes=4, in_channels=3, norm="batch").eval()


@pytest.mark.parametrize("bpda", [False, True])
def test_micro_batch_gives_the_unchunked_result(bpda):
    """EOT draws through K stochastic SGLD steps, chunked 5 images at a time out of 3 x 4 = 12: the forward count
    and the random stream after the call are those of the unchunked computation, bit for bit (each chunk draws
    the whole batch's noise and keeps its rows), and so is the forward without SGLD steps; logits after SGLD and
    the input gradient (recomputed chunk by chunk in the backward pass) equal the unchunked ones within float32
    rounding — oneDNN's input gradients differ by ~1e-8 between batch sizes — held to rtol 1e-5 / atol 1e-6."""
    model = _wrn()
    cfg = SGLDConfig(n_steps=3, step_size=0.5, noise=0.01)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    y = torch.tensor([0, 1, 2, 3])
    results = {}
    for micro in (0, 5):
        refined = RefinedClassifier(model, cfg, n_draws=3, bpda=bpda, input_noise=0.03, micro_batch=micro)
        torch.manual_seed(7)
        with ForwardCounter(model) as counter, torch.no_grad():
            plain = refined(x)
        after = torch.get_rng_state()
        torch.manual_seed(7)
        xg = x.clone().requires_grad_(True)
        logits = refined(xg)
        (grad,) = torch.autograd.grad(nn.functional.cross_entropy(logits, y), xg)
        results[micro] = (plain, counter.count, after, logits.detach(), grad, torch.get_rng_state())
    (p0, c0, a0, l0, g0, r0), (p5, c5, a5, l5, g5, r5) = results[0], results[5]
    torch.testing.assert_close(p5, p0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l5, l0, rtol=1e-5, atol=1e-6)
    if not bpda:  # the forward with and without a gradient is the same computation (BPDA adds x + (r - x))
        assert torch.equal(p0, l0)
    assert c0 == c5 == 12 * 4  # 12 images x (3 SGLD steps + the classification)
    assert torch.equal(a0, a5) and torch.equal(r0, r5)
    torch.testing.assert_close(g5, g0, rtol=1e-5, atol=1e-6)
    assert g0.abs().sum() > 0
    no_steps = [RefinedClassifier(model, SGLDConfig(n_steps=0), n_draws=3, input_noise=0.03, micro_batch=m)
                for m in (0, 5)]
    outs = []
    for refined in no_steps:
        torch.manual_seed(7)
        outs.append(refined(x))
    assert torch.equal(outs[0], outs[1])


def test_micro_batch_refuses_batch_norm_in_train_mode():
    refined = RefinedClassifier(_wrn().train(), SGLDConfig(n_steps=1), n_draws=2, micro_batch=1)
    with pytest.raises(JembenchError, match="eval mode"):
        refined(torch.zeros(2, 3, 8, 8))
    with pytest.raises(JembenchError, match="micro-batch"):
        RefinedClassifier(_wrn(), SGLDConfig(n_steps=1), micro_batch=-1)
