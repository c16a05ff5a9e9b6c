"""Trainer fidelity against independent transcriptions of the official training code (issue 12, item 3).

Each test re-writes the official arithmetic here, from the official files (line ranges cited), without calling
jembench's loop, and compares it with one iteration of :func:`jembench.reference_models.train_loop.train_step`:

* SADA-JEM (sndnyang/SADAJEM train_sadajem.py:186-262, sam.py:14-37, utils.py:284-298): pass 1 f(x_p(x)) → K
  SGLD forwards in train mode → f(x̂) → f.classify(x_lab), all updating batch-norm statistics; ASAM first step;
  momentum 0; pass 2 on the same batches and x̂; second step — the batch-norm running statistics, the weights and
  the replay buffer after one iteration must equal ours to float rounding;
* JEM++ (sndnyang/JEMPP train_jempp.py:62-129 and 226-295): its PYLD sampler with the YOPO inner loop (a frozen
  first-layer gradient p, ``in_steps`` = 5 steps of ``pyld_lr`` = .2) equals our clamped SGLD with step 1, and
  its iteration (f(x_p(x)) first, then sampling in train mode) gives our statistics and weights;
* JEM (wgrathwohl/JEM train_wrn_ebm.py:202-237 and 302-361): sample_p_0's buffer draw, U(-1, 1) restarts and
  reinitialisation mask, K SGLD steps with the network in eval mode, then f(x_p(x)), f(x̂), f.classify(x_lab) in
  train mode and one Adam step — weights, buffer and batch-norm statistics after one iteration; and the
  5,000-image hold-out is the official index split (train_wrn_ebm.py:160-171).

Every iteration test runs with reinit_freq .5, so the reinitialisation draw (``t.rand(bs) < reinit_freq`` after the
buffer indices and the fresh U(-1, 1) images, JEM train_wrn_ebm.py:207-215, SADA-JEM train_sadajem.py:67-78 with
``--init u``) is compared too — except JEM++, whose only p_0 is the informative one (train_jempp.py:34-44: a NumPy
class index and a MultivariateNormal draw per image), which cannot be aligned draw for draw with jembench's
batched Cholesky sampler; its fitted distribution is tested in tests/test_jempp.py.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from jembench.reference_models.config import resolve_config
from jembench.sampling import ReplayBuffer, UniformInit
from jembench.reference_models import jem, jempp, sada_jem
from jembench.reference_models import train_loop as tl
from jembench.reference_models import training_data
from jembench.reference_models.sam import SAM
from jembench.reference_models.wideresnet import wide_resnet

B, SHAPE = 8, (3, 8, 8)
REINIT = 0.5  # half the chains restart from p_0: both branches of the reinitialisation draw are exercised


def _network(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = wide_resnet(depth=10, widen_factor=1, n_classes=10, in_channels=3, norm="batch")
    with torch.no_grad():  # non-trivial batch-norm affine parameters and statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    return model.train()


def _bn_stats(model) -> list[torch.Tensor]:
    return [t for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for t in (m.running_mean, m.running_var)]


def _batches(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x_lab = torch.rand((2 * B, *SHAPE), generator=gen) * 2 - 1
    y_lab = torch.randint(0, 10, (2 * B,), generator=gen)
    x_p_d = torch.rand((B, *SHAPE), generator=gen) * 2 - 1
    return x_lab, y_lab, x_p_d


def _lse(f, x):
    return f(x).logsumexp(1)  # CCF.forward(x): the logits' logsumexp


# ------------------------------------------------------------------------------------- official transcriptions
def official_sample_p_0(buffer_images, bs, reinit_freq):
    """sample_p_0 (JEM train_wrn_ebm.py:203-216; SADA-JEM train_sadajem.py:63-79 with ``--init u``, whose
    init_random_uniform is :52-60): buffer indices, then a full batch of U(-1, 1) images, then the mask."""
    inds = torch.randint(0, len(buffer_images), (bs,))
    buffer_samples = buffer_images[inds]
    random_samples = torch.FloatTensor(bs, *SHAPE).uniform_(-1, 1)
    choose_random = (torch.rand(bs) < reinit_freq).float()[:, None, None, None]
    samples = choose_random * random_samples + (1 - choose_random) * buffer_samples
    return samples, inds, choose_random.flatten().bool()


def official_sadajem_sample_q(f, x0, n_steps, sgld_lr=1.0, sgld_std=0.0):
    """train_sadajem.py:82-111 (no ``f.eval()``: batch norm in train mode, statistics updated by each forward)."""
    x_k = x0.clone().requires_grad_(True)
    for _ in range(n_steps):
        eta = torch.autograd.grad(_lse(f, x_k).sum(), [x_k], retain_graph=True)[0]
        tmp = x_k + torch.clamp(eta, -1, 1) * sgld_lr
        x_k.data = tmp.data
        if sgld_std > 0:
            x_k.data += sgld_std * torch.randn_like(x_k)
        x_k.data = torch.clamp(x_k.data, -1, 1)
    f.train()
    return x_k.detach()


class OfficialSAM:
    """sam.py:4-58 over SGD(momentum .9, weight decay): first_step ascends to w + e(w), second_step restores w and
    steps the base optimizer with the gradient taken at w + e(w)."""

    def __init__(self, params, rho, adaptive, **sgd):
        self.params = [p for p in params]
        self.rho, self.adaptive = rho, adaptive
        self.base = torch.optim.SGD(self.params, **sgd)
        self.old = {}

    @torch.no_grad()
    def first_step(self):
        norm = torch.norm(torch.stack([((torch.abs(p) if self.adaptive else 1.0) * p.grad).norm(p=2)
                                       for p in self.params if p.grad is not None]), p=2)
        scale = self.rho / (norm + 1e-12)
        for p in self.params:
            if p.grad is None:
                continue
            self.old[p] = p.data.clone()
            p.add_((torch.pow(p, 2) if self.adaptive else 1.0) * p.grad * scale.to(p))
        self.base.zero_grad()

    @torch.no_grad()
    def second_step(self):
        for p in self.params:
            if p.grad is None:
                continue
            p.data = self.old[p]
        self.base.step()
        self.base.zero_grad()


def _set_momentum(model, value):
    """utils.py:284-298: disable_running_stats sets every BatchNorm2d's momentum to 0, enable restores it."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = value


