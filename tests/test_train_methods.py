"""The five reference methods train from the CLI with their tiny presets; SADA-JEM's p(x) term sees
un-augmented images; presets / config plumbing (printed, stored in the checkpoint and the event log)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import jembench.data
from jembench.cli import main as cli_main
from jembench.reference_models.config import resolve_config
from jembench.data import load_dataset, stack_dataset
from jembench.models import load_checkpoint
from jembench.reference_models import sada_jem
from jembench.reference_models.train_loop import train

REPO = Path(__file__).resolve().parent.parent
METHODS = ["jem", "jempp", "sada_jem", "softmax", "softmax_sam"]



def test_every_method_trains_with_its_tiny_preset_from_the_cli(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = {m: subprocess.Popen([sys.executable, "-m", "jembench", "train", m, "--preset", "tiny", "--dataset",
                                  "digits", "--max-iters", "6", "--log-every", "3", "--sample-every", "3", "--out",
                                  str(tmp_path / m), "--no-progress"], cwd=REPO, env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for m in METHODS}  # in parallel: five interpreter start-ups cost more than the 6 iterations
    for method, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (method, err[-2000:])
        run = tmp_path / method
        summary = next(line for line in err.splitlines() if line.startswith("[jembench] "))
        assert summary.startswith(f"[jembench] {method} on digits, 6 iterations") and "config.json" in summary
        assert len(err.splitlines()) < 10  # one summary line, not the whole config
        printed = json.loads((run / "config.json").read_text())  # the resolved config, written
        assert printed == resolve_config(method, "tiny", {"dataset": "digits", "max_iters": 6, "log_every": 3,
                                                          "sample_every": 3}).to_dict()
        ckpt = load_checkpoint(run / "last.pt")
        assert ckpt.method == method and ckpt.state["iteration"] == 6
        assert ckpt.config == dict(printed, name=f"{method}-digits")  # ... stored in the checkpoint
        first_event = json.loads((run / "events.jsonl").read_text().splitlines()[0])
        assert first_event["event"] == "start" and first_event["config"] == printed  # ... and in the log
        with open(run / "log.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["iteration"]) for r in rows] == [3, 6]
        assert all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in rows)
        has_px = method not in ("softmax", "softmax_sam")
        assert (ckpt.buffer is not None) == has_px
        assert (run / "samples-0000003.png").is_file() == has_px and (run / "samples.png").is_file() == has_px
        if has_px:
            assert rows[-1]["e_gap"] != "" and ckpt.buffer.shape == (1000, 1, 8, 8)
        assert f"checkpoint: {run / 'last.pt'}" in out


class _RecordingAugmentation:
    """Wraps the real augmentation and remembers every image it produced."""

    def __init__(self, inner):
        self.inner, self.outputs = inner, []

    def __call__(self, x):
        out = self.inner(x)
        self.outputs.append(out.clone())
        return out


def test_da_free_px_term_gets_unaugmented_images(tmp_path, monkeypatch):
    recorders = []
    real = jembench.data.train_augmentation

    def recording(*args, **kwargs):
        recorders.append(_RecordingAugmentation(real(*args, **kwargs)))
        return recorders[-1]

    seen = []
    real_objective = sada_jem.objective

    def spy(step):
        seen.append((step.x.detach().clone(), step.x_px.detach().clone(), step.samples().shape))
        return real_objective(step)

    monkeypatch.setattr(jembench.data, "train_augmentation", recording)
    monkeypatch.setattr(sada_jem, "objective", spy)
    cfg = resolve_config("sada_jem", "tiny", {"dataset": "digits", "max_iters": 3, "px_batch_size": 32,
                                              "log_every": 3})
    assert cfg.augment and cfg.px_unaugmented and cfg.input_noise == 0
    train(cfg, tmp_path, progress=False)

    assert len(recorders) == 1  # only the labelled set is augmented
    augmented = torch.stack(recorders[0].outputs).flatten(1)
    raw = stack_dataset(load_dataset("digits", "train"))[0].flatten(1)

    def rows_in(rows, pool):
        return [bool((pool == r).all(1).any()) for r in rows.flatten(1)]

    assert len(seen) == 6  # 3 iterations × 2 SAM passes
    for x, x_px, samples_shape in seen:
        assert samples_shape[0] == len(x_px) == 32 and len(x) == 64  # chains = p(x) batch
        assert all(rows_in(x, augmented))  # p(y|x): what the augmentation produced
        assert all(rows_in(x_px, raw))  # p(x): raw training images ...
        assert sum(rows_in(x, raw)) < len(x) / 2  # ... while most labelled images were changed by it
    assert torch.equal(seen[0][1], seen[1][1]) and torch.equal(seen[0][0], seen[1][0])  # both SAM passes: same batch


def test_preset_errors_and_help(capsys):
    assert cli_main(["train", "jem", "--preset", "paper-k10"]) == 2
    assert "method 'jem' has no preset 'paper-k10'; use one of tiny, cpu, paper" in capsys.readouterr().err
    assert cli_main(["train", "sada_jem", "--px-batch-size", "32", "--no-px-unaugmented"]) == 2
    assert "px_batch_size needs --px-separate or --px-unaugmented" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    help_text = capsys.readouterr().out
    for word in ("paper-k5", "paper-k20", "softmax_sam", "--sam-rho", "--max-recoveries", "--resume"):
        assert word in help_text
