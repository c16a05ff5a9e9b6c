"""Accuracy suite: top-1 accuracy and mean cross-entropy of p(y|x) on the test split.

What the official ``test_clf`` prints (JEM eval_wrn_ebm.py:325-369 ``print(loss, correct)``; JEM++
eval_jempp.py:453-505 and SADA-JEM eval_sadajem.py:402-456 ``loss %.5g, accuracy: %g%%``): the mean per-example
cross-entropy (``nll``) and the share of correct argmax predictions (``accuracy``, in %), over the test split in
index order, batch 100.

Protocol (:class:`AccuracyProtocol`; ``suites/accuracy.toml`` = clean test split in eval mode,
``suites/accuracy-<paper>-official.toml`` = each paper's ``test_clf``): ``n`` (0 = the whole test split),
``input_noise`` (σ of Gaussian noise added to every test input after normalisation, drawn batch by batch from a
``seed``-seeded generator: the official JEM / JEM++ ``test_clf`` adds σ = .03 in its transform), ``bn_mode``
(``train`` = JEM's evaluation, which never calls ``f.eval()``) and ``batch_size`` (0 = ``--batch-size``). The
test split is streamed (one batch in memory). Not reproduced: ``test_clf --n_steps K > 0`` (SGLD on the test
inputs before classifying; default 0 in all three official scripts).
"""

from __future__ import annotations

import time
import torch
import torch.nn.functional as F
from tabulate import tabulate

from ..evidence import StreamDigest
from ..metric_keys import SPECS
from ..records import dataset_label, make_record
from ..sampling_error import standard_error
from . import EvalContext, forward_mode
from .accuracy_protocol import AccuracyProtocol
from .split_evidence import per_input_predictions, split_evidence

NAME = "accuracy"
OVERRIDES = {"bn_mode": "bn_mode"}
PROTOCOL = AccuracyProtocol  # defined torch-free in :mod:`.accuracy_protocol`


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: AccuracyProtocol = protocol.settings
    limit, sigma = cfg.n or None, cfg.input_noise
    correct: list[torch.Tensor] = []  # one number per image: memory stays flat next to the streamed images
    losses: list[torch.Tensor] = []
    parts, digest = [], StreamDigest()
    with forward_mode(ckpt.model, cfg.bn_mode) as mode:
        for logits, y in ctx.test_logits(ckpt.model, limit, sigma, cfg.batch_size or None, desc=NAME,
                                         digest=digest):
            parts.append(per_input_predictions(logits, y))
            logits = logits.float().cpu()
            correct.append(logits.argmax(1) == y)
            losses.append(F.cross_entropy(logits, y, reduction="none"))
    hits, nll = torch.cat(correct).double(), torch.cat(losses)
    metrics = {"accuracy": hits.mean().item() * 100, "nll": nll.double().mean().item(), "n": float(len(hits))}
    details = {**mode, "input_noise": sigma, "batch_size": cfg.batch_size or ctx.batch_size}
    record = make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol,
                         metrics=metrics, details=details, seed=ctx.seed, wall_time_s=time.perf_counter() - start)
    ctx.evidence = split_evidence(parts, ctx.split_stream(digest, limit, sigma))
    return record


def format_table(record: dict) -> str:
    """Accuracy ± its Wilson standard error at z = 1 (derived from n, :mod:`jembench.sampling_error`), NLL, n."""
    m, spec = record["metrics"], SPECS
    se = standard_error(record, "accuracy", m["accuracy"])
    acc = spec["accuracy"].format(m["accuracy"]) + ("" if se is None else f" ± {spec['accuracy'].format(se)}")
    return tabulate([[record["model"]["name"], dataset_label(record), acc, spec["nll"].format(m["nll"]), int(m["n"])]],
                    headers=["Model", "Dataset", f"{spec['accuracy'].column} ± s.e.", spec["nll"].column, "n"],
                    tablefmt="github")


def headline(record: dict) -> dict[str, float]:
    return {SPECS["accuracy"].column: record["metrics"]["accuracy"]}