def official_sadajem_iteration(f, opt: OfficialSAM, buffer_images, x_lab, y_lab, x_p_d, n_steps, seed):
    """One iteration of train_sadajem.py:186-262 (px = pyx = 1, l2_coeff = 0, sigma = 0)."""
    torch.manual_seed(seed)
    _set_momentum(f, 0.9)  # enable_running_stats
    fp = _lse(f, x_p_d).mean()
    x0, inds, reinit = official_sample_p_0(buffer_images, B, REINIT)
    x_q = official_sadajem_sample_q(f, x0, n_steps)
    buffer_images[inds] = x_q
    fq = _lse(f, x_q).mean()
    loss = 0.0
    loss += -(fp - fq)
    loss += F.cross_entropy(f(x_lab), y_lab)
    opt.base.zero_grad()
    loss.backward()
    opt.first_step()
    _set_momentum(f, 0)  # disable_running_stats
    fp, fq = _lse(f, x_p_d).mean(), _lse(f, x_q).mean()
    L = -(fp - fq) + F.cross_entropy(f(x_lab), y_lab)
    L.backward()
    opt.second_step()
    _set_momentum(f, 0.9)
    return x_q, reinit


def official_jempp_sample_q(f, x0, n_steps, in_steps=5, pyld_lr=0.2, eps=1.0):
    """train_jempp.py:62-129 with the published flags (sgld_lr 0, sgld_std 0): per outer step, the gradient p of
    Σ LSE w.r.t. the first layer's output is frozen, and ``in_steps`` inner steps ascend the Hamiltonian
    H(x) = Σ conv1(x) · p (utils.py:13-25) with an element-wise clamp to [-eps, eps] and x kept in [-1, 1]."""
    conv1 = f.f.conv1
    out = {}
    handle = conv1.register_forward_hook(lambda m, i, o: out.__setitem__("z", o))
    x_k = x0.clone().requires_grad_(True)
    try:
        for _ in range(n_steps):
            e = _lse(f, x_k).sum()
            z = out["z"]
            eta, p = torch.autograd.grad(e, [x_k, z], retain_graph=True)
            tmp = x_k.data
            for _ in range(in_steps):
                tmp = tmp.detach().requires_grad_(True)
                g = torch.autograd.grad((conv1(tmp) * p).sum(), [tmp])[0]
                tmp = torch.clamp(tmp + torch.clamp(g, -eps, eps) * pyld_lr, -1, 1)
            x_k.data = tmp.data
    finally:
        handle.remove()
    f.train()
    return x_k.detach()


