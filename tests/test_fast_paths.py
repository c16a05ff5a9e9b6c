"""The fast paths compute what the plain ones do: SGLD bit for bit, batched gradient scores, compiled models
within float tolerance; and the benchmark entry points run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jembench.compile import EAGER_ONLY_SUITES, maybe_channels_last, maybe_compile
from jembench.errors import JembenchError
from jembench.sampling import ReplayBuffer, SGLDConfig, UniformInit, sgld
from jembench.reference_models.sam import frozen_bn_stats
from jembench.reference_models.wideresnet import wide_resnet
from test_eval_helpers import make_wrn_checkpoint, protocol

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def textbook_sgld(model, x0, cfg: SGLDConfig, y=None):
    """SGLD exactly as written in JEM Eq. 3 / JEM++: a fresh leaf per step, new tensors for every update."""
    x = x0.detach()
    g = None
    for _ in range(cfg.n_steps):
        x = x.detach().requires_grad_(True)
        logits = model(x)
        log_p = torch.logsumexp(logits, 1) if y is None else logits.gather(1, y.view(-1, 1)).squeeze(1)
        g = torch.autograd.grad(log_p.sum(), x)[0]
        step = g.clamp(-cfg.grad_clamp, cfg.grad_clamp) if cfg.grad_clamp else g
        step = cfg.step_size * step
        if cfg.noise > 0:
            step = step + cfg.noise * torch.randn_like(x)
        x = x + step
        if cfg.x_clamp:
            x = x.clamp(-1.0, 1.0)
    return x.detach(), g


def _net(norm="batch", channels=1):
    torch.manual_seed(0)
    return wide_resnet(10, 1, 10, channels, norm)


CONFIGS = {
    "jem": SGLDConfig(n_steps=6, step_size=1.0, noise=0.01),
    "jempp": SGLDConfig(n_steps=5, step_size=1.0, noise=0.0, grad_clamp=1.0, x_clamp=True),
    "small-steps": SGLDConfig(n_steps=4, step_size=0.3, noise=0.05, grad_clamp=0.01, x_clamp=True),
    "zero-steps": SGLDConfig(n_steps=0),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("mode", ["eval", "train-frozen-bn"])
def test_fast_sgld_is_bit_identical_to_the_textbook_loop(name, mode):
    cfg, model = CONFIGS[name], _net()
    x0 = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    x0_copy = x0.clone()
    model.train(mode != "eval")
    with frozen_bn_stats(model):
        torch.manual_seed(7)
        stats: dict = {}
        fast = sgld(model, x0, cfg, stats=stats)
        rng_after_fast = torch.get_rng_state()
        torch.manual_seed(7)
        plain, last_grad = textbook_sgld(model, x0, cfg)
        assert torch.equal(torch.get_rng_state(), rng_after_fast)  # the noise consumed the generator alike
    assert torch.equal(fast, plain)
    assert torch.equal(x0, x0_copy)  # the chain's start is left alone
    assert not fast.requires_grad
    if cfg.n_steps:
        assert torch.equal(stats["grad_norm"], last_grad.flatten(1).norm(dim=1).mean())


@pytest.mark.parametrize("cfg", [CONFIGS["jem"], CONFIGS["small-steps"]])
def test_fast_sgld_equals_the_differentiable_path(cfg):
    """The detached fast path and the differentiable (create_graph) path give the same chain, bit for bit."""
    model = _net().eval()
    x0 = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for labels in (None, torch.arange(16) % 10):
        torch.manual_seed(1)
        fast = sgld(model, x0, cfg, y=labels)
        torch.manual_seed(1)
        plain = sgld(model, x0.clone(), cfg, y=labels, differentiable=True).detach()
        assert torch.equal(fast, plain)
    assert not torch.equal(fast, x0)


def test_fast_sgld_class_conditional_and_under_no_grad():
    model, cfg = _net().eval(), CONFIGS["jem"]
    x0 = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    y = torch.arange(20) % 10
    torch.manual_seed(3)
    with torch.no_grad():  # a caller's no_grad does not break the chain
        fast = sgld(model, x0, cfg, y=y)
    torch.manual_seed(3)
    assert torch.equal(fast, textbook_sgld(model, x0, cfg, y=y)[0])


def test_differentiable_sgld_unchanged():
    model, cfg = _net(norm=None).eval(), SGLDConfig(n_steps=3, step_size=0.5, noise=0.02, grad_clamp=2.0)
    grads = []
    for _ in range(2):
        x0 = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1).requires_grad_(True)
        torch.manual_seed(5)
        out = sgld(model, x0, cfg, differentiable=True)
        (out ** 2).sum().backward()
        grads.append((out.detach(), x0.grad))
    x0 = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1).requires_grad_(True)
    torch.manual_seed(5)
    x = x0
    for _ in range(cfg.n_steps):  # the textbook differentiable chain
        g = torch.autograd.grad(torch.logsumexp(model(x), 1).sum(), x, create_graph=True)[0]
        x = x + (cfg.step_size * g.clamp(-2.0, 2.0) + cfg.noise * torch.randn_like(x))
    (x ** 2).sum().backward()
    assert torch.equal(grads[0][0], x.detach()) and torch.equal(grads[0][1], x0.grad)
    assert torch.equal(grads[0][1], grads[1][1])


def test_buffer_write_back_equals_the_unique_based_reference():
    torch.manual_seed(0)
    buf = ReplayBuffer(100, 10, UniformInit((1, 2, 2)), reinit_freq=0.0)
    reference = buf.images.clone()
    for _ in range(20):
        idx = torch.randint(0, 100, (64,))  # many duplicates
        x = torch.randn(64, 1, 2, 2)
        buf.update(idx, x)
        unique, inverse = torch.unique(idx, return_inverse=True)
        last = torch.zeros(len(unique), dtype=torch.long).scatter_reduce_(
            0, inverse, torch.arange(len(idx)), reduce="amax", include_self=False)
        reference[unique] = x[last]
        assert torch.equal(buf.images, reference)


def test_batched_gradient_scores_equal_per_sample_scores():
    """One backward over a batch gives each image its own ∂LSE/∂x (eval mode: no cross-sample terms). oneDNN
    picks its convolution kernels by batch size, so float32 results agree to rounding (1e-6 relative), and in
    float64 (reference kernels) exactly or to 1e-12."""
    from jembench.metrics.ood_scores import score_tensor

    names = ["log_px", "max_py", "grad_norm"]
    for dtype, rtol, atol in ((torch.float32, 1e-5, 1e-6), (torch.float64, 1e-12, 1e-12)):
        model = _net(channels=3).eval().to(dtype)
        x = (torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dtype)
        batched = score_tensor(model, x, names, batch_size=12)
        single = score_tensor(model, x, names, batch_size=1)
        for name in names:
            torch.testing.assert_close(batched[name], single[name], rtol=rtol, atol=atol)
    # the test can fail: in train mode batch norm couples the images of a batch
    model.train()
    with frozen_bn_stats(model):
        coupled = score_tensor(model, x, ["grad_norm"], batch_size=12)["grad_norm"]
        alone = score_tensor(model, x, ["grad_norm"], batch_size=1)["grad_norm"]
    assert not torch.allclose(coupled, alone, rtol=1e-3)


def test_streamed_test_split_equals_the_stacked_one():
    """``iter_batches`` yields exactly the images (and order) ``stack_dataset`` stacks, subset or not."""
    from jembench.data import iter_batches, load_dataset, stack_dataset

    test = load_dataset("digits", "test")
    for limit in (None, 100, 10_000):
        x, y = stack_dataset(test, limit=limit, seed=3)
        xs, ys = zip(*iter_batches(test, limit=limit, seed=3, batch_size=64))
        assert all(len(b) <= 64 for b in xs) and torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_streamed_accuracy_and_calibration_equal_the_stacked_computation(tmp_path, sigma):
    """The suites stream the test split; their metrics equal those computed on the stacked split with the same
    batches (bit for bit: same inputs, same noise draws, same kernels)."""
    import torch.nn.functional as F

    from jembench.metrics.calibration import CalibrationAccumulator
    from jembench.models import load_checkpoint
    from jembench.suites import EvalContext, accuracy, calibration

    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn.pt"))
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, batch_size=50, seed=2,
                      record_path=tmp_path / "r.json")
    acc = accuracy.run(ckpt, protocol("accuracy", n=0, input_noise=sigma), ctx)["metrics"]
    cal = calibration.run(ckpt, protocol("calibration", n=0, n_bins=15, input_noise=sigma), ctx)["metrics"]

    x, y = ctx.test_set()
    gen, logits, reference = torch.Generator().manual_seed(2), [], CalibrationAccumulator(15)
    with torch.no_grad():
        for i in range(0, len(x), 50):
            xb = x[i:i + 50]
            if sigma > 0:
                xb = xb + sigma * torch.randn(xb.shape, generator=gen)
            logits.append(ckpt.model(xb))
            reference.add_logits(logits[-1], y[i:i + 50])
    logits = torch.cat(logits)
    assert acc["n"] == cal["n"] == len(y) > 50
    assert acc["accuracy"] == (logits.argmax(1) == y).double().mean().item() * 100
    assert acc["nll"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    summary = reference.summary()
    assert cal["ece"] == summary["ece"] * 100 and cal["nll"] == summary["nll"] and cal["brier"] == summary["brier"]


def test_channels_last_matches_nchw():
    model = _net(channels=3).eval()
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    expected = model(x)
    cl = maybe_channels_last(_net(channels=3).eval(), True)
    assert cl.f.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x), expected, rtol=1e-4, atol=1e-5)
    assert maybe_channels_last(model, False) is model


def test_maybe_compile_is_a_no_op_when_off_and_a_clear_error_when_unavailable(monkeypatch):
    model = _net()
    assert maybe_compile(model, False) is model
    import jembench.compile as jc

    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(JembenchError, match="C\\+\\+ compiler"):
        maybe_compile(model, True)
    monkeypatch.delattr(torch, "compile")
    assert "torch.compile needs torch >= 2.0" in jc.compile_unavailable_reason()


def test_eval_compiles_every_suite_but_robustness(monkeypatch):
    from jembench.evaluation import fast_checkpoint
    from jembench.models import LoadedCheckpoint

    ckpt = LoadedCheckpoint(model=_net(), method="jem", dataset="digits", n_classes=10, image_shape=(1, 8, 8),
                            path="x.pt", sha256="0")
    assert "robustness" in EAGER_ONLY_SUITES
    assert fast_checkpoint(ckpt, "robustness", compile=True) is ckpt  # double backward: stays eager
    compiled = fast_checkpoint(ckpt, "accuracy", compile=True)  # compilation is lazy: nothing runs here
    assert isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.model._orig_mod is ckpt.model and compiled.path == ckpt.path


@pytest.mark.slow
def test_compiled_logits_and_input_gradients_match_eager():
    """torch.compile (inductor, ~1 min on 2 CPU cores): logits, SGLD samples and the OOD gradient score."""
    from jembench.metrics.ood_scores import score_tensor

    model = _net().eval()
    compiled = maybe_compile(model, True)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    cfg = SGLDConfig(n_steps=3, step_size=1.0, noise=0.0, grad_clamp=1.0, x_clamp=True)
    torch.testing.assert_close(sgld(compiled, x, cfg), sgld(model, x, cfg), rtol=1e-4, atol=1e-5)
    a = score_tensor(compiled, x, ["log_px", "grad_norm"], batch_size=16)  # retain_graph on a compiled graph
    b = score_tensor(model, x, ["log_px", "grad_norm"], batch_size=16)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


def test_bench_command_is_listed(cli):
    out = cli("bench", "--help")
    assert out.returncode == 0 and "--quick" in out.stdout and "--compile" in out.stdout


@pytest.mark.slow
def test_python_m_benchmarks_quick_prints_every_family(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    families = {row["family"] for row in result["rows"]}
    assert families == {"sgld", "train", "loop", "profile", "suite", "ddp", "attacks"}
    assert all(row["value"] is not None for row in result["rows"]), [r for r in result["rows"] if r["value"] is None]
    for family in families:
        assert f"| {family}" in proc.stdout  # the printed table
    assert "load average" in proc.stdout


@pytest.mark.parametrize("differentiable", [False, True])
def test_sgld_noise_does_not_depend_on_the_memory_layout(differentiable):
    """Channels-last chains get the very noise NCHW chains get (the values of randn of the shape). The model reads
    its input by index (flatten + linear), so its gradient is layout-free too and the chains must agree exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    cfg = SGLDConfig(n_steps=3, step_size=1.0, noise=0.05)
    x0 = torch.rand(16, 3, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(5)
        runs[layout] = sgld(model, x0.contiguous(memory_format=layout), cfg, differentiable=differentiable).detach()
    torch.testing.assert_close(runs[torch.channels_last], runs[torch.contiguous_format], rtol=0, atol=1e-6)
    torch.manual_seed(5)
    first_noise = torch.randn(x0.shape)  # what the first step adds: the row-major draw
    torch.manual_seed(5)
    one = sgld(model, x0.contiguous(memory_format=torch.channels_last), SGLDConfig(n_steps=1, noise=1.0,
                                                                                    step_size=0.0))
    torch.testing.assert_close(one, x0 + first_noise, rtol=0, atol=1e-6)


def test_accuracy_and_calibration_share_one_forward_pass(tmp_path):
    """--suite all runs accuracy, then calibration, on the same clean test split: the second replays the first's
    logits. Any change to the pass (σ, limit, a weight, a batch-norm statistic, train mode, another model object)
    runs the network again."""
    from jembench.models import load_checkpoint
    from jembench.suites import EvalContext, _test_logits_cache, accuracy, calibration

    _test_logits_cache.clear()
    ckpt = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn.pt"))
    calls = []
    ckpt.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    ctx = EvalContext(dataset="digits", out_dir=tmp_path, batch_size=100, record_path=tmp_path / "r.json")

    acc = accuracy.run(ckpt, protocol("accuracy"), ctx)["metrics"]
    one_pass = len(calls)
    assert sum(calls) == acc["n"] > 100
    cal = calibration.run(ckpt, protocol("calibration"), ctx)["metrics"]
    assert len(calls) == one_pass  # replayed: no forward pass
    assert cal["accuracy"] == acc["accuracy"] and cal["n"] == acc["n"]

    def passes(**table) -> int:
        before = len(calls)
        calibration.run(ckpt, protocol("calibration", **table), ctx)
        return (len(calls) - before) // one_pass if len(calls) > before else 0

    assert passes(input_noise=0.1) == 1  # another stream
    assert passes() == 1  # the σ = .1 pass replaced the clean one
    assert passes() == 0
    with torch.no_grad():
        next(ckpt.model.parameters()).add_(1e-3)  # an edited weight
    assert passes() == 1
    assert passes(bn_mode="train") == 1 and passes(bn_mode="train") == 1  # train-mode passes are never kept
    other = load_checkpoint(make_wrn_checkpoint(tmp_path / "wrn2.pt"))
    other_calls = []
    other.model.register_forward_hook(lambda m, i, o: other_calls.append(1))
    calibration.run(other, protocol("calibration"), ctx)
    assert len(other_calls) == one_pass  # a different model object never replays another's logits
