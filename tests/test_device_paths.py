"""Every trainer and every suite on the fake accelerator (tests/fake_device.py): no CPU/device mixing, no CPU
generator drawing device tensors, no ``.numpy()`` of a device tensor, host syncs only where they are allowed, and
the hot loops' syncs counted exactly — so a new sync in an SGLD step, a training step or an attack iteration fails
here, in CPU CI, before anyone runs it on a GPU. Also: device records equal CPU records, resume on the device is
exact, and the four GPU crashes of issue 25 reproduced on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fake_device import DEVICE, NAME, monitor

import jembench
from jembench.protocols import load_protocol

METHODS = ("jem", "jempp", "sada_jem", "softmax", "softmax_sam")
ITERS = 3

# the hot loops: function → its host syncs per call, exactly ({} = none)
SGLD = {"jembench/sampling.py:_sgld_detached": {}, "jembench/sampling.py:_sgld_differentiable": {}}
TRAIN_STEP = "jembench/reference_models/train_loop.py:train_step"
NEXT_BATCHES = "jembench/reference_models/train_loop.py:_next_batches"  # the batch to the device: x, y (and the p(x) x)
CLASS_GAUSSIAN_DRAW = {("jembench/sampling.py:ClassGaussianInit.sample", "d2h"): 1}  # the class counts (JEM++ p_0)
ATTACK_LOOPS = {
    "jembench/refine.py:RefinedClassifier.forward": {},  # every EOT / refinement forward
    "jembench/attacks/pgd.py:run_attack": {},  # torchattacks' PGD iterations
    "jembench/attacks/pgd.py:IterateRecorder.forward": {},  # SADA-JEM's per-iterate bookkeeping
    "jembench/attacks/pgd.py:_restart": {("jembench/attacks/pgd.py:_restart", "data-dependent"): 1},
    "jembench/attacks/foolbox2.py:pgd_step": {("jembench/attacks/foolbox2.py:pgd_step", "data-dependent"): 1},
    "jembench/attacks/budget.py:QueryBudget.forward": {},  # one decision-attack query
}

# where a host sync is allowed: setup, bookkeeping between attack runs, results leaving the device
ALLOWED_TRAIN = {
    "jembench/reference_models/train_loop.py:_build",  # the network to the device
    "jembench/sampling.py:ClassGaussianInit.to",  # JEM++'s p_0 to the device, once
    "jembench/sampling.py:ClassGaussianInit.sample",  # one per buffer draw (counted above)
    NEXT_BATCHES,  # blocking copies here (nothing is pinned on the fake device); asynchronous from pinned memory
    "jembench/reference_models/divergence.py:DivergenceGuard.check",  # one per log / checkpoint iteration
    "jembench/reference_models/run_log.py:log_row",  # the CSV row, on the log cadence
    "jembench/atomic.py:torch_save",  # checkpoints: state dicts to the host
    "jembench/sampling.py:ReplayBuffer.state_dict",
    "jembench/reference_models/train_state.py:save_state",
    "jembench/recipe.py:weights_digest",  # the final checkpoint's digest of the weights (train_state calls it)
    "jembench/figures/sample_grids.py:_uint8_images",  # the buffer's sample grid at the end
}


def _train(method: str, out: Path, device: str = DEVICE, **overrides):
    return jembench.train(method, "tiny", out, progress=False, device=device, dataset="digits", max_iters=ITERS,
                          log_every=2, **overrides)


@pytest.mark.parametrize("method", METHODS)
def test_trainer_on_the_device(method, tmp_path):
    hot = (TRAIN_STEP, NEXT_BATCHES, *SGLD)
    with monitor(hot=hot, allowed=ALLOWED_TRAIN) as mon:  # strict: the first violation raises
        _train(method, tmp_path / method)
    assert mon.calls[TRAIN_STEP] == mon.calls[NEXT_BATCHES] == ITERS
    copies = 3 if method == "sada_jem" else 2  # SADA-JEM's p(x) term reads un-augmented images from a 2nd loader
    assert mon.per_call(NEXT_BATCHES) == {(NEXT_BATCHES, "h2d"): copies}
    informative = method in ("jempp", "sada_jem")  # the class-Gaussian p_0 (tiny presets of JEM++ / SADA-JEM)
    assert mon.per_call(TRAIN_STEP) == (CLASS_GAUSSIAN_DRAW if informative else {})
    if method.startswith("softmax"):
        assert mon.calls["jembench/sampling.py:_sgld_detached"] == 0
    else:
        assert mon.calls["jembench/sampling.py:_sgld_detached"] == ITERS
    for scope, per_call in SGLD.items():
        assert mon.per_call(scope) == per_call
    loaded = torch.load(tmp_path / method / "last.pt", map_location="cpu", weights_only=True)
    assert loaded["extra"]["environment"]["device"] == DEVICE
    assert loaded["extra"]["ranks"][0]["rng"]["device"]["type"] == NAME  # the device's random stream is saved


# ------------------------------------------------------------------------------------------------- suites
SMALL = {  # the tiny protocols, cut further where a suite would take more than a few seconds on the fake device
    "accuracy": ("accuracy-tiny", {}),
    "calibration": ("calibration-tiny", {}),
    "ood": ("ood-tiny", {}),
    "generation": ("generation-tiny", {"n_samples": 100}),
    "robustness": ("robustness-tiny", {"n": 4, "batch_size": 4, "refine.steps": [0, 2], "pgd.steps": 3,
                                       "pgd.search_steps": 1, "boundary.steps": 10, "start.pool": 40,
                                       "start.candidates": 3}),
    "robustness-jem": ("robustness-jem-official", {"n": 4, "batch_size": 4, "refine.eot_attack": 2,
                                                   "refine.eot_defense": 2, "pgd.steps": 3, "pgd.restarts": 2,
                                                   "pgd.search_steps": 2}),
    "robustness-sadajem": ("robustness-sadajem-official", {"n": 4, "batch_size": 4, "pgd.steps": 3,
                                                           "pgd.linf_eps": ["4/255", "16/255"]}),
}
EXERCISES = {  # the hot loops each run must go through (so their counts above are not vacuous)
    "generation": ("jembench/sampling.py:_sgld_detached",),
    "robustness": ("jembench/refine.py:RefinedClassifier.forward", "jembench/attacks/pgd.py:_restart",
                   "jembench/attacks/pgd.py:run_attack", "jembench/attacks/budget.py:QueryBudget.forward",
                   "jembench/sampling.py:_sgld_differentiable"),
    "robustness-jem": ("jembench/attacks/foolbox2.py:pgd_step",),
    "robustness-sadajem": ("jembench/attacks/pgd.py:IterateRecorder.forward",),
}
GUARD = "jembench/forward_guard.py:guarded_forward.<locals>.forward"  # finite logits on the first batch: once
ALLOWED_EVAL = {
    GUARD,
    "jembench/models.py:load_checkpoint",  # the network to the device
    "jembench/evaluation.py:check_model",  # every weight finite: one sync per tensor, once
    "jembench/suites/context.py:EvalContext.test_logits",  # test batches in, logits out
    "jembench/suites/context.py:_TestLogitsCache.fingerprint",
    "jembench/suites/accuracy.py:run",
    "jembench/suites/split_evidence.py:per_input_predictions",  # per-input evidence leaving the device
    "jembench/metrics/calibration.py:CalibrationAccumulator.add_logits",
    "jembench/metrics/ood_scores.py:score_batches",
    "jembench/suites/generation.py:_classify",
    # robustness: a unit's inputs in and results out, the bookkeeping between attack runs
    "jembench/suites/robustness/units.py:run_unit",
    "jembench/suites/robustness/units.py:_finite",
    "jembench/suites/robustness/units.py:_pgd_unit",
    "jembench/suites/robustness/units.py:_pgd_unit.<locals>.attack",
    "jembench/suites/robustness/units.py:_foolbox2_unit",
    "jembench/suites/robustness/units.py:_decision_unit",
    "jembench/attacks/pgd.py:_restart",  # one per restart (counted)
    "jembench/attacks/pgd.py:pgd_any_iterate",  # after the attack: the first broken iterate per input
    "jembench/attacks/search.py:minimal_eps.<locals>.run",
    "jembench/attacks/foolbox2.py:attack_call",  # the ε search between PGD runs
    "jembench/attacks/foolbox2.py:pgd_try",
    "jembench/attacks/foolbox2.py:pgd_step",  # one per iteration (counted): how many inputs are left
    "jembench/attacks/gradient_free.py:top2_candidates",
    "jembench/attacks/gradient_free.py:checked_starting_points",
    "jembench/attacks/gradient_free.py:verified_along_line",
    "jembench/attacks/gradient_free.py:boundary_attack",  # foolbox 3's own loop (its code, not ours)
    "jembench/attacks/gradient_free.py:pointwise_attack",
}


def _protocol(name: str):
    stem, changes = SMALL[name]
    return load_protocol(stem).replace(changes) if changes else load_protocol(stem)


@pytest.mark.parametrize("name", list(SMALL))
def test_suite_on_the_device_equals_the_cpu(name, tiny_jem_checkpoint, tmp_path):
    """Zero violations and syncs only where allowed; the hot loops' syncs per call exactly; and the record on the
    fake device equals the CPU's, metric for metric — it computes with the CPU's kernels, so any difference is a
    device-handling bug (a stream drawn on the wrong generator, a mode lost on the way)."""
    suite, proto = name.split("-")[0], _protocol(name)
    hot = (*SGLD, *ATTACK_LOOPS)
    with monitor(hot=hot, allowed=ALLOWED_EVAL) as mon:
        on_device = jembench.evaluate(tiny_jem_checkpoint, suite, protocol=proto, device=DEVICE,
                                      out=tmp_path / "device" / f"{suite}.json", progress=False)
    on_cpu = jembench.evaluate(tiny_jem_checkpoint, suite, protocol=proto, device="cpu",
                               out=tmp_path / "cpu" / f"{suite}.json", progress=False)
    assert mon.all_syncs()[(GUARD, "item")] == 1  # the forward guard reads the first batch's logits, once
    for scope, per_call in {**SGLD, **ATTACK_LOOPS}.items():  # (the guard's one sync may fall in a scope's first call)
        counted = {key: n for key, n in mon.syncs_in(scope).items() if key[0] != GUARD}
        assert not mon.calls[scope] or counted == {k: v * mon.calls[scope] for k, v in per_call.items()}, scope
    assert all(mon.calls[scope] > 0 for scope in EXERCISES.get(name, ())), dict(mon.calls)
    assert on_device["environment"]["device"] == DEVICE and on_cpu["environment"]["device"] == "cpu"
    assert on_device["environment"]["precision"] == "fp32"
    assert on_device["metrics"].keys() == on_cpu["metrics"].keys()
    for key, value in on_cpu["metrics"].items():
        assert value == on_device["metrics"][key] or (value != value and on_device["metrics"][key] != value), key