def official_jempp_iteration(f, opt, buffer_images, x_lab, y_lab, x_p_d, n_steps, seed):
    """train_jempp.py:226-295 with the default ``--plc alltrain1``: data first, then sampling, then the CE."""
    torch.manual_seed(seed)
    fp = _lse(f, x_p_d).mean()
    inds = torch.randint(0, len(buffer_images), (B,))
    x_q = official_jempp_sample_q(f, buffer_images[inds], n_steps)
    buffer_images[inds] = x_q
    fq = _lse(f, x_q).mean()
    L = 1.0 * -(fp - fq) + 1.0 * F.cross_entropy(f(x_lab), y_lab)
    opt.zero_grad()
    L.backward()
    opt.step()
    return x_q


def official_jem_sample_q(f, buffer_images, n_steps, reinit_freq, sgld_lr=1.0, sgld_std=0.01):
    """sample_q (train_wrn_ebm.py:218-237): ``f.eval()``, sample_p_0, K steps of
    ``x_k.data += sgld_lr * f' + sgld_std * randn_like(x_k)`` (no clamp), ``f.train()``, buffer write-back."""
    f.eval()
    init_sample, inds, reinit = official_sample_p_0(buffer_images, B, reinit_freq)
    x_k = init_sample.clone().requires_grad_(True)
    for _ in range(n_steps):
        f_prime = torch.autograd.grad(_lse(f, x_k).sum(), [x_k], retain_graph=True)[0]
        x_k.data += sgld_lr * f_prime + sgld_std * torch.randn_like(x_k)
    f.train()
    final_samples = x_k.detach()
    buffer_images[inds] = final_samples
    return final_samples, reinit


def official_jem_iteration(f, optim, buffer_images, x_lab, y_lab, x_p_d, n_steps, seed):
    """One iteration of train_wrn_ebm.py:302-361 (p_x_weight = p_y_given_x_weight = 1, p_x_y_weight = 0)."""
    torch.manual_seed(seed)
    x_q, reinit = official_jem_sample_q(f, buffer_images, n_steps, REINIT)
    fp, fq = _lse(f, x_p_d).mean(), _lse(f, x_q).mean()
    L = 0.
    L += 1.0 * -(fp - fq)
    L += 1.0 * F.cross_entropy(f(x_lab), y_lab)
    optim.zero_grad()
    L.backward()
    optim.step()
    return x_q, reinit


# ------------------------------------------------------------------------------------------------------ ours
def _our_state(method, model, buffer_images, **overrides):
    cfg = resolve_config(method, "paper", {"dataset": "cifar10", "buffer_size": len(buffer_images),
                                            "reinit_freq": REINIT, "lr": 0.05, "warmup_iters": 0, **overrides})
    optimizer = tl.build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    sam = SAM(optimizer, cfg.sam_rho, cfg.sam_adaptive) if cfg.sam_rho > 0 else None
    buffer = ReplayBuffer(len(buffer_images), 1, UniformInit(SHAPE), "cpu", cfg.reinit_freq)
    buffer.images = buffer_images.clone()
    return cfg, tl.TrainState(cfg, model, model, optimizer, scheduler, sam, buffer)


def _buffer(seed=3, n=32):
    return torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("k", [1, 3])
