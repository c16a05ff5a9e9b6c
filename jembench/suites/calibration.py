"""Calibration suite: is p(y|x) as confident as it is accurate? (JEM §5.2, Fig. 4; App. D, Fig. 9).

JEM reports the expected calibration error (ECE, Guo et al. 2017) of the classifier p(y|x) = softmax f(x) on the
test split and draws reliability diagrams. We compute, in one streaming pass over the test set:
ECE and MCE with ``n_bins`` equal-width confidence bins (JEM++ / SADA-JEM: 20), the negative log-likelihood and
the multi-class Brier score (:mod:`jembench.metrics.calibration`), and accuracy. The record holds the per-bin
table (edges, count, accuracy, mean confidence) the reliability diagram is drawn from.

Official code: JEM's repository has **no** ECE code (its ``test_clf`` only saves max-softmax and correctness to
vals.pt, eval_wrn_ebm.py:352-369), so there is no JEM calibration protocol to reproduce. JEM++ and SADA-JEM's
``--eval cali`` (eval_jempp.py:508-547, eval_sadajem.py:459-498) run the CIFAR-10 test split in index order,
batch 100, ``f.eval()``, and compute ``ECELoss(20)`` and ``reliability_diagrams(bin_size=0.05)``
(Task/calibration.py), both with bins (lo, hi] — ``suites/calibration-{jempp,sadajem}-official.toml`` set
``bin_closed = "right"``; JEM++ adds σ = .03 noise in the transform (eval_jempp.py:511-515), SADA-JEM σ = 0.

Protocol (:class:`CalibrationProtocol`, ``suites/calibration.toml``): ``n`` (test images, 0 = all), ``n_bins``,
``bin_closed`` (``left`` = [lo, hi) with confidence 1.0 in the last bin; ``right`` = (lo, hi], the official
code's), ``input_noise`` (σ added to every test input after normalisation), ``bn_mode``, ``batch_size``.
Figure: ``<record>_reliability.png`` — accuracy bars per bin, the gap to the diagonal, ECE in the title.
"""

from __future__ import annotations

import math
import time

from tabulate import tabulate

from ..figures import reliability_diagram
from ..evidence import StreamDigest
from ..metric_keys import SPECS
from ..metrics.calibration import CalibrationAccumulator, bin_indices
from ..records import dataset_label, make_record
from . import EvalContext, forward_mode
from .calibration_protocol import CalibrationProtocol
from .split_evidence import per_input_predictions, split_evidence

NAME = "calibration"
OVERRIDES = {"bn_mode": "bn_mode"}
BINNING = {"left": "equal-width confidence bins [b/B, (b+1)/B), the last closed (confidence 1.0 in it)",
           "right": "equal-width confidence bins (b/B, (b+1)/B] as the official JEM++ / SADA-JEM ECELoss "
                    "(Task/calibration.py: conf > lo & conf <= hi)"}
PROTOCOL = CalibrationProtocol  # defined torch-free in :mod:`.calibration_protocol`


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: CalibrationProtocol = protocol.settings
    limit, n_bins, sigma = cfg.n or None, cfg.n_bins, cfg.input_noise
    acc = CalibrationAccumulator(n_bins, cfg.bin_closed)
    parts, digest = [], StreamDigest()
    with forward_mode(ckpt.model, cfg.bn_mode) as mode:
        for logits, y in ctx.test_logits(ckpt.model, limit, sigma, cfg.batch_size or None, desc=NAME,
                                         digest=digest):
            acc.add_logits(logits, y)  # streamed: one batch alive at a time
            part = per_input_predictions(logits, y)
            part["ece_bin"] = bin_indices(part["confidence"], n_bins, cfg.bin_closed)
            parts.append(part)
    summary, bins = acc.summary(), acc.bins()
    metrics = {"ece": summary["ece"] * 100, "mce": summary["mce"] * 100, "nll": summary["nll"],
               "brier": summary["brier"], "accuracy": summary["accuracy"] * 100, "n": summary["n"]}
    fig_path = ctx.figure_path("reliability")
    reliability_diagram(bins.table(), fig_path, ece=metrics["ece"], model=ckpt.name, dataset=ctx.dataset,
                        dataset_display=ctx.label)
    details = {**mode, "n_bins": n_bins, "bin_closed": cfg.bin_closed, "input_noise": sigma,
               "batch_size": cfg.batch_size or ctx.batch_size, "bins": bins.table(),
               "binning": BINNING[cfg.bin_closed],
               "brier": "multi-class sum form: mean_i sum_c (p_ic - 1[y_i = c])^2"}
    record = make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol,
                         metrics=metrics, details=details, figures=[fig_path.name], seed=ctx.seed,
                         wall_time_s=time.perf_counter() - start)
    ctx.evidence = split_evidence(parts, ctx.split_stream(digest, limit, sigma))
    return record


def _fmt(value: float, spec: str) -> str:
    return "nan" if value is None or math.isnan(value) else format(value, spec)


def _bin_text(lower: float, upper: float, closed: str) -> str:
    if closed == "right":
        return f"({lower:.2f}, {upper:.2f}]"
    return f"[{lower:.2f}, {upper:.2f}{']' if upper == 1.0 else ')'}"


def format_table(record: dict) -> str:
    m = record["metrics"]
    details = record.get("details", {})
    closed = details.get("bin_closed", "left")
    columns = ("accuracy", "ece", "mce", "nll", "brier")
    head = tabulate([[record["model"]["name"], dataset_label(record),
                      *(SPECS[c].format(m[c]) for c in columns), int(m["n"])]],
                    headers=["Model", "Dataset", *(SPECS[c].column for c in columns), "n"], tablefmt="github")
    rows = [[_bin_text(b["lower"], b["upper"], closed), b["count"], _fmt(b["accuracy"] * 100, ".1f"),
             _fmt(b["confidence"] * 100, ".1f")] for b in details.get("bins", []) if b["count"]]
    bins = tabulate(rows, headers=["confidence bin", "count", "acc %", "mean conf %"], tablefmt="github")
    return f"{head}\n\nReliability bins (non-empty):\n{bins}"


def headline(record: dict) -> dict[str, float]:
    return {SPECS["ece"].column: record["metrics"]["ece"]}
