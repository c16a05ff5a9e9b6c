"""``python -m benchmarks.paper_cost``: what ``--preset paper`` costs on one GPU, per method and per suite — an
estimate from what can be measured on a CPU, until someone measures it on a GPU (``make gpu-smoke`` prints the
real time and peak memory of one paper-scale JEM iteration).

Measured here, on the WRN-28-10 of every paper preset at 3×32×32:

* FLOPs per image of each kind of pass, counted by torch's own per-op formulas (``torch.utils.flop_counter``)
  on fake tensors (shapes only, nothing computed): a forward; an SGLD step (forward + input gradient); a training
  pass (forward + backward); an attack gradient through K differentiable SGLD steps (double backward);
  Inception-v3 at 299×299 (torchvision's network: the FID extractor's architecture);
* memory per image of those passes: the peak resident memory of a child process at two batch sizes, the slope
  (activations and gradients; weights and the allocator's baseline cancel). The attack's K-step graph is measured
  at K = 1 and 2 and extrapolated linearly in K (each step adds one step's graph).

Assumed (and printed): the GPU's sustained fp32 throughput (default 10 TFLOP/s: about half an A100's 19.5 TFLOP/s
fp32 peak — TF32 is off by default, :mod:`jembench.precision`), CIFAR-10 sizes (50,000 training, 10,000 test
images), and, where a protocol's work depends on the model (inputs leave an attack once broken), the upper bound
that no input ever leaves. Counting passes follows the code: training (reference_models/objectives.py, sam.py),
the suites' protocols (suites/*.toml).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
GIB = 2**30
MIB = 2**20
N_TRAIN, N_TEST = 50_000, 10_000
METHODS = ("jem", "jempp", "sada_jem", "softmax", "softmax_sam")
POINTWISE_QUERIES = 30_000  # per input with the L2 polish on 3x32x32 ("tens of thousands", attacks/budget.py)


# ------------------------------------------------------------------------------------------------ FLOPs
def _wrn():
    from jembench.reference_models.wideresnet import wide_resnet

    return wide_resnet(depth=28, widen_factor=10, n_classes=10, in_channels=3, norm=None)


def count_flops() -> dict[str, float]:
    """FLOPs per image: ``fwd``, ``sgld`` (one step), ``train``, ``attack_k`` (K = 0, 1, 10), ``inception``."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    from jembench.sampling import SGLDConfig, sgld

    class Flops(TorchDispatchMode):
        """torch's per-op FLOP formulas, without FlopCounterMode's module hooks (which break autograd.grad)."""

        def __init__(self):
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **(kwargs or {}), out_val=out)
            return out

    def flops(fn) -> float:
        with Flops() as counter:
            fn()
        return float(counter.total)

    out: dict[str, float] = {}
    with FakeTensorMode():
        model = _wrn().eval()
        x = torch.rand(1, 3, 32, 32)

        def input_grad(k: int) -> None:
            xx = x.clone().requires_grad_(True)
            logits = model(sgld(model, xx, SGLDConfig(n_steps=k), differentiable=True)) if k else model(xx)
            torch.autograd.grad(logits.logsumexp(1).sum(), xx)

        out["fwd"] = flops(lambda: model(x))
        out["sgld"] = flops(lambda: input_grad(0))
        model.train()
        out["train"] = flops(lambda: model(x).sum().backward())
        model.eval()
        for k in (0, 1, 10):
            out[f"attack_{k}"] = flops(lambda: input_grad(k))
        from torchvision.models import inception_v3

        inception = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        out["inception"] = flops(lambda: inception(torch.rand(1, 3, 299, 299)))
    return out


