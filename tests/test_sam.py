"""SAM (reference_models/sam.py): the first step is exactly ρ·g/‖g‖, the update matches a hand computation,
adaptive SAM scales by |θ|, and batch-norm statistics move on the first pass only."""

import copy

import pytest
import torch
from torch import nn

from jembench.reference_models.config import TrainConfig
from jembench.reference_models.objectives import cross_entropy
from jembench.reference_models.sam import SAM, frozen_bn_stats
from jembench.reference_models.train_loop import TrainState, train_step
from jembench.reference_models.wideresnet import wide_resnet




def _regression():
    """A one-layer model with a hand-computable gradient: L(w) = ½ (w·a − t)², ∇L = (w·a − t) a."""
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False).double()
    a = torch.randn(1, 5, dtype=torch.float64)
    t = torch.tensor([[0.7]], dtype=torch.float64)
    return model, a, t


def _loss(model, a, t):
    return 0.5 * ((model(a) - t) ** 2).sum()


def _grad(w, a, t):
    return ((w @ a.T - t) * a).squeeze(0)  # (w·a − t) a


@pytest.mark.parametrize("rho", [0.05, 2.0])
def test_first_step_moves_weights_by_rho_times_normalised_gradient(rho):
    model, a, t = _regression()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sam = SAM(opt, rho=rho)
    w0 = model.weight.detach().clone()
    _loss(model, a, t).backward()
    g = _grad(w0, a, t)
    sam.first_step()
    moved = (model.weight.detach() - w0).squeeze(0)
    torch.testing.assert_close(moved, rho * g / g.norm(), rtol=0, atol=1e-15)
    assert abs(moved.norm().item() - rho) < 1e-12


def test_sam_update_equals_hand_computation():
    model, a, t = _regression()
    lr, rho, momentum, wd = 0.1, 0.3, 0.9, 5e-4
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    sam = SAM(opt, rho=rho)
    w = model.weight.detach().clone().squeeze(0)
    velocity = torch.zeros_like(w)
    for it in range(3):
        # by hand: ε = ρ g/‖g‖ at w; gradient at w + ε; SGD with momentum and weight decay from w
        g = _grad(w.unsqueeze(0), a, t)
        eps = rho * g / g.norm()
        g_sharp = _grad((w + eps).unsqueeze(0), a, t) + wd * w
        velocity = g_sharp if it == 0 else momentum * velocity + g_sharp
        w = w - lr * velocity
        # with SAM
        opt.zero_grad()
        _loss(model, a, t).backward()
        sam.first_step()
        opt.zero_grad()
        _loss(model, a, t).backward()
        sam.second_step()
        torch.testing.assert_close(model.weight.detach().squeeze(0), w, rtol=0, atol=1e-14)


def test_adaptive_sam_scales_the_ball_by_weight_magnitude():
    model, a, t = _regression()
    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=2.0, adaptive=True)
    w0 = model.weight.detach().clone().squeeze(0)
    _loss(model, a, t).backward()
    g = _grad(w0.unsqueeze(0), a, t)
    sam.first_step()
    expected = 2.0 * w0 ** 2 * g / (w0.abs() * g).norm()  # ASAM: ρ T² g / ‖T g‖, T = |θ|
    torch.testing.assert_close(model.weight.detach().squeeze(0) - w0, expected, rtol=0, atol=1e-14)


def test_second_step_restores_theta_bit_exactly_before_the_base_step():
    torch.manual_seed(1)
    model = nn.Linear(7, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the base step changes nothing
    sam = SAM(opt, rho=0.5)
    before = copy.deepcopy(model.state_dict())
    model(torch.randn(4, 7)).pow(2).sum().backward()
    sam.first_step()
    assert not torch.equal(model.weight, before["weight"])
    model(torch.randn(4, 7)).pow(2).sum().backward()
    sam.second_step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_second_step_without_first_step_is_an_error():
    model = nn.Linear(2, 1)
    with pytest.raises(RuntimeError, match="first_step"):
        SAM(torch.optim.SGD(model.parameters(), lr=0.1), rho=0.1).second_step()


def test_frozen_bn_stats_uses_batch_statistics_but_keeps_running_ones():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3, momentum=0.9).train()
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    reference = copy.deepcopy(bn)
    expected_out = reference(x)  # train mode, updating
    before = copy.deepcopy(bn.state_dict())
    with frozen_bn_stats(bn):
        out = bn(x)
    torch.testing.assert_close(out, expected_out)  # normalised with the batch's statistics
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k  # running mean / var / counter untouched
    assert bn.track_running_stats
    bn(x)
    assert not torch.equal(bn.running_mean, before["running_mean"])  # updates again after the block


def test_sam_train_step_updates_bn_statistics_on_the_first_pass_only():
    torch.manual_seed(0)
    model = wide_resnet(depth=10, widen_factor=1, n_classes=10, in_channels=1, norm="batch")
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    first_pass_only = copy.deepcopy(model)
    first_pass_only(x)  # what one forward of the batch does to the running statistics
    cfg = TrainConfig(px_weight=0.0, optimizer="sgd", lr=0.1, sam_rho=0.05, norm="batch")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(cfg, model, model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 1.0),
                       SAM(opt, 0.05), None)
    train_step(state, cross_entropy, x, y, x)
    stats = {k: v for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats
    for k, v in stats.items():
        assert torch.equal(v, first_pass_only.state_dict()[k]), k
