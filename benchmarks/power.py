"""Power of ``jembench check --baseline``: how small an accuracy drop each rule detects, and how often it cries wolf.

``python -m benchmarks.power --checkpoint CKPT --dataset DATASET [--sigma 0.03] [--reevals 20] [--levels ...]``

A fixed model is evaluated once (the baseline, ``--seed 0``) under an accuracy protocol with input noise σ > 0
(the official JEM / JEM++ protocols use σ = .03), so that every re-evaluation with another ``--seed`` draws new
noise on the same test images. Then

* **false alarms**: the unchanged model re-evaluated with seeds 1 … R: each record is checked against the
  baseline by the paired rule (McNemar exact, Holm, margin) and by the unpaired rule (binomial z = 3 with its
  floor) — both exactly as ``jembench check --baseline`` applies them (:func:`jembench.check.compare_baseline`,
  the shipped default tolerances); any REGRESSION is a false alarm;
* **detection**: the model with Gaussian noise of ``level`` × (each weight tensor's own standard deviation) added
  to every weight matrix / kernel (a fixed noise seed per level), evaluated with a seed of its own, checked
  by both rules. The table gives each level's accuracy drop and both decisions; the smallest regression each
  rule detects is the smallest drop from which on every larger one is flagged.

Writes ``benchmarks/results/power-<dataset slug>.json`` (``--out``) and prints the table. The statistics run
in :mod:`jembench.stats`; what is measured here is how they behave on a real model and a real test split.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3)


@dataclass
class Decision:
    label: str
    accuracy: float
    drop: float  # baseline accuracy - this accuracy, in points
    paired: str  # status under the paired rule
    unpaired: str
    p_paired: float  # Holm-adjusted one-sided p of the paired rule (one metric: the raw p)
    allowed_unpaired: float


def degrade(model: torch.nn.Module, level: float, seed: int) -> None:
    """Add N(0, (level · std(W))²) to every weight matrix / kernel W of ``model`` in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point() and value.dim() > 1:
                value.add_(level * value.std() * torch.randn(value.shape, generator=gen).to(value.device))


def _decide(record_path: Path, baseline: Path, rules) -> tuple[str, str, float, float]:
    from jembench.check import compare_baseline
    from jembench.records import load_records

    refs, base = load_records([record_path]), load_records([baseline])
    paired, _ = compare_baseline(refs, base, rules, paired=True)
    unpaired, _ = compare_baseline(refs, base, rules, paired=False)
    p, u = paired[0], unpaired[0]
    if p.paired is None:
        raise RuntimeError(f"{record_path}: the paired rule could not decide (no shared inputs with the baseline)")
    return p.status, u.status, p.p_holm, u.allowed


def run(args) -> dict:
    from jembench import evaluate
    from jembench.check import load_rules
    from jembench.models import load_checkpoint
    from jembench.protocols import load_protocol

    torch.set_num_threads(args.threads)
    rules = [r for r in load_rules(args.tolerances) if r.pattern == "accuracy"]
    protocol = load_protocol("accuracy").replace({"input_noise": args.sigma, "n": args.n}, name="accuracy-power")
    ckpt = load_checkpoint(args.checkpoint, dataset=args.dataset)
    dataset = args.dataset or ckpt.dataset
    work = Path(tempfile.mkdtemp(prefix="jembench-power-"))
    common = {"dataset": dataset, "protocol": protocol, "batch_size": args.batch_size,
              "data_root": args.data_root, "workers": args.workers}

    def evaluate_as(model_ckpt, seed: int, name: str) -> tuple[Path, float]:
        out = work / f"{name}.json"
        record = evaluate(model_ckpt, "accuracy", seed=seed, out=out, **common)
        return out, float(record["metrics"]["accuracy"])

    started = time.perf_counter()
    baseline, base_acc = evaluate_as(ckpt, 0, "baseline")
    print(f"baseline: accuracy {base_acc:.2f} % on n = {args.n or 'all'} (σ = {args.sigma:g}, seed 0)", file=sys.stderr)
    rows: list[Decision] = []
    for seed in range(1, args.reevals + 1):
        path, acc = evaluate_as(ckpt, seed, f"unchanged-seed{seed}")
        rows.append(Decision(f"unchanged, seed {seed}", acc, base_acc - acc, *_decide(path, baseline, rules)))
        print(f"  {rows[-1]}", file=sys.stderr)
    for i, level in enumerate(args.levels):
        broken = copy.deepcopy(ckpt)
        degrade(broken.model, level, seed=1000 + i)
        path, acc = evaluate_as(broken, 100 + i, f"degraded-{level:g}")
        rows.append(Decision(f"weight noise {level:g}", acc, base_acc - acc, *_decide(path, baseline, rules)))
        print(f"  {rows[-1]}", file=sys.stderr)
    wall = time.perf_counter() - started
    unchanged = [r for r in rows if r.label.startswith("unchanged")]
    degraded = [r for r in rows if r.label.startswith("weight noise")]
    summary = {"false_alarms_paired": sum(r.paired == "REGRESSION" for r in unchanged),
               "false_alarms_unpaired": sum(r.unpaired == "REGRESSION" for r in unchanged),
               "reevaluations": len(unchanged),
               "smallest_detected_paired": smallest_detected(degraded, "paired"),
               "smallest_detected_unpaired": smallest_detected(degraded, "unpaired"),
               "max_unchanged_drop": max((r.drop for r in unchanged), default=None)}
    return {"schema": "jembench-power/1", "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv), "checkpoint": str(args.checkpoint), "dataset": dataset,
            "protocol": {"name": protocol.name, "hash": protocol.hash, "input_noise": args.sigma, "n": args.n},
            "baseline_accuracy": base_acc, "rules": [vars(r) for r in rules], "rows": [vars(r) for r in rows],
            "summary": summary, "wall_time_s": round(wall, 1), "threads": args.threads}