# ----------------------------------------------------------------------------------------------- memory
def _child(mode: str, batch: int, k: int) -> float:
    """Peak RSS (bytes) of a child running one pass of ``mode`` at ``batch`` images."""
    code = f"""
import torch
torch.set_num_threads(1)
from benchmarks.paper_cost import _wrn
from benchmarks.child import peak_rss_mib
from jembench.sampling import SGLDConfig, sgld
model = _wrn().eval()
x = torch.rand({batch}, 3, 32, 32)
mode, k = {mode!r}, {k}
if mode == "train":
    model.train(); model(x).sum().backward()
elif mode == "forward":
    with torch.no_grad(): model(x)
else:
    xx = x.clone().requires_grad_(True)
    logits = model(sgld(model, xx, SGLDConfig(n_steps=k), differentiable=True)) if k else model(xx)
    torch.autograd.grad(logits.logsumexp(1).sum(), xx)
print(peak_rss_mib())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                               "JEMBENCH_NO_ALLOCATOR_TUNING": "1"})
    return float(done.stdout.strip().splitlines()[-1]) * MIB


def measure_memory(batches: tuple[int, int] = (1, 3)) -> dict[str, float]:
    """Bytes per image: the slope of peak RSS between two batch sizes, per kind of pass."""
    out = {}
    for name, mode, k in (("forward", "forward", 0), ("train", "train", 0), ("sgld", "grad", 0),
                          ("attack_1", "grad", 1), ("attack_2", "grad", 2)):
        low, high = (_child(mode, b, k) for b in batches)
        out[name] = max(0.0, (high - low) / (batches[1] - batches[0]))
    out["attack_10"] = out["attack_1"] + 9 * max(0.0, out["attack_2"] - out["attack_1"])  # linear in K
    return out


# ------------------------------------------------------------------------------------------- the model
def training_cost(method: str, flops: dict, mem: dict) -> dict:
    """One ``--preset paper`` run on CIFAR-10 (reference_models/objectives.py: SGLD on the chains, then one forward
    and backward over the labelled batch, the separate p(x) batch and the chains; SAM doubles the latter)."""
    from jembench.reference_models.config import resolve_config

    cfg = resolve_config(method, "paper", {"dataset": "cifar10"})
    iters = cfg.epochs * ((N_TRAIN - cfg.holdout) // cfg.batch_size)
    chains = (cfg.px_batch_size or cfg.batch_size) if cfg.px_weight > 0 else 0
    separate = chains if (cfg.px_weight > 0 and (cfg.px_separate or cfg.px_unaugmented)) else 0
    passes = (2 if cfg.sam_rho > 0 else 1) * (cfg.batch_size + separate + chains)
    per_iter = cfg.sgld.n_steps * chains * flops["sgld"] + passes * flops["train"]
    select = {"validation": cfg.holdout, "test": N_TEST}.get(cfg.select_best, 0)
    total = iters * per_iter + cfg.epochs * select * flops["fwd"]
    params = sum(p.numel() for p in _wrn().parameters())
    fixed = params * 4 * 4 + cfg.buffer_size * 3 * 32 * 32 * 4  # weights, grads, Adam's two moments; the buffer
    peak = fixed + max(chains * mem["sgld"], (cfg.batch_size + separate + chains) * mem["train"])
    return {"what": f"train {method}", "detail": f"{iters:,} iterations, batch {cfg.batch_size}, K = "
            f"{cfg.sgld.n_steps if chains else 0}{', SAM' if cfg.sam_rho > 0 else ''}", "flops": total,
            "peak": peak}


def suite_costs(flops: dict, mem: dict, micro: int) -> list[dict]:
    from jembench.protocols import load_protocol

    fixed = sum(p.numel() for p in _wrn().parameters()) * 4
    out = [{"what": "accuracy / calibration", "detail": "one forward pass over the 10,000 test images (shared)",
            "flops": N_TEST * flops["fwd"], "peak": fixed + 256 * mem["forward"]}]
    ood = load_protocol("ood").settings
    images = N_TEST * (1 + len(ood.sets))  # the in-distribution split and each OOD set at test-split size
    out.append({"what": "ood", "detail": f"{len(ood.sets)} OOD sets; scores from one forward and one input gradient",
                "flops": images * flops["sgld"], "peak": fixed + 256 * mem["sgld"]})
    gen = load_protocol("generation").settings
    chains = gen.n_samples * gen.sgld.n_steps * flops["sgld"]
    inception = (N_TRAIN + N_TEST + gen.n_samples + gen.n_samples) * flops["inception"]
    out.append({"what": "generation", "detail": f"{gen.n_samples:,} fresh chains x {gen.sgld.n_steps} steps; Inception "
                f"on the 50,000 reference images (cached after the first run) and the samples",
                "flops": chains + inception, "peak": fixed + 256 * mem["sgld"]})
    rob = load_protocol("robustness").settings
    n, batch = rob.n, rob.batch_size
    pgd_total = boundary = pointwise = 0.0
    for k in rob.refine.steps:
        stochastic = rob.refine.stochastic_at(k)
        eot_a = rob.refine.eot_attack if stochastic else 1
        eot_d = rob.refine.eot_defense if stochastic else 1
        attack = flops[f"attack_{k}"] if f"attack_{k}" in flops else flops["attack_10"] * k / 10
        query = k * flops["sgld"] + flops["fwd"]  # a forward through the refinement, no gradient
        for norm in rob.pgd.norms:
            calls = sum(e > 0 for e in rob.pgd.eps_grid(norm)) + rob.pgd.search_steps
            pgd_total += calls * rob.pgd.restarts * n * (rob.pgd.steps * eot_a * attack + eot_d * query)
        boundary += n * 2 * rob.boundary.steps * eot_a * query
        pointwise += n * POINTWISE_QUERIES * eot_a * query
    def peak(chunk: int) -> float:  # the attack gradient's K = 10 graph, or the verification's detached chains
        attack_images, verify_images = batch * rob.refine.eot_attack, batch * rob.refine.eot_defense
        if chunk:
            attack_images, verify_images = min(chunk, attack_images), min(chunk, verify_images)
        return fixed + max(attack_images * mem["attack_10"], verify_images * mem["sgld"])

    out.append({"what": "robustness: PGD", "detail": f"K in {list(rob.refine.steps)}, L-inf and L2, grid + "
                f"{rob.pgd.search_steps} bisections, {rob.pgd.restarts} restarts x {rob.pgd.steps} steps, EOT "
                f"{rob.refine.eot_attack} / {rob.refine.eot_defense} (upper bound: no input leaves early); "
                f"peak with --micro-batch {micro} (without: {peak(0) / GIB:,.0f} GiB)", "flops": pgd_total,
                "peak": peak(micro)})
    out.append({"what": "robustness: boundary", "detail": f"{rob.boundary.steps:,} steps x 2 queries x EOT "
                f"{rob.refine.eot_attack}", "flops": boundary, "peak": fixed + batch * rob.refine.eot_attack
                * mem["sgld"]})
    out.append({"what": "robustness: pointwise", "detail": f"~{POINTWISE_QUERIES:,} queries x EOT "
                f"{rob.refine.eot_attack} (assumed)", "flops": pointwise,
                "peak": fixed + batch * rob.refine.eot_attack * mem["sgld"]})
    return out


def fitting_micro_batch(mem: dict, gpu_gib: float) -> int:
    """Images per chunk through the K = 10 refinement's gradient that fit ``gpu_gib`` (80 % of it, the rest for
    the weights, cuDNN workspaces and the allocator's slack)."""
    fixed = sum(p.numel() for p in _wrn().parameters()) * 4
    return max(1, int((0.8 * gpu_gib * GIB - fixed) // mem["attack_10"]))


def _hours(flops: float, tflops: float) -> str:
    h = flops / (tflops * 1e12) / 3600
    return f"{h / 24:,.0f} days" if h >= 48 else f"{h:,.1f} h" if h >= 0.1 else f"{h * 60:.1f} min"


def table(rows: list[dict], tflops: float) -> str:
    lines = ["| run (`--preset paper`, CIFAR-10) | what is counted | GPU time (estimate) "
             "| peak GPU memory (estimate) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['detail']} | {_hours(r['flops'], tflops)} | {r['peak'] / GIB:.1f} GiB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.paper_cost", description=__doc__.split("\n")[0])
    p.add_argument("--tflops", type=float, default=10.0, help="assumed sustained fp32 TFLOP/s of the GPU")
    p.add_argument("--gpu-gib", type=float, default=40.0, help="GPU memory (GiB) the micro-batch must fit")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "paper_cost.json"))
    args = p.parse_args(argv)
    flops = count_flops()
    mem = measure_memory()
    micro = fitting_micro_batch(mem, args.gpu_gib)
    rows = [training_cost(m, flops, mem) for m in METHODS] + suite_costs(flops, mem, micro)
    print("GFLOPs per image (WRN-28-10, 3x32x32; Inception-v3 at 299x299):",
          ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items()))
    print("MiB per image (CPU, peak-RSS slope):", ", ".join(f"{k} {v / MIB:.1f}" for k, v in mem.items()))
    print(f"--micro-batch that fits {args.gpu_gib:.0f} GiB with the K = 10 attack gradient: {micro}")
    print(f"assumed: {args.tflops:g} TFLOP/s sustained fp32\n")
    print(table(rows, args.tflops))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"flops_per_image": flops, "bytes_per_image": mem, "tflops": args.tflops,
                                          "gpu_gib": args.gpu_gib, "micro_batch": micro, "rows": rows},
                                         indent=1) + "\n")
    return 0 if all(math.isfinite(r["flops"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
