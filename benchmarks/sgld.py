"""The sampler against the limit: one SGLD step / one bare input-gradient step.

The bare loop is the issue's definition of the limit, verbatim::

    x.requires_grad_()
    for _ in range(K):
        g = torch.autograd.grad(torch.logsumexp(f(x), 1).sum(), x)[0]

An SGLD step must add nothing measurable to it (target ≤ 1.05): the update x ← x + α·clamp(g) + σ·ε is
elementwise work on one image batch. Measured for the two samplers the methods use, with their tiny presets'
settings: JEM's (network without batch norm in eval mode, σ = .01) and JEM++ / SADA-JEM's (batch norm in train
mode with frozen running statistics, gradient clamp 1, x ∈ [−1, 1], σ = 0). Also: the whole PCD draw as the
loop runs it (buffer draw with reinitialisation from p_0, K steps, write-back: ``train_loop.draw_samples``),
channels-last against NCHW, and — with ``--compile`` — ``torch.compile``d SGLD against the eager bare loop.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import torch

from .common import ModelSpec, Row, check, fmt_ms, interleaved, log, median, paired_ratio
from .trainstate import build_state, config_for

TARGET = 1.05
SAMPLERS = {"jem": "JEM sampler (eval, sigma=.01)", "jempp": "JEM++ sampler (train-mode BN, clamps)"}


def bare_loop(model: torch.nn.Module, x0: torch.Tensor, k: int) -> torch.Tensor:
    x = x0.detach().clone()
    x.requires_grad_()
    g = x
    for _ in range(k):
        g = torch.autograd.grad(torch.logsumexp(model(x), 1).sum(), x)[0]
    return g


def _network(cfg, spec: ModelSpec) -> torch.nn.Module:
    from jembench.reference_models.wideresnet import wide_resnet

    torch.manual_seed(0)
    return wide_resnet(cfg.depth, cfg.width, 10, spec.image_shape[0], None if cfg.norm == "none" else cfg.norm)


@contextlib.contextmanager
def _sampler_mode(model: torch.nn.Module, train_mode: bool):
    """The network state the loop runs SGLD in: eval (JEM) or train mode with frozen BN statistics (JEM++)."""
    from jembench.reference_models.sam import frozen_bn_stats

    model.train(train_mode)
    with frozen_bn_stats(model) if train_mode else contextlib.nullcontext():
        yield


def _sync(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else None


def measure_sampler(spec: ModelSpec, method: str, steps: int, repeats: int, device: str,
                    channels_last: bool = True) -> list[Row]:
    from jembench.sampling import sgld

    cfg = config_for(spec, method)
    scfg = cfg.sgld
    timed = type(scfg)(**{**scfg.to_dict(), "n_steps": steps})
    model = _network(cfg, spec).to(device)
    x0 = (torch.rand((spec.batch_size, *spec.image_shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
          ).to(device)
    label = SAMPLERS[method]
    rows = []
    with _sampler_mode(model, cfg.sgld_train_mode):
        times = interleaved({"sgld": lambda: sgld(model, x0, timed), "bare": lambda: bare_loop(model, x0, steps)},
                            repeats, warmup=1, sync=_sync(device))
    ratio = paired_ratio(times["sgld"], times["bare"])
    rows.append(Row("sgld", spec.label, f"SGLD step / bare loop step, {label}", ratio, "x", f"<= {TARGET:.2f}",
                    check(ratio, TARGET),
                    f"{fmt_ms(median(times['sgld']) / steps)} vs {fmt_ms(median(times['bare']) / steps)} per step; "
                    f"K={steps}, n={repeats}",
                    {"method": method, "steps": steps, "sgld_s": times["sgld"], "bare_s": times["bare"],
                     "sgld_config": timed.to_dict(), "train_mode": cfg.sgld_train_mode}))
    if channels_last and spec.image_shape[0] == 3:
        cl = _network(cfg, spec).to(device, memory_format=torch.channels_last)
        with _sampler_mode(model, cfg.sgld_train_mode), _sampler_mode(cl, cfg.sgld_train_mode):
            t = interleaved({"cl": lambda: sgld(cl, x0, timed), "nchw": lambda: sgld(model, x0, timed)},
                            repeats, warmup=1, sync=_sync(device))
        r = paired_ratio(t["cl"], t["nchw"])
        rows.append(Row("sgld", spec.label, f"SGLD step channels-last / NCHW, {label}", r, "x", "", None,
                        f"{fmt_ms(median(t['cl']) / steps)} vs {fmt_ms(median(t['nchw']) / steps)} per step "
                        f"(< 1: channels-last helps)", {"method": method, "cl_s": t["cl"], "nchw_s": t["nchw"]}))
    return rows


def measure_draw(spec: ModelSpec, method: str, repeats: int, device: str, tmp: Path) -> Row:
    """``train_loop.draw_samples`` (buffer draw + K steps + write-back, mode switches) / K bare steps."""
    from jembench.reference_models import train_loop as tl

    cfg = config_for(spec, method, device=device)
    torch.manual_seed(0)
    state = build_state(cfg, spec, tmp / f"draw-{spec.key}-{method}", device)
    model, n, k = state.model, spec.batch_size, cfg.sgld.n_steps
    x0 = state.buffer.images[:n].clone()

    def bare() -> None:
        with _sampler_mode(model, cfg.sgld_train_mode):
            bare_loop(model, x0, k)
        model.train()

    times = interleaved({"draw": lambda: tl.draw_samples(state, n), "bare": bare}, repeats, warmup=1,
                        sync=_sync(device))
    ratio = paired_ratio(times["draw"], times["bare"])
    return Row("sgld", spec.label, f"PCD draw (buffer + K steps + write-back) / K bare steps, "
                                   f"{SAMPLERS[method].split(' (')[0]}, K={k}", ratio, "x", f"<= {TARGET:.2f}",
               check(ratio, TARGET), f"{fmt_ms(median(times['draw']))} vs {fmt_ms(median(times['bare']))}; "
                                     f"n={repeats}",
               {"method": method, "K": k, "draw_s": times["draw"], "bare_s": times["bare"]})


def measure_compile(spec: ModelSpec, steps: int, repeats: int, device: str) -> list[Row]:
    """torch.compile (frozen weights, as ``jembench eval --compile``): compile time, compiled SGLD step / eager
    bare step, compiled vs eager numbers."""
    from jembench.compile import maybe_compile
    from jembench.sampling import SGLDConfig, sgld

    cfg = config_for(spec, "jem")
    model = _network(cfg, spec).to(device).eval()
    compiled = maybe_compile(_network(cfg, spec).to(device).eval(), True, freeze=True)  # as `eval --compile`
    x0 = (torch.rand((spec.batch_size, *spec.image_shape), generator=torch.Generator().manual_seed(1)) * 2 - 1
          ).to(device)
    scfg = SGLDConfig(n_steps=steps, step_size=1.0, noise=0.0)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(x0)
    sgld(compiled, x0, scfg)
    compile_s = time.perf_counter() - start
    with torch.no_grad():
        logit_diff = (compiled(x0) - model(x0)).abs().max().item()
    sample_diff = (sgld(compiled, x0, scfg) - sgld(model, x0, scfg)).abs().max().item()
    times = interleaved({"compiled": lambda: sgld(compiled, x0, scfg), "eager": lambda: sgld(model, x0, scfg),
                         "bare": lambda: bare_loop(model, x0, steps)}, repeats, warmup=1, sync=_sync(device))
    r_bare = paired_ratio(times["compiled"], times["bare"])
    r_eager = paired_ratio(times["compiled"], times["eager"])
    data = {"compile_s": compile_s, "max_abs_logit_diff": logit_diff, "max_abs_sample_diff": sample_diff, **times}
    return [
        Row("compile", spec.label, "compiled SGLD step / eager bare loop step", r_bare, "x", "", None,
            f"{fmt_ms(median(times['compiled']) / steps)} vs {fmt_ms(median(times['bare']) / steps)} per step; "
            f"compile {compile_s:.0f} s", data),
        Row("compile", spec.label, "compiled SGLD step / eager SGLD step", r_eager, "x", "", None,
            f"max |logits - eager| = {logit_diff:.1e}, max |x_K - eager| = {sample_diff:.1e} (K={steps})", {}),
    ]


def run(specs: list[ModelSpec], quick: bool, device: str, compile: bool) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="jembench-bench-sgld-") as tmp:
        for spec in specs:
            tiny = spec.key == "tiny"
            steps = 20 if tiny else 3
            repeats = (5 if quick else 25) if tiny else (2 if quick else 5)  # a tiny step is ~7 ms: noisy
            for method in SAMPLERS:
                log(f"sgld: {spec.key} {method}")
                rows += measure_sampler(spec, method, steps, repeats, device, channels_last=method == "jem")
                if tiny:  # at WRN scale the buffer's share is smaller still, and K full steps cost minutes
                    rows.append(measure_draw(spec, method, 11 if quick else repeats, device, Path(tmp)))
            if compile:
                log(f"compile: {spec.key}")
                rows += measure_compile(spec, steps, repeats, device)
    return rows
