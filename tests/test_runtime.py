"""jembench.runtime: the glibc allocator setting keeps freed activations in the heap for the next SGLD step.

Each case runs in a fresh interpreter (the setting is process-wide and sticky). What must change is what the
setting is for: with glibc's defaults every SGLD step hands its activations back to the kernel and faults fresh
pages in again (thousands of minor page faults per step), with the setting a warmed-up step reuses the heap's.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's mallopt")

PROBE = r"""
import json, resource, sys
from jembench.runtime import configure_torch, keep_freed_memory
tuned = again = None
if sys.argv[1] == "on":
    tuned, again = keep_freed_memory(), keep_freed_memory()
elif sys.argv[1] == "configure_torch":
    configure_torch()
import torch
from jembench.sampling import SGLDConfig, sgld
from jembench.reference_models.wideresnet import wide_resnet
torch.set_num_threads(1)
torch.manual_seed(0)
model = wide_resnet(10, 1, 10, 3, None).eval()
x0 = torch.rand(32, 3, 32, 32) * 2 - 1
cfg = SGLDConfig(n_steps=2, step_size=1.0, noise=0.01)
sgld(model, x0, cfg)  # warm-up: the heap grows to the working size
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
sgld(model, x0, cfg)
print(json.dumps({"tuned": tuned, "again": again,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""
FEW = 2000  # minor page faults in two warmed-up steps: measured 0-800 with the setting, 10,000-18,600 without
REUSED = 4000  # the setting's bound: up to 2,048 seen with it while six other jobs loaded the 2 cores


def _probe(mode: str, **env: str) -> dict:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("MALLOC_") and k != "JEMBENCH_NO_ALLOCATOR_TUNING"}
    full_env.update(env, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env=full_env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_setting_stops_the_page_faults_of_every_step():
    default, tuned = _probe("off"), _probe("on")
    assert default["faults"] > 2 * FEW  # glibc's defaults: each step faults its activations in afresh
    assert tuned["tuned"] is True and tuned["again"] is True  # in force, and idempotent
    assert tuned["faults"] < min(REUSED, default["faults"] / 3)  # the heap's pages are reused


@pytest.mark.parametrize("env", [{"JEMBENCH_NO_ALLOCATOR_TUNING": "1"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_opt_outs_leave_glibc_alone(env):
    result = _probe("on", **env)
    assert result["tuned"] is False
    assert result["faults"] > 2 * FEW


def test_configure_torch_applies_it():
    """eval and demo call configure_torch: the allocator setting comes with it."""
    assert _probe("configure_torch")["faults"] < REUSED


def test_train_command_applies_it(monkeypatch, tmp_path):
    """``jembench train`` turns the setting on before training starts (training itself replaced by a recorder)."""
    from jembench import runtime
    from jembench.cli import build_parser
    from jembench.reference_models import train_loop

    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append("allocator") or True)
    monkeypatch.setattr(train_loop, "train", lambda *a, **k: calls.append("train") or tmp_path / "last.pt")
    args = build_parser(["train"]).parse_args(["train", "softmax", "--out", str(tmp_path)])
    assert args._run(args) == 0
    assert calls == ["allocator", "train"]


FLUSH_PROBE = r"""
import json, sys
import torch
import jembench

def flushed():
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0  # a float32 denormal survives unless flushed to zero

class Recorder(torch.nn.Module):
    # a tiny digits classifier that notes, at every forward, whether denormals are being flushed
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8 * 8, 10)  # digits: 1 x 8 x 8
        self.seen = []

    def forward(self, x):
        self.seen.append(flushed())
        return self.linear(x.flatten(1))

before = flushed()
net = Recorder()
jembench.evaluate(net, "accuracy", dataset="digits", preset="tiny", out=sys.argv[1], progress=False)
print(json.dumps({"before": before, "during": sorted(set(net.seen))}))
"""


def test_evaluate_api_runs_under_the_cli_process_settings(tmp_path):
    """``evaluate()`` flushes denormals as ``jembench eval`` does (issue 27 item 8): a fresh interpreter does not,
    and every forward inside the API call does — so the two cannot compute with different float settings."""
    out = subprocess.run([sys.executable, "-c", FLUSH_PROBE, str(tmp_path / "r.json")], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"before": False, "during": [True]}


KEPT_PROBE = r"""
import json
import torch
from jembench.runtime import configure_torch, denormals_kept

def flushed():
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0

configure_torch()  # what eval / demo / evaluate() set
with denormals_kept():  # what every training runs under (reference_models.train_loop.train)
    inside = flushed()
print(json.dumps({"inside": inside, "after": flushed()}))
"""


def test_training_keeps_denormals_in_a_process_that_flushes_them():
    """A training inside ``jembench demo`` (or after ``evaluate()``) computes with denormals kept, as ``jembench
    train`` does in a fresh process — so both train the same weights and name the same recipe — and the process's
    flush-to-zero comes back afterwards for the evaluation."""
    out = subprocess.run([sys.executable, "-c", KEPT_PROBE], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"inside": False, "after": True}
