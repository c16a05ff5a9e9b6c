"""JEM++ pieces: the informative initialisation (fit, cache, buffer fill, reinit draws), proximal SGLD settings,
the presets and the warm-up + step-decay schedule."""

import pytest
import torch

from jembench.reference_models.config import resolve_config
from jembench.errors import JembenchError
from jembench.sampling import ClassGaussianInit, ReplayBuffer
from jembench.reference_models import informative_init as ii
from jembench.reference_models import jempp, sada_jem
from jembench.reference_models.train_loop import build_buffer, lr_factor




def _synthetic(n_per_class=4000, seed=0):
    """Three classes of 2×2 images with known means and (correlated) covariances, well inside [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.tensor([[-0.5, 0.0, 0.3, 0.1], [0.4, -0.2, 0.0, 0.2], [0.0, 0.5, -0.4, -0.1]])
    mixes = [torch.randn(4, 4, generator=gen) * 0.06 for _ in range(3)]
    covs = [m @ m.T + 0.002 * torch.eye(4) for m in mixes]
    xs, ys = [], []
    for c in range(3):
        dist = torch.distributions.MultivariateNormal(means[c], covs[c])
        torch.manual_seed(seed + c)
        xs.append(dist.sample((n_per_class,)))
        ys.append(torch.full((n_per_class,), c))
    return torch.cat(xs).view(-1, 1, 2, 2), torch.cat(ys), means, covs


def test_informative_init_samples_have_the_fitted_class_means_and_covariances():
    images, labels, _, _ = _synthetic()
    fitted = ClassGaussianInit.from_state_dict(ClassGaussianInit.fit(images, labels, 3).state_dict())
    n = 20000
    torch.manual_seed(1)
    y = torch.arange(3).repeat_interleave(n)[torch.randperm(3 * n)]  # shuffled labels: the per-class path
    x = fitted.sample(y, "cpu").view(3 * n, 4).double()
    for c in range(3):
        data = images[labels == c].view(-1, 4).double()
        mu, cov = data.mean(0), torch.cov(data.T) + 1e-4 * torch.eye(4, dtype=torch.float64)
        xc = x[y == c]
        se_mean = (cov.diagonal() / n).sqrt()
        assert ((xc.mean(0) - mu).abs() < 5 * se_mean).all(), (c, xc.mean(0), mu)
        # sample covariance: Var(s_ij) = (σ_ij² + σ_ii σ_jj) / n
        se_cov = ((cov ** 2 + torch.outer(cov.diagonal(), cov.diagonal())) / n).sqrt()
        assert ((torch.cov(xc.T) - cov).abs() < 5 * se_cov).all(), (c, torch.cov(xc.T), cov)


def test_class_gaussian_sampling_equals_the_per_image_formula():
    """The class-by-class product equals x_i = clamp(μ_{y_i} + L_{y_i} z_i) computed image by image."""
    images, labels, _, _ = _synthetic(200)
    init = ClassGaussianInit.fit(images, labels, 3)
    y = torch.tensor([2, 0, 1, 1, 0, 2, 2])
    torch.manual_seed(5)
    x = init.sample(y, "cpu").view(len(y), -1)
    torch.manual_seed(5)
    z = torch.randn(len(y), 4)
    for i, c in enumerate(y.tolist()):
        expected = (init.means[c] + init.scale_trils[c] @ z[i]).clamp(-1, 1)
        torch.testing.assert_close(x[i], expected, rtol=0, atol=1e-6)


def test_informative_init_is_fitted_once_to_unaugmented_data_and_cached(tmp_path, monkeypatch):
    cfg = resolve_config("jempp", "tiny", {"dataset": "digits"})
    calls = []
    real_fit = ClassGaussianInit.fit

    def spy(images, labels, n_classes, **kw):
        calls.append(images)
        return real_fit(images, labels, n_classes, **kw)

    monkeypatch.setattr(ClassGaussianInit, "fit", staticmethod(spy))
    first = ii.informative_init(cfg, tmp_path, 10)
    second = ii.informative_init(cfg, tmp_path, 10)
    assert len(calls) == 1 and (tmp_path / ii.CACHE_NAME).is_file()
    torch.testing.assert_close(first.means, second.means)
    from jembench.data import load_dataset, stack_dataset
    raw, _ = stack_dataset(load_dataset("digits", "train"))
    assert torch.equal(calls[0], raw)  # un-augmented, noise-free training images


def test_buffer_is_filled_from_and_reinitialised_from_the_class_gaussians(tmp_path):
    cfg = resolve_config("jempp", "tiny", {"dataset": "digits", "buffer_size": 2000, "reinit_freq": 1.0})
    torch.manual_seed(0)
    buffer = build_buffer(cfg, tmp_path, 10, (1, 8, 8), torch.device("cpu"), world_size=1)
    assert isinstance(buffer, ReplayBuffer) and isinstance(buffer.init, ClassGaussianInit)
    means = buffer.init.means.view(10, 1, 8, 8)
    for c in range(10):  # chains of class c start near μ_c (much nearer than to other classes' means)
        own = (buffer.images[buffer.labels == c].mean(0) - means[c]).abs().mean()
        other = (buffer.images[buffer.labels == c].mean(0) - means[(c + 1) % 10]).abs().mean()
        assert own < 0.05 < other, (c, own, other)
    x0, idx = buffer.sample(4000)  # reinit_freq 1: every start is a fresh draw from p_0 of the chain's class
    for c in range(10):
        drawn = x0[buffer.labels[idx] == c]
        assert (drawn.mean(0) - means[c]).abs().mean() < 0.08


def test_proximal_sgld_and_optimiser_settings_of_the_presets():
    cfg = resolve_config("jempp", "paper", {"dataset": "cifar10"})
    s = cfg.sgld
    assert (s.grad_clamp, s.x_clamp, s.n_steps, s.step_size, s.noise) == (1.0, True, 10, 1.0, 0.0)
    assert (cfg.init, cfg.norm, cfg.optimizer, cfg.lr, cfg.warmup_iters, cfg.decay_epochs, cfg.decay_rate,
            cfg.epochs, cfg.batch_size, cfg.input_noise) == ("class_gaussian", "batch", "sgd", 0.1, 1000,
                                                              (50, 100, 125), 0.2, 150, 64, 0.03)
    for name, k in [("paper-k5", 5), ("paper-k10", 10), ("paper-k20", 20)]:
        assert resolve_config("jempp", name, {"dataset": "cifar100"}).sgld.n_steps == k
        assert resolve_config("sada_jem", name, {"dataset": "cifar10"}).sgld.n_steps == k
    assert resolve_config("jempp", "paper", {"dataset": "svhn"}).flip is False
    sada = resolve_config("sada_jem", "paper", {"dataset": "cifar10"})
    assert (sada.sgld.n_steps, sada.sam_rho, sada.sam_adaptive, sada.px_unaugmented, sada.input_noise,
            sada.decay_epochs, sada.epochs, sada.weight_decay) == (5, 2.0, True, True, 0.0, (60, 120, 180), 200, 5e-4)
    with pytest.raises(JembenchError, match="no preset 'paper-k5'.*tiny, cpu, paper"):
        resolve_config("jem", "paper-k5", {})
    base = ("tiny", "cpu", "paper", "paper-k5", "paper-k10", "paper-k20")
    assert jempp.PRESETS == sada_jem.PRESETS == base + tuple(f"{name}-official" for name in base)


@pytest.mark.parametrize("method", ["jem", "jempp", "sada_jem", "softmax", "softmax_sam"])
def test_the_official_flavour_of_every_preset_only_stops_on_divergence(method):
    """``P-official`` is ``P`` with divergence = stop, for every preset and dataset; ``P`` recovers."""
    from jembench.reference_models import get_method

    presets = get_method(method).PRESETS
    flavours = [p for p in presets if p.endswith("-official")]
    assert sorted(flavours) == sorted(f"{p}-official" for p in presets if not p.endswith("-official"))
    for name in flavours:
        for dataset in ("digits", "cifar10", "svhn"):
            base = resolve_config(method, name.removesuffix("-official"), {"dataset": dataset}).to_dict()
            official = resolve_config(method, name, {"dataset": dataset}).to_dict()
            assert (base.pop("divergence"), official.pop("divergence")) == ("recover", "stop")
            assert official == base, (name, dataset)


def test_sgld_step_is_clamped_in_gradient_and_range():
    from jembench.sampling import sgld
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.fill_(1e3)  # a huge gradient: each step may move a pixel by at most α·ε
    cfg = resolve_config("jempp", "paper", {"dataset": "cifar10", "sgld_steps": 1, "sgld_step_size": 0.3})
    x0 = torch.tensor([[-0.9, 0.0, 0.5, 0.95]]).view(1, 1, 2, 2)
    x = sgld(model, x0, cfg.sgld)
    torch.testing.assert_close(x, (x0 + 0.3).clamp(-1, 1))


def test_warmup_then_step_decay():
    """The official warm-up (train_jempp.py:227-230): lr · it / warmup before iteration it (0-based) while
    it <= warmup, so the first step runs at rate 0 and iteration 1000 at the full rate; then ×.2 decays."""
    cfg = resolve_config("jempp", "paper", {"dataset": "cifar10"})
    f = lr_factor(cfg, iters_per_epoch=100)
    official = [0.1 * it / 1000 for it in range(1001)]
    assert [0.1 * f(it) for it in range(1001)] == pytest.approx(official, abs=1e-15)
    assert f(0) == 0.0 and f(500) == pytest.approx(0.5) and f(1000) == 1.0
    assert f(4999) == 1.0 and f(5000) == pytest.approx(0.2) and f(10000) == pytest.approx(0.04)
    assert f(12500) == pytest.approx(0.008)


def test_cpu_preset_compresses_the_paper_schedule_into_its_budget():
    from jembench.reference_models.presets import CPU_ITERS

    for method in ("jem", "jempp", "sada_jem", "softmax", "softmax_sam"):
        paper = resolve_config(method, "paper", {"dataset": "cifar10"})
        cpu = resolve_config(method, "cpu", {"dataset": "cifar10"})
        assert (cpu.depth, cpu.width, cpu.max_iters) == (10, 1, CPU_ITERS[method])
        same = ("optimizer", "lr", "batch_size", "px_batch_size", "sgld", "init", "sam_rho", "holdout", "select_best",
                "input_noise")
        assert all(getattr(cpu, k) == getattr(paper, k) for k in same)
        assert cpu.decay_fractions == pytest.approx([e / paper.epochs for e in paper.decay_epochs])
        f = lr_factor(cpu, 10_000, total_iters=cpu.max_iters)
        after = [f(int(fr * cpu.max_iters) + 1) for fr in cpu.decay_fractions]
        assert after == pytest.approx([paper.decay_rate ** (i + 1) for i in range(len(after))])


def test_official_stopping_rules_and_selection_are_the_preset_defaults():
    jem_, jpp, sada = (resolve_config(m, "paper", {"dataset": "cifar10"}) for m in ("jem", "jempp", "sada_jem"))
    assert (jem_.loss_bound, jem_.gap_bound, jpp.loss_bound, jpp.gap_bound) == (1e8, 0.0, 1e8, 0.0)
    assert (sada.loss_bound, sada.gap_bound) == (0.0, 1e5)
    assert (jem_.holdout, jem_.holdout_seed, jem_.select_best, jem_.px_separate) == (5000, 1234, "validation", True)
    assert (jpp.holdout, jpp.select_best, jpp.px_separate, jpp.sgld_bn_updates) == (5000, "validation", True, True)
    assert (sada.holdout, sada.select_best, sada.px_unaugmented, sada.sgld_bn_updates) == (0, "test", True, True)
    assert (jem_.epochs, jem_.decay_epochs, jem_.warmup_iters) == (200, (160, 180), 1000)
