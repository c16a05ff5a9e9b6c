"""Accuracy suite: top-1 accuracy and mean cross-entropy of p(y|x) on the test split.

Protocol (:class:`AccuracyProtocol`, ``suites/accuracy.toml``): ``n`` (0 = the whole test split), ``input_noise``
(σ of Gaussian noise added to test inputs, drawn batch by batch from a ``seed``-seeded generator as the calibration
suite does; JEM's official evaluation can add it — recorded either way). The test split is streamed (one batch in
memory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tabulate import tabulate

from ..records import make_record
from . import EvalContext, SplitSampling

NAME = "accuracy"


@dataclass(frozen=True)
class AccuracyProtocol(SplitSampling):
    """The accuracy protocol (``n``, ``input_noise``); defaults = the paper setting (the whole, clean test split)."""


PROTOCOL = AccuracyProtocol


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: AccuracyProtocol = protocol.settings
    limit, sigma = cfg.n or None, cfg.input_noise
    correct, losses = [], []  # one number per image: memory stays flat next to the streamed images
    for logits, y in ctx.test_logits(ckpt.model, limit, sigma):
        logits = logits.float().cpu()
        correct.append(logits.argmax(1) == y)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
    correct, losses = torch.cat(correct).double(), torch.cat(losses)
    metrics = {"accuracy": correct.mean().item() * 100, "nll": losses.mean().item(), "n": float(len(correct))}
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       seed=ctx.seed, wall_time_s=time.perf_counter() - start)


def format_table(record: dict) -> str:
    m = record["metrics"]
    return tabulate([[record["model"]["name"], record["dataset"], f"{m['accuracy']:.2f}", f"{m['nll']:.4f}",
                      int(m["n"])]], headers=["Model", "Dataset", "Acc % ↑", "NLL ↓", "n"], tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    return {"Acc % ↑": record["metrics"]["accuracy"]}
