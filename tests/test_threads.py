"""jembench.threads: small-batch work on one CPU thread, the count restored afterwards and written into records;
the CLI makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before torch starts, unless the user chose."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info

from jembench import threads
from jembench.reference_models.wideresnet import wide_resnet
from test_robustness import PROTOCOL


@pytest.fixture
def two_threads():
    """A budget of two torch threads for the test (the session runs on one), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def _openmp_threads() -> int:
    """Threads of torch's own OpenMP runtime (others, e.g. scikit-learn's vendored libgomp, may be loaded too and
    listed first; torch.set_num_threads sets only torch's)."""
    torch_lib = os.path.dirname(torch.__file__)
    return next(i["num_threads"] for i in threadpool_info()
                if i["user_api"] == "openmp" and i["filepath"].startswith(torch_lib))


def test_forward_flops_is_torchs_count_of_a_hand_derived_network():
    """One 3x3 convolution (4 -> 6 channels, padding 1) on 5x5 images, then a linear layer 150 -> 7: 2 FLOPs per
    multiply-add, 6·5·5 outputs × 4·3·3 inputs each, then 150 × 7 (biases are not counted by torch)."""
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(150, 7))
    assert threads.forward_flops(net, (4, 5, 5)) == 2 * (6 * 5 * 5 * 4 * 3 * 3) + 2 * 150 * 7
    assert threads.forward_flops(net, (4, 5, 5), device="cuda") == 0.0  # off the CPU nothing is counted
    assert threads.forward_flops(torch.nn.Linear(3, 2), (4, 5, 5)) == float("inf")  # cannot run: keep the budget


def test_small_work_runs_on_one_thread_large_work_on_the_budget(two_threads):
    tiny = wide_resnet(10, 1, 10, 1, None)  # the tiny presets' WRN-10-1 on 8x8 digits
    per_image = threads.forward_flops(tiny, (1, 8, 8))
    assert 1e6 < per_image < 1e7  # ~2.4 MFLOP
    assert threads.for_model(tiny, (1, 8, 8), 64) == 1  # a training batch / a robustness unit: small
    assert threads.choose(threads.SMALL_WORK_FLOPS * 2) == 2  # e.g. a WRN-28-10 batch: the whole budget
    assert threads.choose(0.0, device="cuda:0") == 2  # on a GPU the CPU threads are not the work's


def test_scoped_sets_torch_and_openmp_and_restores_them(two_threads):
    assert _openmp_threads() == 2
    with threads.scoped(1) as n:
        assert n == 1 and torch.get_num_threads() == 1 and _openmp_threads() == 1
    assert torch.get_num_threads() == 2 and _openmp_threads() == 2
    with pytest.raises(RuntimeError), threads.scoped(1):
        raise RuntimeError("a failing unit")
    assert torch.get_num_threads() == 2  # restored on errors too


def test_the_user_can_fix_the_count(two_threads, monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    assert threads.choose(0.0) == 2 and threads.runtime_block()["thread_rule"] == "JEMBENCH_THREADS=2"
    monkeypatch.setenv(threads.THREADS_ENV, "8")
    assert threads.choose(0.0) == 2  # never more than torch's own count (OMP_NUM_THREADS / set_num_threads)
    monkeypatch.setenv(threads.THREADS_ENV, "lots")
    assert threads.choose(0.0) == 1  # not a count: ignored


def test_robustness_units_run_single_threaded_and_the_record_says_so(two_threads, tiny_softmax_checkpoint, tmp_path,
                                                                      monkeypatch):
    import jembench
    from jembench.suites.robustness import units

    seen, real = [], units.run_unit

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "run_unit", counting)
    proto = tmp_path / "robustness-small.toml"
    proto.write_text(PROTOCOL.replace("steps = [0, 1]", "steps = [0]"), encoding="utf-8")
    record = jembench.evaluate(str(tiny_softmax_checkpoint), "robustness", protocol=str(proto),
                               out=tmp_path / "r.json", progress=False)
    assert seen and set(seen) == {1}  # every unit on one thread ...
    assert torch.get_num_threads() == 2  # ... and the budget back afterwards
    runtime = record["runtime"]
    assert runtime["torch_threads"] == 2 and runtime["work_threads"] == {"robustness units": 1}
    assert json.loads((tmp_path / "r.json").read_text())["runtime"] == runtime


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in threads.WAIT_POLICY_ENV and k != "OMP_NUM_THREADS"}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


@pytest.mark.parametrize("user", [None, "ACTIVE"])
def test_cli_sets_passive_openmp_before_torch_loads_unless_the_user_chose(user, tiny_softmax_checkpoint, tmp_path):
    """libgomp prints the policy it started with (OMP_DISPLAY_ENV): the CLI's PASSIVE reached the runtime; a
    user's own policy is kept; the record says which and who set it."""
    env = _cli_env(OMP_DISPLAY_ENV="TRUE", **({"OMP_WAIT_POLICY": user} if user else {}))
    out = tmp_path / "acc.json"
    proc = subprocess.run([sys.executable, "-m", "jembench", "eval", str(tiny_softmax_checkpoint), "--suite",
                           "accuracy", "--preset", "tiny", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = user or "PASSIVE"
    assert f"OMP_WAIT_POLICY = '{expected}'" in proc.stderr  # libgomp's own report of what it runs with
    runtime = json.loads(out.read_text())["runtime"]
    assert runtime["openmp_wait"] == f"OMP_WAIT_POLICY={expected}"
    assert runtime["openmp_wait_set_by"] == ("user" if user else "jembench")
