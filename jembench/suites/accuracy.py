"""Accuracy suite: top-1 accuracy and mean cross-entropy of p(y|x) on the test split.

Protocol fields (``suites/accuracy.toml``): ``n`` (0 = the whole test split), ``input_noise`` (σ of Gaussian
noise added to test inputs; JEM's official evaluation can add it — recorded either way).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tabulate import tabulate

from ..records import make_record
from . import EvalContext, batched_logits

NAME = "accuracy"


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    limit = int(protocol.get("n", 0)) or None
    x, y = ctx.test_set(limit)
    sigma = float(protocol.get("input_noise", 0.0))
    if sigma > 0:
        x = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(ctx.seed))
    logits = batched_logits(ckpt.model, x, ctx.device, ctx.batch_size)
    correct = (logits.argmax(1) == y).double()
    metrics = {"accuracy": correct.mean().item() * 100, "nll": F.cross_entropy(logits, y).item(), "n": float(len(y))}
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       seed=ctx.seed, wall_time_s=time.perf_counter() - start)


def format_table(record: dict) -> str:
    m = record["metrics"]
    return tabulate([[record["model"]["name"], record["dataset"], f"{m['accuracy']:.2f}", f"{m['nll']:.4f}",
                      int(m["n"])]], headers=["Model", "Dataset", "Acc % ↑", "NLL ↓", "n"], tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    return {"Acc % ↑": record["metrics"]["accuracy"]}