def smallest_detected(rows: list[Decision], rule: str) -> float | None:
    """The smallest accuracy drop (points) from which on every larger drop is flagged by ``rule``."""
    ordered = sorted(rows, key=lambda r: r.drop)
    smallest = None
    for r in reversed(ordered):
        if getattr(r, rule) != "REGRESSION":
            break
        smallest = r.drop
    return smallest


def table(result: dict) -> str:
    from tabulate import tabulate

    rows = [[r["label"], f"{r['accuracy']:.2f}", f"{r['drop']:+.2f}", r["paired"], f"{r['p_paired']:.2g}",
             r["unpaired"], f"±{r['allowed_unpaired']:.2f}"] for r in result["rows"]]
    s = result["summary"]
    head = (f"baseline accuracy {result['baseline_accuracy']:.2f} % ({result['dataset']}, σ = "
            f"{result['protocol']['input_noise']:g}); false alarms over {s['reevaluations']} unchanged re-evaluations: "
            f"paired {s['false_alarms_paired']}, unpaired {s['false_alarms_unpaired']}; smallest drop detected: "
            f"paired {_points(s['smallest_detected_paired'])}, unpaired {_points(s['smallest_detected_unpaired'])}")
    return head + "\n" + tabulate(rows, headers=["model", "accuracy %", "drop (points)", "paired rule", "p (Holm)",
                                                 "unpaired rule", "unpaired allowed"], tablefmt="github",
                                  disable_numparse=True)


def _points(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f} points"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.power", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="the fixed model (a jembench or official checkpoint)")
    p.add_argument("--dataset", default=None, help="evaluation dataset (default: the checkpoint's)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--sigma", type=float, default=0.03, help="input noise σ of the accuracy protocol (> 0)")
    p.add_argument("--n", type=int, default=0, help="test images (0 = the whole test split)")
    p.add_argument("--reevals", type=int, default=20, help="re-evaluations of the unchanged model (seeds 1..R)")
    p.add_argument("--levels", type=float, nargs="+", default=LEVELS,
                   help="weight-noise levels (× each tensor's standard deviation)")
    p.add_argument("--tolerances", default=None, help="tolerance file (default: the shipped defaults)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON output (default benchmarks/results/power-<dataset>.json)")
    args = p.parse_args(argv)
    if args.sigma <= 0:
        p.error("--sigma must be > 0: re-evaluations with other seeds must draw other input noise")
    result = run(args)
    from jembench import atomic
    from jembench.catalog import slug

    out = Path(args.out) if args.out else RESULTS / f"power-{slug(result['dataset'])}.json"
    result["table"] = table(result)
    atomic.write_json(out, result)
    print(result["table"])
    print(f"results: {out}  ({result['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

