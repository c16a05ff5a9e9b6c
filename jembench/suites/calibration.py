"""Calibration suite: is p(y|x) as confident as it is accurate? (JEM §5.2, Fig. 4; App. D, Fig. 9).

JEM reports the expected calibration error (ECE, Guo et al. 2017) of the classifier p(y|x) = softmax f(x) on the
test split and draws reliability diagrams. We compute, in one streaming pass over the test set:
ECE and MCE with ``n_bins`` equal-width confidence bins (confidence 1.0 in the last bin; JEM++ uses 20), the
negative log-likelihood and the multi-class Brier score (:mod:`jembench.metrics.calibration`), and accuracy.
The record holds the per-bin table (count, accuracy, mean confidence) the reliability diagram is drawn from.

Protocol (:class:`CalibrationProtocol`, ``suites/calibration.toml``): ``n`` (test images, 0 = all), ``n_bins``,
``input_noise`` (σ of Gaussian noise added to test inputs, as the official JEM evaluation can; recorded in the
protocol either way).
Figure: ``<record>_reliability.png`` — accuracy bars per bin, the gap to the diagonal, ECE in the title.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tabulate import tabulate

from ..figures import reliability_diagram
from ..metrics.calibration import CalibrationAccumulator
from ..records import make_record
from ..schema import setting
from . import EvalContext, SplitSampling

NAME = "calibration"


@dataclass(frozen=True)
class CalibrationProtocol(SplitSampling):
    """The calibration protocol (``n``, ``input_noise`` and ``n_bins``); defaults = the paper setting (JEM §5.2,
    ECE binning as JEM++)."""

    n_bins: int = setting(20, ge=1, help="equal-width confidence bins (JEM++: 20)")


PROTOCOL = CalibrationProtocol


def run(ckpt, protocol, ctx: EvalContext) -> dict:
    start = time.perf_counter()
    cfg: CalibrationProtocol = protocol.settings
    limit, n_bins, sigma = cfg.n or None, cfg.n_bins, cfg.input_noise
    acc = CalibrationAccumulator(n_bins)
    for logits, y in ctx.test_logits(ckpt.model, limit, sigma):  # streamed: one batch alive at a time
        acc.add_logits(logits, y)
    summary, bins = acc.summary(), acc.bins()
    metrics = {"ece": summary["ece"] * 100, "mce": summary["mce"] * 100, "nll": summary["nll"],
               "brier": summary["brier"], "accuracy": summary["accuracy"] * 100, "n": summary["n"]}
    fig_path = ctx.figure_path("reliability")
    reliability_diagram(bins.table(), fig_path, ece=metrics["ece"], model=ckpt.name, dataset=ctx.dataset)
    details = {"n_bins": n_bins, "input_noise": sigma, "bins": bins.table(),
               "binning": "equal-width confidence bins [b/B, (b+1)/B), the last closed (confidence 1.0 in it)",
               "brier": "multi-class sum form: mean_i sum_c (p_ic - 1[y_i = c])^2"}
    return make_record(suite=NAME, model=ckpt.describe(), dataset=ctx.dataset, protocol=protocol, metrics=metrics,
                       details=details, figures=[fig_path.name], seed=ctx.seed,
                       wall_time_s=time.perf_counter() - start)


def _fmt(value: float, spec: str) -> str:
    return "nan" if value is None or math.isnan(value) else format(value, spec)


def format_table(record: dict) -> str:
    m = record["metrics"]
    head = tabulate([[record["model"]["name"], record["dataset"], _fmt(m["accuracy"], ".2f"), _fmt(m["ece"], ".2f"),
                      _fmt(m["mce"], ".2f"), _fmt(m["nll"], ".4f"), _fmt(m["brier"], ".4f"), int(m["n"])]],
                    headers=["Model", "Dataset", "Acc % ↑", "ECE % ↓", "MCE % ↓", "NLL ↓", "Brier ↓", "n"],
                    tablefmt="github")
    rows = [[f"[{b['lower']:.2f}, {b['upper']:.2f}{']' if b['upper'] == 1.0 else ')'}", b["count"],
             _fmt(b["accuracy"] * 100, ".1f"), _fmt(b["confidence"] * 100, ".1f")]
            for b in record.get("details", {}).get("bins", []) if b["count"]]
    bins = tabulate(rows, headers=["confidence bin", "count", "acc %", "mean conf %"], tablefmt="github")
    return f"{head}\n\nReliability bins (non-empty):\n{bins}"


def headline(record: dict) -> dict[str, float]:
    return {"ECE % ↓": record["metrics"]["ece"]}