def test_one_sada_jem_iteration_equals_the_official_order(k):
    ours, theirs = _network(), _network()
    x_lab, y_lab, x_p_d = _batches()
    buf_theirs = _buffer()
    cfg, state = _our_state("sada_jem", ours, buf_theirs, sgld_steps=k)
    opt = OfficialSAM(theirs.parameters(), rho=cfg.sam_rho, adaptive=True, lr=cfg.lr, momentum=0.9,
                      weight_decay=cfg.weight_decay)
    before = [t.clone() for t in _bn_stats(theirs)]
    x_q, reinit = official_sadajem_iteration(theirs, opt, buf_theirs, x_lab, y_lab, x_p_d, k, seed=7)
    assert reinit.any() and not reinit.all()  # both branches of the reinitialisation draw
    torch.manual_seed(7)
    tl.train_step(state, sada_jem.objective, x_lab, y_lab, x_p_d)

    for a, b, c in zip(_bn_stats(ours), _bn_stats(theirs), before):
        assert not torch.equal(b, c)  # the iteration did move the statistics ...
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # ... exactly as the official order does
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(state.buffer.images, buf_theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(x_q, _buffer()[:B])


def test_the_order_matters_samples_first_would_leave_other_statistics():
    """Guard against a vacuous comparison: the JEM order (samples first) gives different statistics."""
    from jembench.reference_models.objectives import JEM_ORDER, joint_likelihood

    ours, theirs = _network(), _network()
    x_lab, y_lab, x_p_d = _batches()
    buf = _buffer()
    cfg, state = _our_state("sada_jem", ours, buf, sgld_steps=2)
    opt = OfficialSAM(theirs.parameters(), rho=cfg.sam_rho, adaptive=True, lr=cfg.lr, momentum=0.9,
                      weight_decay=cfg.weight_decay)
    official_sadajem_iteration(theirs, opt, buf, x_lab, y_lab, x_p_d, 2, seed=7)
    torch.manual_seed(7)
    tl.train_step(state, lambda step: joint_likelihood(step, JEM_ORDER), x_lab, y_lab, x_p_d)
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(_bn_stats(ours), _bn_stats(theirs)))


