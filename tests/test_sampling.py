"""SGLD and the replay buffer behave as the maths says."""

import math

import pytest
import torch
from torch import nn

from jembench.sampling import ClassGaussianInit, ReplayBuffer, SGLDConfig, UniformInit, sgld


class Quadratic(nn.Module):
    """Logits whose LSE is log N(x; mu_c, s^2 I) up to a constant: f(x)[c] = -||x - mu_c||^2 / (2 s^2)."""

    def __init__(self, means: torch.Tensor, s: float):
        super().__init__()
        self.means, self.s = means, s

    def forward(self, x):
        d = ((x.flatten(1)[:, None, :] - self.means[None]) ** 2).sum(-1)
        return -d / (2 * self.s ** 2)


def test_sgld_moves_towards_the_minimum_and_matches_the_stationary_spread():
    torch.manual_seed(0)
    mu, s, alpha = torch.tensor([[0.5, -0.25]]), 0.5, 0.01
    model = Quadratic(mu, s)
    x0 = torch.full((4000, 2), 3.0)
    cfg = SGLDConfig(n_steps=600, step_size=alpha, noise=math.sqrt(2 * alpha))  # Langevin: sigma^2 = 2 alpha
    x = sgld(model, x0, cfg)
    assert torch.allclose(x.mean(0), mu[0], atol=0.03)
    # the discretised chain is an AR(1) process: x' - mu = (1 - a)(x - mu) + sigma*eps, a = alpha / s^2,
    # whose stationary variance is sigma^2 / (1 - (1 - a)^2)
    a = alpha / s ** 2
    expected_var = 2 * alpha / (1 - (1 - a) ** 2)
    assert x.var(0).mean().item() == pytest.approx(expected_var, rel=0.06)


def test_sgld_without_noise_descends_the_energy():
    model = Quadratic(torch.zeros(1, 3), 1.0)
    x0 = torch.randn(16, 3) * 2
    x = sgld(model, x0, SGLDConfig(n_steps=5, step_size=0.1, noise=0.0))
    assert (model(x).squeeze(1) > model(x0).squeeze(1)).all()
    assert torch.allclose(x, x0 * 0.9 ** 5, atol=1e-6)  # gradient step x - 0.1 x, five times


def test_class_conditional_chain_goes_to_its_class_mean():
    torch.manual_seed(1)
    means = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    model = Quadratic(means, 1.0)
    y = torch.tensor([0] * 50 + [1] * 50)
    x = sgld(model, torch.zeros(100, 2), SGLDConfig(n_steps=200, step_size=0.05, noise=0.0), y=y)
    assert torch.allclose(x[:50], means[0].expand(50, 2), atol=1e-3)
    assert torch.allclose(x[50:], means[1].expand(50, 2), atol=1e-3)


def test_gradient_and_x_clamps():
    model = Quadratic(torch.zeros(1, 2), 0.1)  # steep: raw gradient 100 * x
    x0 = torch.tensor([[0.9, -0.5]])
    x = sgld(model, x0, SGLDConfig(n_steps=1, step_size=1.0, noise=0.0, grad_clamp=0.01))
    assert torch.allclose(x, torch.tensor([[0.89, -0.49]]))
    far = Quadratic(torch.tensor([[5.0, 5.0]]), 1.0)
    x = sgld(far, torch.zeros(3, 2), SGLDConfig(n_steps=10, step_size=1.0, noise=0.0, x_clamp=True))
    assert x.max() <= 1.0 and torch.allclose(x, torch.ones(3, 2))


def test_differentiable_chain_passes_gradients_to_the_start():
    model = Quadratic(torch.zeros(1, 2), 1.0)
    x0 = torch.tensor([[1.0, 2.0]], requires_grad=True)
    x = sgld(model, x0, SGLDConfig(n_steps=3, step_size=0.1, noise=0.0), differentiable=True)
    x.sum().backward()
    assert torch.allclose(x0.grad, torch.full((1, 2), 0.9 ** 3))


def test_buffer_reinit_share_is_rho():
    torch.manual_seed(0)
    rho = 0.05
    buf = ReplayBuffer(1000, 10, UniformInit((1, 2, 2)), reinit_freq=rho)
    buf.images.fill_(5.0)  # chains far outside U(-1, 1), so fresh draws are recognisable
    n, draws = 200, 100
    fresh = 0
    for _ in range(draws):
        x, idx = buf.sample(n)
        fresh += (x.flatten(1).abs() <= 1).all(1).sum().item()
    share = fresh / (n * draws)
    sd = math.sqrt(rho * (1 - rho) / (n * draws))
    assert abs(share - rho) < 4 * sd


def test_buffer_conditional_draws_and_update():
    buf = ReplayBuffer(103, 10, UniformInit((1, 2, 2)), reinit_freq=0.0)
    assert buf.size == 100 and (buf.labels == torch.arange(100) % 10).all()
    y = torch.tensor([3, 3, 7, 0])
    x, idx = buf.sample(4, y=y)
    assert torch.equal(buf.labels[idx], y)
    buf.update(idx, torch.full_like(x, 0.25))
    assert torch.equal(buf.images[idx], torch.full_like(x, 0.25))
    # a chain drawn twice in one batch keeps its last state, deterministically
    dup = torch.tensor([5, 9, 5, 5])
    buf.update(dup, torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 2, 2))
    assert torch.all(buf.images[5] == 3) and torch.all(buf.images[9] == 1)


def test_class_gaussian_init_fits_and_samples():
    torch.manual_seed(0)
    images = torch.cat([torch.randn(400, 1, 2, 2) * 0.1 - 0.5, torch.randn(400, 1, 2, 2) * 0.2 + 0.3])
    labels = torch.tensor([0] * 400 + [1] * 400)
    init = ClassGaussianInit.fit(images, labels, 2)
    samples = init.sample(torch.tensor([1] * 5000), "cpu")
    assert samples.shape == (5000, 1, 2, 2)
    assert torch.allclose(samples.mean(0).flatten(), images[400:].mean(0).flatten(), atol=0.02)
    assert torch.allclose(samples.flatten(1).std(0), images[400:].flatten(1).std(0), rtol=0.1)


def test_building_a_buffer_draws_only_its_own_images_from_the_rng():
    """The buffer's size check must not draw from the run's random stream: the initial images are then exactly
    the first draw after seeding, so a run is reproducible from its seed (and tests can rebuild it)."""
    torch.manual_seed(3)
    expected = torch.rand(40, 1, 8, 8) * 2 - 1
    torch.manual_seed(3)
    buffer = ReplayBuffer(40, 10, UniformInit((1, 8, 8)))
    assert torch.equal(buffer.images, expected)