def test_jempp_pyld_sampler_is_our_clamped_sgld_with_step_one():
    """The YOPO inner loop's frozen first-layer gradient is the outer input gradient, so PYLD-M-5 with pyld_lr .2
    equals M steps of clamp(x + 1.0 · clamp(∇ LSE, -1, 1), -1, 1) — the docstring claim of
    jembench.reference_models.jempp."""
    from jembench.sampling import sgld

    f1, f2 = _network(), _network()
    x0 = _buffer(n=B)
    theirs = official_jempp_sample_q(f1, x0, n_steps=4)
    cfg = resolve_config("jempp", "paper", {"dataset": "cifar10", "sgld_steps": 4})
    ours = sgld(f2, x0, cfg.sgld)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert (ours - x0).abs().max() > 0.1
    for a, b in zip(_bn_stats(f1), _bn_stats(f2)):  # both ran 4 train-mode forwards
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_one_jempp_iteration_equals_the_official_order():
    ours, theirs = _network(), _network()
    x_lab, y_lab, x_p_d = _batches()
    x_lab, y_lab = x_lab[:B], y_lab[:B]  # JEM++: labelled and p(x) batches of the same size
    buf_theirs = _buffer()
    cfg, state = _our_state("jempp", ours, buf_theirs, sgld_steps=3, reinit_freq=0.0)  # see the module docstring
    opt = torch.optim.SGD(theirs.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    official_jempp_iteration(theirs, opt, buf_theirs, x_lab, y_lab, x_p_d, 3, seed=11)
    torch.manual_seed(11)
    tl.train_step(state, jempp.objective, x_lab, y_lab, x_p_d)
    for a, b in zip(_bn_stats(ours), _bn_stats(theirs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state.buffer.images, buf_theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 2])
def test_one_jem_iteration_equals_the_official_one(k):
    """JEM's order (SGLD in eval mode first: no statistics move while sampling; then f(x_p(x)), f(x̂),
    f.classify(x_lab) in train mode), its unclamped noisy SGLD, the reinitialisation draw and one Adam step: batch-
    norm statistics, weights and buffer equal the transcription's."""
    ours, theirs = _network(), _network()
    x_lab, y_lab, x_p_d = _batches()
    x_lab, y_lab = x_lab[:B], y_lab[:B]  # JEM: labelled and p(x) batches of args.batch_size each
    buf_theirs = _buffer()
    cfg, state = _our_state("jem", ours, buf_theirs, sgld_steps=k)
    assert (cfg.optimizer, cfg.sgld.step_size, cfg.sgld.noise, cfg.sgld.grad_clamp, cfg.sgld.x_clamp) == \
        ("adam", 1.0, 0.01, 0.0, False)
    optim = torch.optim.Adam(theirs.parameters(), lr=cfg.lr, betas=[.9, .999], weight_decay=cfg.weight_decay)
    before = [t.clone() for t in _bn_stats(theirs)]
    x_q, reinit = official_jem_iteration(theirs, optim, buf_theirs, x_lab, y_lab, x_p_d, k, seed=5)
    assert reinit.any() and not reinit.all()
    torch.manual_seed(5)
    tl.train_step(state, jem.objective, x_lab, y_lab, x_p_d)
    for a, b, c in zip(_bn_stats(ours), _bn_stats(theirs), before):
        assert not torch.equal(b, c)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    _assert_same_adam_step(state.optimizer, ours, optim, theirs)
    torch.testing.assert_close(state.buffer.images, buf_theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(buf_theirs, _buffer())


def _assert_same_adam_step(opt_ours, ours, opt_theirs, theirs):
    """Adam's first step moves every weight by ±lr·g/(|g| + eps): for a weight whose gradient is rounding noise
    (a convolution bias right before batch norm: |g| ≈ 1e-9) the sign of that noise decides a ±lr move. So the
    gradients are compared through Adam's moments (m = .1 g, √v = √.001 |g|, to float rounding: 1e-5 of the
    tensor's largest), and the weights
    wherever the gradient is well determined (|g| > 1e-4: there the rounding of g moves lr·g/(|g| + 1e-8) by
    under 1e-8); elsewhere they may differ by at most 2 lr."""
    compared = 0
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        mine, official = opt_ours.state.get(p, {}), opt_theirs.state.get(q, {})
        assert mine.keys() == official.keys(), name
        if not official:
            torch.testing.assert_close(p, q, msg=name)  # no gradient (the unused energy head): unchanged
            continue
        lr = opt_theirs.param_groups[0]["lr"]
        assert ((p - q).abs() <= 2 * lr + 1e-6).all(), name
        if float(official["exp_avg"].abs().max()) < 1e-7:  # the whole gradient is rounding noise (bias before BN)
            continue
        scale = 1e-5 * float(official["exp_avg"].abs().max())  # float rounding of the gradient
        torch.testing.assert_close(mine["exp_avg"], official["exp_avg"], rtol=1e-4, atol=scale, msg=name)
        torch.testing.assert_close(mine["exp_avg_sq"].sqrt(), official["exp_avg_sq"].sqrt(), rtol=1e-4,
                                   atol=scale * 0.32, msg=name)  # = √.001 |g|
        determined = official["exp_avg"].abs() > 1e-5
        torch.testing.assert_close(p[determined], q[determined], rtol=1e-5, atol=1e-6, msg=name)
        compared += int(determined.sum())
    assert compared > 1000  # most weights have a well-determined gradient


def test_jem_holdout_is_the_official_index_split():
    """train_wrn_ebm.py:160-171: np.random.seed(1234); np.random.shuffle(range(50000)); first 5,000 = validation.
    The first indices below were computed from NumPy's legacy RandomState (stable across NumPy versions)."""
    import numpy as np

    valid, train = training_data.holdout_split(50_000, 5000, 1234)
    assert valid[:10] == [20308, 37706, 6041, 42143, 23202, 38925, 17788, 5884, 33193, 39911]
    assert train[:3] == [31704, 19298, 36004]
    assert len(valid) == 5000 and len(train) == 45_000 and not set(valid) & set(train)
    state = np.random.get_state()[1].copy()
    training_data.holdout_split(100, 10, 1234)
    assert (np.random.get_state()[1] == state).all()  # NumPy's global stream is left alone


def test_fused_forward_of_a_norm_free_jem_equals_three_separate_forwards():
    """Without batch norm the loop runs f over cat(x_px, x̂, x) once; loss and gradients equal the separate
    passes of the official order to float rounding (and with batch norm the loop never fuses)."""
    from jembench.reference_models.objectives import JEM_ORDER, Step, joint_likelihood

    torch.manual_seed(0)
    net = wide_resnet(depth=10, widen_factor=1, n_classes=10, in_channels=3, norm=None)
    x_lab, y_lab, x_p_d = _batches()
    samples = _buffer(n=B)
    results = []
    for fuse in (False, True):
        net.zero_grad()
        step = Step(net, x_lab, y_lab, x_p_d, lambda: samples, 1.0, fuse=fuse)
        loss, stats = joint_likelihood(step, JEM_ORDER)
        loss.backward()
        results.append((loss.detach(), stats, [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (l0, s0, g0), (l1, s1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    for key in ("ce", "e_data", "e_samples"):
        torch.testing.assert_close(s1[key], s0[key], rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not tl.has_batch_norm(net) and tl.has_batch_norm(_network())
